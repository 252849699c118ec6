//! The HTTP side: JSON status and control API, Prometheus metrics, a live dashboard.
//!
//! Answers the question users of other relays cannot: which leg is failing, and why.
//! Reads are open unless `[http] protect_reads` is set; every mutating endpoint
//! needs a bearer token: the admin's (`[http] token`) for everything, or a user's
//! (`api_token` in their file) for that user's streams and saved destinations
//! ([`saved`]). Without either, control is disabled (403).

pub mod access;
pub mod api;
pub mod cluster;
pub mod cue;
pub mod error;
pub mod hls;
pub mod ingest;
pub mod listener;
pub mod metrics;
pub mod model;
pub mod saved;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use listener::{HttpLimits, OpenConnections};

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
    /// Players waiting for streams that are not live, for their gauge.
    pub waiting_players: Arc<crate::server::waiting::WaitingPlayers>,
    /// HTTP connections being served, for their gauge.
    pub http_connections: Arc<OpenConnections>,
    /// Reloads the configuration (`POST /api/v1/reload`).
    pub reloader: Arc<Reloader>,
    /// HLS of live streams, unless `[hls] enabled = false`.
    pub hls: Option<Arc<crate::hls::HlsService>>,
    /// Draining: `/healthz` answers 503, `POST /api/v1/drain` begins it.
    pub drain: Arc<crate::cluster::Drain>,
    /// The other nodes' streams and control, with `[cluster] redis_url`.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Publishing over HTTP (`/ingest/...`), unless `[http] ingest = false`.
    pub ingest: Option<Arc<ingest::IngestContext>>,
}

impl HttpState {
    /// RTMP connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// The largest request body accepted: a destination request is a few hundred
/// bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The routes. Every per-stream endpoint takes the stream's `{id}` (unique,
/// from `GET /api/v1/streams`) or `{app}/{name}` (the name status shows, refused
/// with 409 when two live streams share it). A literal path segment wins over a
/// parameter, so `/api/v1/streams/{x}/destinations` is always the id form: a
/// stream whose name is literally `destinations` is reached by its id.
pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/", get(api::dashboard))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/streams", get(cluster::list_streams))
        .route("/api/v1/reload", post(api::reload))
        .route("/api/v1/drain", post(api::drain))
        .route("/api/v1/uploads", get(api::uploads))
        .route("/api/v1/users", get(saved::list_users))
        .merge(hls_routes(&state))
        .route("/assets/hls.light.min.js", get(hls::hls_js))
        .route(
            "/api/v1/users/{user}/destinations",
            get(saved::list).post(saved::add),
        )
        .route(
            "/api/v1/users/{user}/destinations/{destination}",
            patch(saved::update).delete(saved::remove),
        )
        .merge(per_stream_routes(&state))
        .merge(ingest_routes())
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The routes that act on one stream; in a cluster, a request for a stream that
/// lives on another node is forwarded there ([`cluster::forward_if_elsewhere`]).
fn per_stream_routes(state: &Arc<HttpState>) -> Router<Arc<HttpState>> {
    Router::new()
        .route("/api/v1/streams/{id}/hls_token", post(hls::issue_token))
        .route(
            "/api/v1/streams/{app}/{name}/hls_token",
            post(hls::issue_token),
        )
        .route(
            "/api/v1/streams/{id}",
            get(api::get_stream).delete(api::kick_publisher),
        )
        .route(
            "/api/v1/streams/{id}/destinations",
            post(api::add_destination),
        )
        .route(
            "/api/v1/streams/{id}/destinations/{destination}",
            delete(api::remove_destination),
        )
        .route(
            "/api/v1/streams/{id}/destinations/{destination}/restart",
            post(api::restart_destination),
        )
        .route("/api/v1/streams/{id}/cue", post(cue::insert_cue))
        .route(
            "/api/v1/streams/{app}/{name}",
            get(api::get_stream).delete(api::kick_publisher),
        )
        .route("/api/v1/streams/{app}/{name}/cue", post(cue::insert_cue))
        .route(
            "/api/v1/streams/{app}/{name}/destinations",
            post(api::add_destination),
        )
        .route(
            "/api/v1/streams/{app}/{name}/destinations/{destination}",
            delete(api::remove_destination),
        )
        .route(
            "/api/v1/streams/{app}/{name}/destinations/{destination}/restart",
            post(api::restart_destination),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(state),
            cluster::forward_if_elsewhere,
        ))
}

/// `/ingest/{app}/{name}`: a body as long as the broadcast, so no body limit
/// (the listener leaves it out of the request deadline too).
fn ingest_routes() -> Router<Arc<HttpState>> {
    let push = Router::new()
        .route(
            "/ingest/{app}/{name}",
            post(ingest::ingest).put(ingest::ingest),
        )
        .layer(DefaultBodyLimit::disable());
    let chunks = Router::new()
        .route("/ingest/{app}/{name}/session", post(ingest::session::open))
        .route(
            "/ingest/{app}/{name}/session/{id}",
            delete(ingest::session::end),
        )
        .route(
            "/ingest/{app}/{name}/session/{id}/{seq}",
            put(ingest::session::put_chunk).post(ingest::session::put_chunk),
        )
        .layer(DefaultBodyLimit::max(ingest::session::MAX_CHUNK_BYTES));
    push.merge(chunks)
}

/// `/hls/...`, with its CORS policy (`[hls] allow_origins`) when HLS is on.
fn hls_routes(state: &Arc<HttpState>) -> Router<Arc<HttpState>> {
    // In a cluster, files of a stream held by another node come from that node.
    let routes = Router::new()
        .route("/hls/{*path}", get(hls::serve))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(state),
            cluster::forward_if_elsewhere,
        ));
    match &state.hls {
        Some(hls) => routes.layer(hls.config().cors()),
        None => routes,
    }
}

/// Binds the HTTP listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves until `shutdown` within `limits` (see [`listener`] for what each bounds),
/// every connection a task of `tracker`.
pub async fn serve(
    tcp: TcpListener,
    state: Arc<HttpState>,
    limits: HttpLimits,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let open = Arc::clone(&state.http_connections);
    listener::serve(tcp, router(state), limits, open, shutdown, tracker).await;
}
