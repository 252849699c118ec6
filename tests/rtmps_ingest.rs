//! RTMPS ingest: encoders publish and players play over TLS on `[rtmps] listen`,
//! with a certificate made for each test (a CA and a leaf, rcgen). Debian's
//! ffmpeg publishes and plays over rtmps:// (it does not verify certificates
//! unless told to); what players get is compared with the source packet by packet.
//! Bad clients on the TLS port are closed with a log line and nothing else
//! notices; the TLS handshake counts against the handshake timeout. rtmpdump
//! (librtmp over GnuTLS, which fails against TLS 1.3 session tickets) plays over
//! rtmps:// with both TLS versions offered and with 1.2 alone.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::sinks::{client_addr_of, write_certificates};
use common::*;
use prism::Config;
use prism::config::TlsVersion;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a bad connection may take to be closed when no timeout is involved.
const CLOSE_AT_ONCE: Duration = Duration::from_secs(3);

/// A directory of test certificates, removed when the test passes.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "rtmps-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        write_certificates(&dir);
        Self { dir }
    }

    fn chain(&self) -> PathBuf {
        self.dir.join("server-chain.pem")
    }

    fn key(&self) -> PathBuf {
        self.dir.join("server-key.pem")
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Turns RTMPS on, on 127.0.0.1:0, with these certificates.
    fn enable(&self, config: &mut Config) {
        config.rtmps.listen = Some("127.0.0.1:0".parse().unwrap());
        config.rtmps.cert_file = Some(self.chain());
        config.rtmps.key_file = Some(self.key());
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn rtmps_addr(prism: &Prism) -> SocketAddr {
    prism
        .app
        .as_ref()
        .unwrap()
        .rtmps_addr()
        .expect("RTMPS is listening")
}

fn rtmps_url(prism: &Prism, path: &str) -> String {
    format!("rtmps://{}/{path}", rtmps_addr(prism))
}

/// Waits until the server closes `socket` (EOF or reset), reading and discarding
/// whatever it sends; panics after `limit`.
async fn closed_within(mut socket: impl AsyncReadExt + Unpin, limit: Duration) {
    let drain = async {
        let mut sink = vec![0u8; 16 * 1024];
        loop {
            match socket.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(limit, drain)
        .await
        .expect("the server closed the connection in time");
}

/// Waits (bounded) for a log line of the connection from `peer` that says `what`.
async fn wait_log(peer: SocketAddr, what: &str) -> String {
    let span = format!("peer={peer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = captured_logs()
            .lines()
            .find(|l| l.contains(&span) && l.contains(what))
        {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line for {peer} with {what:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TLS client that trusts the test CA.
fn tls_connector(certs: &Certs) -> tokio_rustls::TlsConnector {
    tls_connector_with(certs, rustls::DEFAULT_VERSIONS)
}

/// A TLS client that trusts the test CA and offers only `versions`.
fn tls_connector_with(
    certs: &Certs,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(certs.ca()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publishes_over_rtmps_and_players_get_every_packet_over_rtmp_and_rtmps() {
    let certs = Certs::new();
    let prism = Prism::start_with(|c| certs.enable(c)).await;
    let clip = test_flv();
    // Players wait for the stream, one on each listener.
    let plain_player = play_framemd5(&prism.url("live/tls-secret-key"));
    let tls_player = play_framemd5(&rtmps_url(&prism, "live/tls-secret-key"));
    prism.wait_subscribers("live", "tls-secret-key", 2).await;
    let publisher = publish(&clip, &rtmps_url(&prism, "live/tls-secret-key"));
    let (status, _) = finish(publisher).await;
    assert!(
        status.success(),
        "ffmpeg published over RTMPS cleanly: {status}"
    );
    for (player, how) in [(plain_player, "rtmp"), (tls_player, "rtmps")] {
        let (status, out) = finish(player).await;
        assert!(
            status.success(),
            "the {how} player exited cleanly: {status}"
        );
        assert_eq!(
            assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
            0,
            "the {how} player got every packet from the first keyframe"
        );
    }
    assert!(
        captured_logs().contains("rtmps{peer="),
        "RTMPS connections log under their own span"
    );
    assert_logs_hide(&["tls-secret-key"]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_rtmp_and_garbage_on_the_tls_port_are_closed_and_a_live_stream_goes_on() {
    let certs = Certs::new();
    let prism = Prism::start_with(|c| certs.enable(c)).await;
    let clip = clip(8);
    let player = play_framemd5(&rtmps_url(&prism, "live/tls-victim"));
    prism.wait_subscribers("live", "tls-victim", 1).await;
    let publisher = publish(&clip, &rtmps_url(&prism, "live/tls-victim"));
    prism.wait_live("live", "tls-victim").await;

    // An encoder pointed at the TLS port with rtmp://: C0 (version 3) and C1.
    let mut plain = TcpStream::connect(rtmps_addr(&prism)).await.unwrap();
    let plain_peer = plain.local_addr().unwrap();
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0u8; 1536]);
    plain.write_all(&c0c1).await.unwrap();
    // Garbage that is neither TLS nor RTMP.
    let mut garbage = TcpStream::connect(rtmps_addr(&prism)).await.unwrap();
    let garbage_peer = garbage.local_addr().unwrap();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.write_all(&noise).await.unwrap();
    // A TLS record header that claims a 16 KiB handshake message of garbage.
    let mut record = TcpStream::connect(rtmps_addr(&prism)).await.unwrap();
    let record_peer = record.local_addr().unwrap();
    let mut bytes = vec![0x16, 0x03, 0x01, 0x40, 0x00];
    bytes.extend_from_slice(&[0xFFu8; 0x4000]);
    let _ = record.write_all(&bytes).await;

    closed_within(plain, CLOSE_AT_ONCE).await;
    closed_within(garbage, CLOSE_AT_ONCE).await;
    closed_within(record, CLOSE_AT_ONCE).await;
    for peer in [plain_peer, garbage_peer, record_peer] {
        let line = wait_log(peer, "closing connection: TLS handshake failed").await;
        assert!(line.contains("rtmps{"), "logged as RTMPS: {line}");
    }
    let line = wait_log(plain_peer, "TLS handshake failed").await;
    assert!(
        line.contains("plain rtmp:// on the RTMPS port?"),
        "says what probably happened: {line}"
    );
    assert!(prism.hub().is_live("live", "tls-victim"), "still live");

    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the publisher never noticed: {status}");
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "the player lost nothing"
    );
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_never_finishes_counts_against_the_handshake_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    let certs = Certs::new();
    let prism = Prism::start_with(|c| {
        certs.enable(c);
        c.rtmp.handshake_timeout_secs = TIMEOUT.as_secs();
    })
    .await;
    let addr = rtmps_addr(&prism);

    // Says nothing at all after connecting.
    let silent = TcpStream::connect(addr).await.unwrap();
    let silent_peer = silent.local_addr().unwrap();
    // Sends the first bytes of a ClientHello record, then stalls.
    let mut partial = TcpStream::connect(addr).await.unwrap();
    let partial_peer = partial.local_addr().unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let opened = Instant::now();
    closed_within(silent, TIMEOUT * 3).await;
    closed_within(partial, TIMEOUT * 3).await;
    assert!(
        opened.elapsed() >= TIMEOUT - Duration::from_millis(500),
        "not closed before the handshake timeout"
    );
    for peer in [silent_peer, partial_peer] {
        wait_log(peer, "no handshake and connect within").await;
    }

    // Spends most of the deadline in TLS, finishes it, then sends no RTMP: the
    // deadline runs from the TCP accept, not from the end of the TLS handshake.
    let slow = TcpStream::connect(addr).await.unwrap();
    let slow_peer = slow.local_addr().unwrap();
    let accepted = Instant::now();
    tokio::time::sleep(TIMEOUT - Duration::from_secs(1)).await;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tls_connector(&certs)
        .connect(name, slow)
        .await
        .expect("the TLS handshake completes within the deadline");
    closed_within(tls, TIMEOUT * 3).await;
    let closed_after = accepted.elapsed();
    // Counted from accept: closed at about 5 s; from the end of TLS it would be 9 s.
    assert!(
        closed_after < TIMEOUT + Duration::from_secs(2),
        "closed at the deadline counted from accept, not a full timeout after TLS \
         ({closed_after:?})"
    );
    wait_log(slow_peer, "no handshake and connect within").await;
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_port_shares_the_connection_limits() {
    let certs = Certs::new();
    let prism = Prism::start_with(|c| {
        certs.enable(c);
        c.rtmp.max_connections_per_ip = 2;
        c.rtmp.handshake_timeout_secs = 30;
    })
    .await;
    // Two connections on the plain port use up this address's slots...
    let held = [
        TcpStream::connect(prism.addr).await.unwrap(),
        TcpStream::connect(prism.addr).await.unwrap(),
    ];
    // ... so one more on the TLS port is closed at once, before any TLS.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let extra = TcpStream::connect(rtmps_addr(&prism)).await.unwrap();
    let extra_peer = extra.local_addr().unwrap();
    closed_within(extra, CLOSE_AT_ONCE).await;
    wait_log(extra_peer, "too many connections from this address").await;
    drop(held);
    // Slots freed: a TLS client gets through the TLS handshake again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let socket = TcpStream::connect(rtmps_addr(&prism)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(CLOSE_AT_ONCE, tls_connector(&certs).connect(name, socket))
        .await
        .expect("TLS handshake in time")
        .expect("TLS handshake succeeds once slots are free");
    prism.stop().await;
}

/// Plays `app/name` over rtmps:// with rtmpdump (librtmp, GnuTLS; it does not
/// verify certificates) while ffmpeg publishes the clip over plain RTMP; returns
/// the TLS version prism logged for rtmpdump's connection. Every packet of the
/// clip from its first keyframe must arrive.
async fn rtmpdump_plays_over_rtmps(prism: &Prism, name: &str) -> String {
    let clip = clip(4);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("rtmpdump-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let recording = dir.join("play.flv");
    let url = rtmps_url(prism, &format!("live/{name}"));
    let player = spawn(
        "rtmpdump",
        &[
            "-q",
            "--live",
            "-r",
            &url,
            "-o",
            recording.to_str().unwrap(),
        ],
    );
    let mut player = player;
    let pid = player.id().expect("rtmpdump runs");
    // Waits for rtmpdump to play; one that fails its handshake fails the test now.
    let deadline = Instant::now() + CHILD_TIMEOUT;
    while prism
        .hub()
        .stream("live", name)
        .map_or(0, |s| s.subscriber_count())
        == 0
    {
        if let Some(status) = player.try_wait().unwrap() {
            panic!(
                "rtmpdump ended before it played ({status}): its RTMP handshake over TLS failed"
            );
        }
        assert!(Instant::now() < deadline, "rtmpdump never played");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peer = client_addr_of(pid, rtmps_addr(prism)).expect("rtmpdump's connection to prism");
    let publisher = publish(&clip, &prism.url(&format!("live/{name}")));
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "the publisher ran cleanly: {status}");
    let (status, _) = finish(player).await;
    // rtmpdump says "incomplete" (2) for every live stream: it cannot know the end.
    assert!(
        matches!(status.code(), Some(0 | 2)),
        "rtmpdump played to the end: {status}"
    );
    assert_eq!(
        assert_source_from_keyframe(&clip, &common::sinks::recording_framemd5(&recording)),
        0,
        "rtmpdump got every packet from the first keyframe"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let line = wait_log(peer, "TLS established").await;
    line.split("tls=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no version in {line}"))
        .trim_matches('"')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmpdump_plays_over_rtmps_with_tls_1_2_and_1_3_offered() {
    let certs = Certs::new();
    let prism = Prism::start_with(|c| certs.enable(c)).await;
    assert_eq!(
        Config::defaults().rtmps.tls_versions,
        TlsVersion::all(),
        "both versions are the default"
    );
    // librtmp's GnuTLS offers 1.3; it works because prism sends no session tickets.
    let version = rtmpdump_plays_over_rtmps(&prism, "librtmp-both").await;
    assert_eq!(version, "1.3", "rtmpdump negotiated TLS 1.3");
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_only_tls_1_2_offered_rtmpdump_plays_and_a_tls_1_3_only_client_is_refused() {
    let certs = Certs::new();
    let prism = Prism::start_with(|c| {
        certs.enable(c);
        c.rtmps.tls_versions = vec![TlsVersion::Tls12];
    })
    .await;
    let version = rtmpdump_plays_over_rtmps(&prism, "librtmp-tls12").await;
    assert_eq!(version, "1.2");

    // A client that offers TLS 1.3 alone finds no version in common.
    let socket = TcpStream::connect(rtmps_addr(&prism)).await.unwrap();
    let peer = socket.local_addr().unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let refused = tokio::time::timeout(
        CLOSE_AT_ONCE,
        tls_connector_with(&certs, &[&rustls::version::TLS13]).connect(name, socket),
    )
    .await
    .expect("answered at once");
    assert!(refused.is_err(), "a TLS 1.3-only client is refused");
    wait_log(peer, "TLS handshake failed").await;
    // One that offers 1.2 gets through.
    let socket = TcpStream::connect(rtmps_addr(&prism)).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(
        CLOSE_AT_ONCE,
        tls_connector_with(&certs, &[&rustls::version::TLS12]).connect(name, socket),
    )
    .await
    .expect("answered at once")
    .expect("a TLS 1.2 client gets through");
    prism.stop().await;
}

#[tokio::test]
async fn a_missing_certificate_or_key_is_a_clear_startup_error() {
    common::init_logging();
    let certs = Certs::new();
    let overrides = prism::config::Overrides {
        rtmp_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let mut config = Config::load(None, &overrides).unwrap();
    certs.enable(&mut config);
    config.rtmps.cert_file = Some(certs.dir.join("no-such-chain.pem"));
    let Err(err) = prism::App::start(config.clone()).await else {
        panic!("prism must not start without its certificate");
    };
    let text = err.to_string();
    assert!(
        text.contains("rtmps.cert_file") && text.contains("no-such-chain.pem"),
        "names the setting and the file: {text}"
    );
    config.rtmps.cert_file = Some(certs.chain());
    config.rtmps.key_file = Some(certs.ca());
    let Err(err) = prism::App::start(config).await else {
        panic!("prism must not start with a file that holds no key");
    };
    assert!(err.to_string().contains("rtmps.key_file"), "{err}");

    // The binary: --rtmps without a certificate is a configuration error (exit 2).
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_prism"))
        .args(["serve", "--rtmps", "127.0.0.1:0", "--rtmp", "127.0.0.1:0"])
        .args(["--http", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(CHILD_TIMEOUT, run)
        .await
        .expect("prism refuses the configuration at once")
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rtmps.cert_file"), "{stderr}");
}

/// With `[rtmp] proxy_protocol`, the RTMPS listener behind HAProxy (TCP mode,
/// `send-proxy-v2`) reads the PROXY header before the TLS handshake: ffmpeg
/// publishes and plays over rtmps:// through the balancer, the API shows the
/// encoder's address rather than the balancer's, and the player gets every packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmps_behind_haproxy_reads_the_proxy_header_before_tls() {
    use common::haproxy::{Backend, Haproxy};
    let certs = Certs::new();
    let prism = Prism::start_with(|c| {
        certs.enable(c);
        c.rtmp.proxy_protocol = true;
    })
    .await;
    let backend = Backend {
        rtmp: rtmps_addr(&prism),
        health: None,
    };
    let haproxy = Haproxy::start(&[backend], Some("127.0.0.9".parse().unwrap())).await;
    let url = format!("rtmps://{}/live/tls-proxied-key", haproxy.addr);
    let clip = clip(4);
    let player = play_framemd5(&url);
    prism.wait_subscribers("live", "tls-proxied-key", 1).await;
    let publisher = publish(&clip, &url);
    prism.wait_live("live", "tls-proxied-key").await;
    let streams = prism.streams_json().await;
    let from = streams["streams"][0]["publisher"]["remote_addr"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        from.starts_with("127.0.0.1:"),
        "the encoder's address: {streams}"
    );
    let (status, _) = finish(publisher).await;
    assert!(
        status.success(),
        "published over RTMPS through HAProxy: {status}"
    );
    let (status, out) = finish(player).await;
    assert!(status.success(), "player: {status}");
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "the RTMPS player behind HAProxy got every packet from the first keyframe"
    );
    assert!(captured_logs().contains(&format!("rtmps{{peer={from}")));
    haproxy.stop().await;
    prism.stop().await;
}
