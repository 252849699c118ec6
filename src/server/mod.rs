//! The RTMP listener: accepts connections within a limit and runs each one as a task
//! in the shutdown tree.

pub mod connection;
pub mod io;
pub mod per_ip;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use connection::{ConnectionContext, ConnectionError};

/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// A bound RTMP listener.
pub struct RtmpListener {
    listener: TcpListener,
    ctx: Arc<ConnectionContext>,
    limit: Arc<Semaphore>,
    per_ip: Arc<per_ip::PerIpLimit>,
    /// Connections being served. The semaphore cannot say: the accept loop holds
    /// one of its permits while it waits for the next connection.
    open: Arc<AtomicUsize>,
}

/// Counts one served connection in [`RtmpListener::open_connections`] until dropped.
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
    pub async fn bind(
        addr: SocketAddr,
        ctx: Arc<ConnectionContext>,
        max_connections: usize,
        max_connections_per_ip: usize,
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            ctx,
            limit: Arc::new(Semaphore::new(max_connections)),
            per_ip: per_ip::PerIpLimit::new(max_connections_per_ip),
            open: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The number of connections being served, for the metrics gauge.
    pub fn open_connections(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.open)
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until `shutdown`; each connection runs in `tracker`.
    pub async fn run(self, shutdown: CancellationToken, tracker: TaskTracker) {
        loop {
            // Waiting for a permit before accepting leaves excess connections in the
            // kernel's backlog instead of holding sockets we will not serve.
            let permit = tokio::select! {
                permit = Arc::clone(&self.limit).acquire_owned() => match permit {
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
            let Some(ip_slot) = self.per_ip.acquire(peer.ip()) else {
                tracing::warn!(%peer, "connection refused: too many connections from this address");
                drop(socket);
                continue;
            };
            let counted = Counted::new(&self.open);
            let ctx = Arc::clone(&self.ctx);
            let shutdown = shutdown.child_token();
            let span = tracing::info_span!("rtmp", %peer);
            tracker.spawn(
                async move {
                    serve_tcp(socket, peer, ctx, shutdown).await;
                    drop(counted);
                    drop(ip_slot);
                    drop(permit);
                }
                .instrument(span),
            );
        }
    }
}

async fn serve_tcp(
    socket: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ConnectionContext>,
    shutdown: CancellationToken,
) {
    // Media must not wait for the peer's delayed ACK (Nagle): it adds tens of ms.
    if let Err(err) = socket.set_nodelay(true) {
        tracing::debug!("TCP_NODELAY: {err}");
    }
    tracing::debug!("connected");
    match connection::serve(socket, peer, ctx, shutdown).await {
        Ok(()) => tracing::debug!("closed"),
        Err(err) => tracing::warn!("closing connection: {err}"),
    }
}
