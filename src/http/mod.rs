//! The HTTP side: JSON status and control API, Prometheus metrics, a live dashboard.
//!
//! Answers the question users of other relays cannot: which leg is failing, and why.
//! Reads are open unless `[http] protect_reads` is set; every mutating endpoint
//! needs the bearer token from `[http] token`, and is disabled (403) without one.

pub mod api;
pub mod metrics;
pub mod model;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::relay::Relay;
use crate::reload::Reloader;

/// The dashboard: one self-contained page, no build step.
pub const DASHBOARD: &str = include_str!("dashboard.html");

/// What the handlers read.
pub struct HttpState {
    /// Live streams.
    pub hub: Arc<Hub>,
    /// Destinations and control.
    pub relay: Arc<Relay>,
    /// The bearer token for control (and for reads when protected).
    pub token: Option<String>,
    /// Whether reads need the token too.
    pub protect_reads: bool,
    /// RTMP connections being served, for the open-connections gauge.
    pub connections: Arc<AtomicUsize>,
    /// Reloads the configuration (`POST /api/v1/reload`).
    pub reloader: Arc<Reloader>,
}

impl HttpState {
    /// RTMP connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// The routes.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/", get(api::dashboard))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/streams", get(api::list_streams))
        .route("/api/v1/reload", post(api::reload))
        .route(
            "/api/v1/streams/{app}/{name}",
            get(api::get_stream).delete(api::kick_publisher),
        )
        .route(
            "/api/v1/streams/{app}/{name}/destinations",
            post(api::add_destination),
        )
        .route(
            "/api/v1/streams/{app}/{name}/destinations/{id}",
            delete(api::remove_destination),
        )
        .route(
            "/api/v1/streams/{app}/{name}/destinations/{id}/restart",
            post(api::restart_destination),
        )
        .fallback(api::not_found)
        .with_state(state)
}

/// Binds the HTTP listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, state: Arc<HttpState>, shutdown: CancellationToken) {
    let app = router(state);
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!("http server: {err}");
    }
}
