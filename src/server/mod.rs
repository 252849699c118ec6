//! The RTMP and RTMPS listeners: accept connections within shared limits and run
//! each one as a task in the shutdown tree.

pub mod admission;
pub mod connection;
pub mod context;
pub mod feed;
pub mod grace;
pub mod per_ip;
pub mod proxy_header;
pub mod srt;
pub mod standby;
pub mod tls;
pub mod ts_end;
pub mod waiting;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use connection::{ConnectionContext, ConnectionError};
pub use grace::PublisherGrace;

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// The connection limits every listener shares, so that RTMPS is no way around
/// `max_connections` or the per-address limit.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections served at once, over every listener.
    pub slots: Arc<Semaphore>,
    /// Connections at once per client address, over every listener.
    pub per_ip: Arc<per_ip::PerIpLimit>,
    /// Connections being served, over every listener. The semaphore cannot say:
    /// each accept loop holds one of its permits while it waits for a connection.
    pub open: Arc<AtomicUsize>,
}

impl ConnectionLimits {
    /// At most `max_connections` in all, `max_connections_per_ip` per address.
    pub fn new(max_connections: usize, max_connections_per_ip: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_connections)),
            per_ip: per_ip::PerIpLimit::new(max_connections_per_ip),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }
}

/// A bound RTMP listener, plain or (with a [`TlsAcceptor`]) RTMPS.
pub struct RtmpListener {
    listener: TcpListener,
    ctx: Arc<ConnectionContext>,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    /// Whether each connection starts with a PROXY protocol header (`[rtmp] proxy_protocol`).
    proxied: bool,
}

/// Counts one served connection in [`ConnectionLimits::open`] until dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(open))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RtmpListener {
    /// Binds the listen address; port 0 picks a free port (see [`Self::local_addr`]).
    /// With `tls`, each connection first completes a TLS handshake, within the
    /// same handshake deadline as the RTMP handshake and connect that follow.
    pub async fn bind(
        addr: SocketAddr,
        ctx: Arc<ConnectionContext>,
        limits: ConnectionLimits,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            ctx,
            limits,
            tls,
            proxied: false,
        })
    }

    /// Expects a PROXY protocol v2 header at the start of every connection (from a
    /// balancer), whose client address then stands for the connection's; or, with
    /// `false` (the default), refuses connections that start with one.
    pub fn with_proxy_protocol(mut self, proxied: bool) -> Self {
        self.proxied = proxied;
        self
    }

    /// The number of connections being served (on every listener sharing these
    /// limits), for the metrics gauge.
    pub fn open_connections(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.limits.open)
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until `shutdown`; each connection runs in `tracker`, on the next
    /// of `workers` (or here, without workers).
    pub async fn run(
        self,
        shutdown: CancellationToken,
        tracker: TaskTracker,
        workers: Arc<crate::transport::Workers>,
    ) {
        loop {
            // Waiting for a permit before accepting leaves excess connections in the
            // kernel's backlog instead of holding sockets we will not serve.
            let permit = tokio::select! {
                permit = Arc::clone(&self.limits.slots).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                () = shutdown.cancelled() => return,
            };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = shutdown.cancelled() => return,
            };
            let (socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("accept failed: {err}");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            };
            // Behind a balancer the address that counts arrives in the PROXY header,
            // so that connection's slot is taken once the header is read.
            let ip_slot = if self.proxied {
                None
            } else {
                let Some(slot) = self.limits.per_ip.acquire(peer.ip()) else {
                    tracing::warn!(%peer, "connection refused: too many connections from this address");
                    drop(socket);
                    continue;
                };
                Some(slot)
            };
            let (worker, incoming) = match workers.route(socket) {
                Ok(routed) => routed,
                Err(err) => {
                    tracing::warn!(%peer, "cannot hand the connection to a worker: {err}");
                    continue;
                }
            };
            let counted = Counted::new(&self.limits.open);
            let ctx = Arc::clone(&self.ctx);
            let shutdown = shutdown.child_token();
            let tls = self.tls.clone();
            let per_ip = Arc::clone(&self.limits.per_ip);
            let task = async move {
                let accepted = Instant::now();
                let mut socket = match incoming.arrive() {
                    Ok(socket) => socket,
                    Err(err) => return tracing::warn!(%peer, "cannot serve the connection: {err}"),
                };
                let (peer, ip_slot, proxied) = match ip_slot {
                    Some(slot) => (peer, slot, false),
                    None => {
                        let deadline = accepted + ctx.session.handshake_timeout;
                        let Some(client) =
                            proxied_client(&mut socket, peer, deadline, &shutdown).await
                        else {
                            return;
                        };
                        let Some(slot) = per_ip.acquire(client.ip()) else {
                            return tracing::warn!(peer = %client, balancer = %peer, "connection refused: too many connections from this address");
                        };
                        (client, slot, true)
                    }
                };
                let span = match tls {
                    Some(_) => tracing::info_span!("rtmps", %peer),
                    None => tracing::info_span!("rtmp", %peer),
                };
                serve_tcp(socket, peer, accepted, proxied, tls, ctx, shutdown)
                    .instrument(span)
                    .await;
                drop(counted);
                drop(ip_slot);
                drop(permit);
            };
            match worker {
                Some(handle) => tracker.spawn_on(task, &handle),
                None => tracker.spawn(task),
            };
        }
    }
}

/// The client behind the balancer at `balancer`, from the PROXY header that starts
/// the connection (the balancer's own address for a `LOCAL` header); `None`, with
/// the reason logged, when the header is missing, malformed or late.
async fn proxied_client(
    socket: &mut TcpStream,
    balancer: SocketAddr,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Option<SocketAddr> {
    // `peer`: the log's per-address limit counts these lines against the address
    // that sent them (the balancer's, or whoever connects past it).
    let refused = |reason: &dyn std::fmt::Display| {
        tracing::warn!(peer = %balancer, "connection refused: {reason}");
        None
    };
    tokio::select! {
        read = timeout_at(deadline, proxy_header::read(socket)) => match read {
            Ok(Ok(client)) => Some(client.unwrap_or(balancer)),
            Ok(Err(err)) => refused(&err),
            Err(_) => refused(&"no PROXY protocol header within the handshake deadline"),
        },
        () = shutdown.cancelled() => None,
    }
}

/// Serves one accepted connection whose PROXY header, if `proxied`, was read.
async fn serve_tcp(
    socket: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    proxied: bool,
    tls: Option<TlsAcceptor>,
    ctx: Arc<ConnectionContext>,
    shutdown: CancellationToken,
) {
    if !proxied {
        // A balancer's header here means the balancer and prism disagree: say so
        // rather than fail the RTMP or TLS handshake on its first byte.
        let deadline = accepted + ctx.session.handshake_timeout;
        let first = tokio::select! {
            first = timeout_at(deadline, proxy_header::refuse_unexpected(&socket)) => first,
            () = shutdown.cancelled() => return,
        };
        match first {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return tracing::warn!("connection refused: {err}"),
            Err(_) => {
                return tracing::warn!(
                    "closing connection: {}",
                    ConnectionError::HandshakeTimeout(ctx.session.handshake_timeout)
                );
            }
        }
    }
    if let Err(err) = crate::transport::socket::send_at_once(&socket) {
        tracing::debug!("TCP_NODELAY: {err}");
    }
    tracing::debug!("connected");
    let result = match tls {
        None => connection::serve(socket, peer, accepted, ctx, shutdown).await,
        Some(acceptor) => serve_tls(socket, peer, accepted, &acceptor, ctx, shutdown).await,
    };
    match result {
        Ok(()) => tracing::debug!("closed"),
        Err(err) => tracing::warn!("closing connection: {err}"),
    }
}

/// The TLS handshake, bounded by the connection's handshake deadline, then the
/// same connection driver as plain RTMP over the TLS stream.
async fn serve_tls(
    socket: TcpStream,
    peer: SocketAddr,
    accepted: Instant,
    acceptor: &TlsAcceptor,
    ctx: Arc<ConnectionContext>,
    shutdown: CancellationToken,
) -> Result<(), ConnectionError> {
    let deadline = accepted + ctx.session.handshake_timeout;
    let stream = tokio::select! {
        result = timeout_at(deadline, acceptor.accept(socket)) => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) if is_not_tls(&err) => return Err(ConnectionError::NotTls(err)),
            Ok(Err(err)) => return Err(ConnectionError::Tls(err)),
            Err(_) => return Err(ConnectionError::HandshakeTimeout(ctx.session.handshake_timeout)),
        },
        () = shutdown.cancelled() => return Ok(()),
    };
    let version = match stream.get_ref().1.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_2) => "1.2",
        Some(rustls::ProtocolVersion::TLSv1_3) => "1.3",
        _ => "other",
    };
    tracing::debug!(tls = version, "TLS established");
    connection::serve(stream, peer, accepted, ctx, shutdown).await
}

/// Whether the TLS handshake failed because the first record was not TLS at all.
fn is_not_tls(err: &std::io::Error) -> bool {
    use rustls::{Error, InvalidMessage};
    err.get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|e| matches!(e, Error::InvalidMessage(InvalidMessage::InvalidContentType)))
}
