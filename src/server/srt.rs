//! The SRT ingest (`[srt] listen`): encoders in caller mode send MPEG-TS, and
//! each connection becomes a stream's publisher as an RTMP publish does.
//!
//! SRT itself (handshake, retransmission, AES) is srt-tokio's, which was
//! checked against libsrt callers (ffmpeg's, `srt-live-transmit`) with and
//! without a passphrase. For each caller: its stream id names the stream
//! ([`SrtRequest`]) and [`admission::admit`] decides, as for RTMP. Without a
//! passphrase a refusal is the handshake's reject code (`2401` unknown key,
//! `2403` banned or refused by the callback, `2409` already live, `2503`
//! draining or out of room); with one, the handshake first proves the caller
//! knows it (a wrong or missing passphrase fails it), and a refused publish
//! then closes the connection. The last moments a caller sends before it
//! closes (up to the latency) may not arrive: SRT's receiver holds them until
//! their delivery time and the close comes first; the frames it cut short are
//! dropped, not sent on damaged (the feed marks the end as a cut:
//! [`super::ts_end`]). Once
//! admitted, the connection's MPEG-TS goes through ffmpeg's remux into the
//! stream ([`feed::feed_through_ffmpeg`]), which maps PTS/DTS to FLV
//! timestamps and composition offsets. SRT has no unpublish: whatever ends the
//! connection (the caller's shutdown, its silence, prism giving up on bad
//! input) is a publisher that dropped, held for the grace period as an RTMP
//! encoder's drop is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::Passphrase;
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener, SrtSocket};
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::admission::{self, Refusal};
use super::context::ConnectionContext;
use super::feed::{self, BodyEnd, BodyKind, Container, Fed};
use crate::config::SrtConfig;
use crate::hub::HubError;
use crate::relay::AuthError;
use crate::stream_name::SrtRequest;

/// How long admitting a caller may take: a libsrt caller gives up on its
/// handshake after 3 s by default, so a slow authorization callback is cut
/// short and the caller refused (it connects again).
const ADMISSION_TIMEOUT: Duration = Duration::from_millis(2_500);

/// The bound SRT listener and what its connections need.
pub struct SrtIngest {
    listener: SrtListener,
    incoming: SrtIncoming,
    addr: SocketAddr,
    ctx: Arc<ConnectionContext>,
    passphrase: Option<String>,
    ffmpeg: String,
}

impl std::fmt::Debug for SrtIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtIngest")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SrtIngest {
    /// Binds `config.listen` (UDP). `ffmpeg` remuxes each connection's MPEG-TS.
    pub async fn bind(
        addr: SocketAddr,
        config: &SrtConfig,
        ctx: Arc<ConnectionContext>,
        ffmpeg: String,
    ) -> std::io::Result<Self> {
        let socket = tokio::net::UdpSocket::bind(addr).await?;
        let addr = socket.local_addr()?;
        let (listener, incoming) = SrtListener::builder()
            .socket(socket)
            .latency(Duration::from_millis(config.latency_ms))
            .bind(addr)
            .await?;
        Ok(Self {
            listener,
            incoming,
            addr,
            ctx,
            passphrase: config.passphrase.clone(),
            ffmpeg,
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Takes callers until `shutdown`, each in a task of `tracker`.
    pub async fn run(mut self, shutdown: CancellationToken, tracker: TaskTracker) {
        let this = Arc::new(Caller {
            ctx: Arc::clone(&self.ctx),
            passphrase: self.passphrase.clone(),
            ffmpeg: self.ffmpeg.clone(),
            shutdown: shutdown.clone(),
        });
        loop {
            let request = tokio::select! {
                request = self.incoming.incoming().next() => request,
                () = shutdown.cancelled() => None,
            };
            let Some(request) = request else { break };
            let peer = request.remote();
            let span = tracing::info_span!("srt", peer = %peer);
            tracker.spawn(Arc::clone(&this).serve(request).instrument(span));
        }
        self.listener.close().await;
    }
}

/// What serving one caller needs.
struct Caller {
    ctx: Arc<ConnectionContext>,
    passphrase: Option<String>,
    ffmpeg: String,
    shutdown: CancellationToken,
}

impl Caller {
    /// One caller: refused at the handshake, or admitted and fed until its
    /// connection ends.
    async fn serve(self: Arc<Self>, request: ConnectionRequest) {
        let peer = request.remote();
        let stream_id = request.stream_id().map(|s| s.to_string());
        let Some(parsed) = stream_id.as_deref().and_then(SrtRequest::parse) else {
            tracing::warn!(peer = %peer, "srt connection refused: no stream id naming app/key");
            reject(request, ServerRejectReason::BadRequest).await;
            return;
        };
        let mut name = parsed.name;
        if !parsed.publish {
            tracing::warn!(peer = %peer, stream = %name.masked(), "srt connection refused: only publishing (m=publish) is served");
            reject(request, ServerRejectReason::BadMode).await;
            return;
        }
        let passphrase = self
            .ctx
            .relay
            .srt_passphrase_of_key(&name.name)
            .or_else(|| self.passphrase.clone());
        let kick = CancellationToken::new();
        // With a passphrase, the handshake proves the caller knows it before
        // anything starts (a refused publish then closes the connection);
        // without one, the publish is decided first, so that a refusal is the
        // handshake's reject code.
        let (admitted, socket) = match passphrase {
            Some(passphrase) => {
                let key_settings =
                    Passphrase::try_from(passphrase)
                        .ok()
                        .map(|passphrase| KeySettings {
                            key_size: request.key_size(),
                            passphrase,
                        });
                let socket = match request.accept(key_settings).await {
                    Ok(socket) => socket,
                    Err(err) => {
                        tracing::warn!(peer = %peer, stream = %name.masked(), "srt handshake failed (a wrong or missing passphrase): {err}");
                        return;
                    }
                };
                match self.admit(&mut name, peer, &kick).await {
                    Ok(admitted) => (admitted, socket),
                    Err(_) => return,
                }
            }
            None => {
                let admitted = match self.admit(&mut name, peer, &kick).await {
                    Ok(admitted) => admitted,
                    Err(reason) => {
                        reject(request, reason).await;
                        return;
                    }
                };
                match request.accept(None).await {
                    Ok(socket) => (admitted, socket),
                    Err(err) => {
                        // A caller that encrypts, against a listener that does not.
                        tracing::warn!(peer = %peer, stream = %name.masked(), "srt handshake failed (the caller encrypts; no passphrase is set here): {err}");
                        admitted.finish(false, &self.ctx, &kick, &self.shutdown);
                        return;
                    }
                }
            }
        };
        let input = StreamReader::new(Box::pin(ending_with_its_close(socket)));
        let stop = feed::stop_token(&kick, &self.shutdown);
        let _linked = stop.clone().drop_guard();
        let mut fed = Fed::default();
        let result = feed::feed_through_ffmpeg(
            input,
            BodyKind {
                container: Container::MpegTs,
                // A close loses what was in flight: the end is a cut.
                end: BodyEnd::Cut,
            },
            &self.ffmpeg,
            &admitted.publisher,
            self.ctx.session.idle_timeout,
            &stop,
            &mut fed,
        )
        .await;
        match &result {
            Ok(()) => tracing::info!(tags = fed.tags, "srt connection ended"),
            Err(err) => tracing::warn!(tags = fed.tags, "srt connection ended: {err}"),
        }
        // SRT has no unpublish: any end is a drop.
        admitted.finish(true, &self.ctx, &kick, &self.shutdown);
    }
}

impl Caller {
    /// [`admission::admit`], bounded by [`ADMISSION_TIMEOUT`]; a refusal is
    /// logged and given as the reject code it maps to.
    async fn admit(
        &self,
        name: &mut crate::stream_name::StreamName,
        peer: SocketAddr,
        kick: &CancellationToken,
    ) -> Result<admission::Admitted, ServerRejectReason> {
        let admitted = tokio::time::timeout(
            ADMISSION_TIMEOUT,
            admission::admit(&self.ctx, name, peer, kick, &self.shutdown),
        )
        .await
        .unwrap_or(Err(Refusal::Shutdown));
        admitted.map_err(|refusal| {
            tracing::warn!(peer = %peer, stream = %name.masked(), "publish refused: {refusal}");
            reject_reason(&refusal)
        })
    }
}

/// The caller's MPEG-TS, then its close: the link's statistics logged, and
/// an error when the connection failed rather than closed.
fn ending_with_its_close(socket: SrtSocket) -> impl Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(Some(socket), |state| async move {
        let mut socket = state?;
        match socket.next().await {
            Some(Ok((_, bytes))) => return Some((Ok(bytes), Some(socket))),
            Some(Err(err)) => return Some((Err(err), None)),
            None => {}
        }
        log_receive_statistics(&mut socket).await;
        // srt-tokio ends the stream the same way when its connection task
        // failed (it panics on control packets it does not handle, such as a
        // congestion warning): say so rather than end as a close.
        let err = socket.close_and_finish().await.err()?;
        let failed = format!("the SRT connection failed on the caller's packets: {err}");
        Some((Err(std::io::Error::other(failed)), None))
    })
}

/// Logs how the link fared, as SRT counted it (up to a second old: srt-tokio
/// reports once a second): what an operator needs to tell a lossy link, or
/// too little latency for it, from a caller's own trouble.
async fn log_receive_statistics(socket: &mut SrtSocket) {
    let Some(stats) = socket.statistics().clone().next().await else {
        return;
    };
    tracing::info!(
        packets = stats.rx_data,
        lost = stats.rx_loss_data,
        retransmitted = stats.rx_retransmit_data,
        dropped_too_late = stats.rx_dropped_data,
        undecryptable = stats.rx_decrypt_errors,
        rtt_ms = stats.rx_average_rtt.as_millis() as u64,
        "srt link statistics"
    );
}

/// The handshake's answer to a refused publish.
fn reject_reason(refusal: &Refusal) -> ServerRejectReason {
    match refusal {
        Refusal::Auth(AuthError::UnknownKey) => ServerRejectReason::Unauthorized,
        Refusal::Auth(_) => ServerRejectReason::Forbidden,
        Refusal::TooManyFromAddress => ServerRejectReason::Overload,
        Refusal::Elsewhere(_) | Refusal::Hub(HubError::AlreadyPublishing | HubError::NoPrimary) => {
            ServerRejectReason::Conflict
        }
        Refusal::Draining | Refusal::RegistryDown | Refusal::Hub(_) | Refusal::Shutdown => {
            ServerRejectReason::Down
        }
    }
}

async fn reject(request: ConnectionRequest, reason: ServerRejectReason) {
    let _ = request.reject(RejectReason::Server(reason)).await;
}
