//! The sections of the configuration, one type each: what every key means and
//! its default (the defaults themselves are in `config/default.toml`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::duration_key;

/// How many threads move prism's bytes.
///
/// Relaying is I/O: the work per packet is a few `writev`s, and on a work-stealing
/// scheduler much of the rest is threads waking each other for it (measured in
/// BENCHMARKS.md). One thread, like an nginx worker, relays hundreds of
/// destinations; more are single-threaded workers the connections are spread
/// over, so that a stream's fan-out stays on one thread.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads: 1 runs everything on one thread; 0 means one per core.
    pub worker_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { worker_threads: 1 }
    }
}

/// A node among several behind one balancer, and how it stops (README, "Running
/// several nodes"). Draining works on a single node too.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The registry shared by the nodes (`redis://HOST:PORT`); unset, the node is
    /// on its own and behaves as a single prism.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// This node's name in the registry and in `node` fields; the host name when
    /// unset (a Kubernetes pod's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Where the other nodes reach this node's RTMP listener (`HOST:PORT`), to
    /// pull a stream for their players; `rtmp.listen` when unset and not a
    /// wildcard address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_rtmp: Option<String>,
    /// Where the other nodes reach this node's HTTP listener, to list its streams
    /// and forward control requests; `http.listen` when unset and not a wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_http: Option<String>,
    /// How long a stream's lease (and a node's presence) outlives its node's last
    /// renewal: a node that dies frees its streams for other nodes within this.
    #[serde(deserialize_with = "duration_key::secs")]
    pub lease_secs: u64,
    /// New publishes while the registry is unreachable: allowed without a lease
    /// (logged; taken once it returns), or refused.
    pub on_registry_down: RegistryDown,
    /// Once draining (`POST /api/v1/drain`, SIGUSR1), how long live streams may go
    /// on before the node exits anyway.
    #[serde(deserialize_with = "duration_key::secs")]
    pub drain_timeout_secs: u64,
}

/// What a publish does while the registry cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryDown {
    /// Publish without a lease: a stream goes on air when one node cannot reach
    /// Redis, at the risk of the same stream on two nodes until it returns.
    Allow,
    /// Refuse (`NetStream.Publish.Rejected`): one publisher per stream, always.
    Refuse,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: None,
            node_id: None,
            advertise_rtmp: None,
            advertise_http: None,
            lease_secs: 10,
            on_registry_down: RegistryDown::Allow,
            drain_timeout_secs: 3600,
        }
    }
}

impl RuntimeConfig {
    /// Builds the runtime `main` runs prism on: one thread, which serves the
    /// listeners, HTTP and, with `worker_threads = 1`, every connection.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }

    /// How many connection workers to start beside it
    /// ([`crate::transport::Workers`]): none for 1, one per core for 0.
    pub fn connection_workers(&self) -> usize {
        match self.worker_threads {
            1 => 0,
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// The status and control API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Bearer token for control (and reads when protected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Whether reads need the token too.
    pub protect_reads: bool,
    /// HTTP connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Seconds for a request's line and headers to arrive, and how long an idle
    /// keep-alive connection stays open: a client that trickles its headers
    /// cannot hold a connection longer.
    #[serde(deserialize_with = "duration_key::secs")]
    pub header_timeout_secs: u64,
    /// Seconds for a request's body and its answer, and how long writing a
    /// response may stay blocked on a client that does not read.
    #[serde(deserialize_with = "duration_key::secs")]
    pub request_timeout_secs: u64,
    /// Whether media may be published over HTTP (`POST /ingest/{app}/{key}`),
    /// with the same keys, users and limits as an RTMP publish.
    pub ingest: bool,
}

/// Re-encoding through ffmpeg children.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeConfig {
    /// The ffmpeg binary: a path, or a name looked up on PATH.
    pub ffmpeg: String,
    /// Encoders running at once; more destinations wait for a slot.
    pub max_encoders: usize,
    /// An encoder with no output for this long is restarted.
    #[serde(deserialize_with = "duration_key::secs")]
    pub stall_timeout_secs: u64,
    /// First restart delay after an encoder failure (then doubling, up to 30 s).
    #[serde(deserialize_with = "duration_key::millis")]
    pub restart_backoff_ms: u64,
    /// What destinations whose platform needs video get when a stream has
    /// none: a black picture, an image, or nothing (`off`).
    pub audio_only_video: crate::transcode::AudioOnlyVideo,
}

/// Outbound destinations.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Connect + handshake + publish deadline.
    #[serde(deserialize_with = "duration_key::secs")]
    pub connect_timeout_secs: u64,
    /// How long an ingest may stop reading.
    #[serde(deserialize_with = "duration_key::secs")]
    pub stall_timeout_secs: u64,
    /// First reconnect delay.
    #[serde(deserialize_with = "duration_key::millis")]
    pub backoff_initial_ms: u64,
    /// Largest reconnect delay.
    #[serde(deserialize_with = "duration_key::secs")]
    pub backoff_max_secs: u64,
    /// Uptime after which the backoff starts over.
    #[serde(deserialize_with = "duration_key::secs")]
    pub backoff_reset_after_secs: u64,
    /// Retry delay after a refusal.
    #[serde(deserialize_with = "duration_key::secs")]
    pub failed_retry_secs: u64,
    /// How long destinations wait for a publisher whose connection dropped.
    #[serde(deserialize_with = "duration_key::secs")]
    pub publisher_grace_secs: u64,
    /// Outgoing chunk size.
    pub chunk_size: u32,
}

/// The standby slate that keeps destinations fed while a publisher is away.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandbyConfig {
    /// Whether a dropped publisher's destinations get the slate (else only the
    /// grace period's silence).
    pub enabled: bool,
    /// The slate's longest run before destinations are unpublished: about what
    /// platforms tolerate before they end a broadcast anyway.
    #[serde(deserialize_with = "duration_key::secs")]
    pub max_secs: u64,
    /// An image or video to show instead of the generated card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl Default for StandbyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_secs: 300,
            file: None,
        }
    }
}

/// TLS for outbound RTMPS.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) trusted beside the built-in roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// Per-user destination files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersConfig {
    /// The directory of user files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// The RTMP listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Outgoing chunk size.
    pub chunk_size: u32,
    /// Acknowledgement window asked of peers.
    pub window_ack_size: u32,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections served at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Streams published at once from one IP address.
    pub max_publishers_per_ip: usize,
    /// Seconds for the handshake and the connect command.
    #[serde(deserialize_with = "duration_key::secs")]
    pub handshake_timeout_secs: u64,
    /// Seconds a connection may go without publishing or playing (whatever it sends), and
    /// seconds of silence allowed from a publisher.
    #[serde(deserialize_with = "duration_key::secs")]
    pub idle_timeout_secs: u64,
    /// Seconds a player may wait for a stream that is not live before it is closed
    /// (`NetStream.Play.StreamNotFound`).
    #[serde(deserialize_with = "duration_key::secs")]
    pub play_wait_secs: u64,
    /// Players waiting for streams that are not live, at most (and never more than
    /// half of `max_connections`); one more closes the one that has waited longest.
    pub max_waiting_players: usize,
    /// Whether players may name a stream by its publish key (besides its public
    /// name: the user's name or the stream id). Off: the key is a secret.
    #[serde(default)]
    pub play_by_key: bool,
    /// Whether every connection to the RTMP and RTMPS listeners starts with a PROXY
    /// protocol v2 header from a balancer (HAProxy's `send-proxy-v2`), whose client
    /// address then stands for the connection's in limits, logs and the API. A
    /// connection without one is refused, and so is one with a header when this is
    /// off. On: the listeners must be reachable only through the balancer.
    #[serde(default)]
    pub proxy_protocol: bool,
}

/// The RTMPS listener: RTMP inside TLS, for encoders that publish over networks
/// their operators do not trust. Disabled unless `listen` is set; it shares the
/// RTMP listener's connection limits and timeouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtmpsConfig {
    /// Listen address; `None` disables RTMPS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The certificate chain (PEM), leaf first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The TLS versions offered: an operator with old clients that cannot do one
    /// of them can leave it out (and one who must forbid 1.2 can too).
    #[serde(default = "TlsVersion::all")]
    pub tls_versions: Vec<TlsVersion>,
}

/// The SRT listener: MPEG-TS from encoders in caller mode (OBS, Larix, vMix,
/// ffmpeg), the stream id naming the stream as an RTMP publish's name and query.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrtConfig {
    /// Listen address (UDP); `None` disables SRT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// The receiver's latency (SRTO_RCVLATENCY, ms): how long lost packets
    /// may take to be sent again. The larger of this and the caller's applies.
    #[serde(default = "default_srt_latency")]
    pub latency_ms: u64,
    /// The passphrase (10 to 79 characters) every caller must encrypt with
    /// (AES); a user's `srt_passphrase` replaces it for their keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<String>,
}

fn default_srt_latency() -> u64 {
    120
}

impl Default for SrtConfig {
    fn default() -> Self {
        Self {
            listen: None,
            latency_ms: default_srt_latency(),
            passphrase: None,
        }
    }
}

impl Default for RtmpsConfig {
    fn default() -> Self {
        Self {
            listen: None,
            cert_file: None,
            key_file: None,
            tls_versions: TlsVersion::all(),
        }
    }
}

/// A TLS protocol version the RTMPS listener can offer, written as in the
/// configuration: `"1.2"` or `"1.3"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2.
    #[serde(rename = "1.2")]
    Tls12,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    Tls13,
}

impl TlsVersion {
    /// Every version prism can offer, the default.
    pub fn all() -> Vec<Self> {
        vec![Self::Tls12, Self::Tls13]
    }
}

/// Bounds on what a peer can make prism buffer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest message accepted.
    pub max_message_len: u32,
    /// Chunk streams per peer.
    pub max_chunk_streams: usize,
    /// Bytes in partial messages per peer.
    pub max_pending_bytes: usize,
    /// Bytes in partial messages of all peers together.
    pub max_pending_bytes_total: usize,
    /// Smallest chunk size a peer may set.
    pub min_chunk_size: u32,
    /// Commands (and other non-media messages) a peer may send per second.
    pub max_commands_per_sec: u32,
}

/// Per-stream caches and per-subscriber queues.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// GOP cache bound in bytes.
    pub gop_cache_max_bytes: usize,
    /// GOP cache bound in packets.
    pub gop_cache_max_packets: usize,
    /// Subscriber queue bound in bytes.
    pub queue_max_bytes: usize,
    /// Subscriber queue bound in packets.
    pub queue_max_packets: usize,
    /// Streams at once.
    pub max_streams: usize,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter directive.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
    /// Lines waiting for stderr; beyond this they are dropped (and counted), so
    /// that a stalled stderr never holds up the relay.
    pub buffer_lines: usize,
    /// Lines one client address may cause at once.
    pub peer_burst: u32,
    /// Lines one client address may cause per minute after its burst.
    pub peer_lines_per_minute: u32,
    /// Lines all client addresses together may cause at once.
    pub all_peers_burst: u32,
    /// Lines all client addresses together may cause per second after the burst:
    /// the ceiling for an attacker with many addresses.
    pub all_peers_lines_per_sec: u32,
    /// Seconds between the summaries of suppressed and dropped lines.
    #[serde(deserialize_with = "duration_key::secs")]
    pub summary_secs: u64,
}
