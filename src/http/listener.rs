//! The HTTP listener: a cap on connections and a deadline for every phase
//! in which a client could otherwise hold one open for free.
//!
//! `axum::serve` has neither a connection cap nor a header deadline, so one client
//! trickling header lines, or thousands of idle sockets, could tie up the API and
//! its memory. Here each connection is served by hyper's HTTP/1 server with:
//!
//! - **a cap** (`http.max_connections`): a connection is accepted only with a
//!   permit, so extra ones wait in the kernel's backlog, as on the RTMP port;
//! - **a header deadline** (`http.header_timeout_secs`): hyper's
//!   `header_read_timeout` runs from the moment it starts reading a request head
//!   until the head is complete. It starts again as soon as a response is written,
//!   so it also bounds a keep-alive connection that sits idle between requests;
//! - **a request deadline** (`http.request_timeout_secs`): reading the body and
//!   handling the request must finish in time, or the answer is 408 and the
//!   connection closes (except a push to `/ingest/{app}/{name}`, whose body lasts as long as
//!   its broadcast: its handler ends a body silent for the RTMP idle timeout). A body the handler does not read is drained once and
//!   otherwise the connection is closed (hyper), so a trickled body cannot hold
//!   one either;
//! - **a write deadline** (the same `request_timeout_secs`): a client that stops
//!   reading its response is dropped once a write has been blocked that long;
//! - **bounded buffers**: request heads over [`MAX_HEADER_BYTES`] get 431, bodies
//!   are limited by the router.
//!
//! Shutdown: on the cancellation token the listener stops accepting, idle
//! connections close at once and a request in progress finishes first (bounded by
//! the request deadline); every connection is a task of the app's tracker.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::HttpConfig;

/// The largest request head (request line and headers) accepted: browsers send a
/// few KiB, cookies included; more is refused with 431 before it is buffered.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The bounds of the HTTP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// Deadline for a request head, and for an idle keep-alive connection.
    pub header_timeout: Duration,
    /// Deadline for reading a request's body and answering it, and for a blocked
    /// response write.
    pub request_timeout: Duration,
}

impl HttpLimits {
    /// The limits `[http]` asks for.
    pub fn from_config(config: &HttpConfig) -> Self {
        Self {
            max_connections: config.max_connections,
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            request_timeout: Duration::from_secs(config.request_timeout_secs),
        }
    }
}

/// Counts the HTTP connections being served, for the gauge and for tests.
#[derive(Debug, Default)]
pub struct OpenConnections(AtomicUsize);

impl OpenConnections {
    /// Connections being served now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn open(self: &Arc<Self>) -> OpenGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        OpenGuard(Arc::clone(self))
    }
}

/// One served connection: counted while it lives.
struct OpenGuard(Arc<OpenConnections>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` until `shutdown`, each connection a task of
/// `tracker`, counted in `open`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    open: Arc<OpenConnections>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_BYTES);
    let mut at_limit = false;
    loop {
        // A permit before accepting: at the cap, connections stay in the backlog.
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => {
                at_limit = false;
                permit
            }
            Err(_) => {
                if !at_limit {
                    at_limit = true;
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "http connection limit reached; new connections wait in the backlog"
                    );
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    permit = Arc::clone(&permits).acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little rather
                    // than spin; the listener itself is still good.
                    tracing::warn!("http accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = Connection {
            stream,
            peer,
            router: router.clone(),
            builder: builder.clone(),
            limits,
            _open: open.open(),
            _permit: permit,
        };
        tracker.spawn(connection.run(shutdown.clone()));
    }
}

/// One accepted connection with what it takes to serve it.
struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    builder: http1::Builder,
    limits: HttpLimits,
    _open: OpenGuard,
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn run(self, shutdown: CancellationToken) {
        let Self {
            stream,
            peer,
            router,
            builder,
            limits,
            ..
        } = self;
        let _ = stream.set_nodelay(true);
        let mut io = TimeoutStream::new(stream);
        // Reads are bounded by hyper (head) and the request deadline (body);
        // writes only here.
        io.set_write_timeout(Some(limits.request_timeout));
        let io = TokioIo::new(Box::pin(io));
        let request_timeout = limits.request_timeout;
        let service = service_fn(move |mut request: Request<Incoming>| {
            let router = router.clone();
            request
                .extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            // A push's body lasts as long as its broadcast; the handler bounds
            // it by its own idle deadline instead.
            let path = request.uri().path();
            let push = path.starts_with("/ingest/") && path.matches('/').count() == 3;
            let deadline = if push { Duration::MAX } else { request_timeout };
            async move {
                let answer = tokio::time::timeout(deadline, router.oneshot(request)).await;
                Ok::<_, Infallible>(match answer {
                    Ok(Ok(response)) => response,
                    Ok(Err(never)) => match never {},
                    Err(_) => too_slow(request_timeout),
                })
            }
        });
        let mut connection = pin!(builder.serve_connection(io, service));
        let result = tokio::select! {
            result = connection.as_mut() => result,
            () = shutdown.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        match result {
            Ok(()) => {}
            Err(err) if err.is_timeout() => {
                tracing::info!(%peer, "http connection closed: request head not received in time");
            }
            Err(err) if is_write_timeout(&err) => {
                tracing::info!(%peer, "http connection closed: the client stopped reading");
            }
            Err(err) => tracing::debug!(%peer, "http connection closed: {err}"),
        }
    }
}

/// Whether hyper gave up because a write was blocked past the write deadline.
fn is_write_timeout(err: &hyper::Error) -> bool {
    std::error::Error::source(err)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
}

/// The answer to a request whose body or handling outlasted the deadline; the
/// connection closes after it.
fn too_slow(deadline: Duration) -> Response<Body> {
    let body = axum::Json(serde_json::json!({
        "error": format!(
            "request not completed within {} s (http.request_timeout_secs)",
            deadline.as_secs()
        )
    }));
    let mut response = (StatusCode::REQUEST_TIMEOUT, body).into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
