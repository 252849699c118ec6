//! HTTP push ingest: `POST /ingest/{app}/{name}` (or `PUT`, as `curl -T` sends)
//! publishes the request body as a live stream, exactly as an RTMP encoder
//! publishing `{app}/{name}` would: `{name}` is the stream key and the query
//! string carries the destinations (`/ingest/live/KEY?youtube=...`). A client
//! that would rather not put its key in the URL sends `Authorization: Bearer
//! KEY`, and `{name}` is then its user's name (checked when users are
//! configured).
//!
//! The stream goes through the same admission as an RTMP publish
//! (`server::admission`: keys, users, the callback, limits, the cluster, the
//! grace period), so nothing downstream knows how it arrived. The body streams
//! (HTTP/1.1 chunked or with a length) for as long as the broadcast lasts: the
//! request deadline does not apply to it (the listener leaves `/ingest/` out),
//! a body silent for the RTMP idle timeout is ended instead. A clean end of the
//! body ends the stream; a body that breaks off is a dropped publisher (the
//! grace period holds its destinations). The answer comes when the body ends.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use futures_util::TryStreamExt;
use tokio::io::AsyncBufReadExt;
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::server::feed::{self, Container, Fed, FeedError};

mod reorder;
pub mod session;

use super::HttpState;
use super::access::bearer_credentials;
use super::api::ApiError;
use crate::hub::HubError;
use crate::relay::AuthError;
use crate::server::ConnectionContext;
use crate::server::admission::{self, Admitted, Refusal};
use crate::stream_name::StreamName;

/// What the ingest needs beyond the API's state: the publishers' shared
/// context and the app's shutdown.
#[derive(Debug)]
pub struct IngestContext {
    /// What every input shares (hub, relay, limits, grace period).
    pub inputs: Arc<ConnectionContext>,
    /// Cancelled when prism shuts down.
    pub shutdown: CancellationToken,
    /// The ffmpeg that reads containers other than FLV.
    pub ffmpeg: String,
    /// Where sessions' tasks run.
    pub tracker: tokio_util::task::TaskTracker,
    /// The chunked pushes open now, by id.
    pub sessions: dashmap::DashMap<String, Arc<session::Session>>,
}

/// The ingest's context, or 404 when it is off.
fn ingest_context(state: &HttpState) -> Result<Arc<IngestContext>, ApiError> {
    state.ingest.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "HTTP ingest is off ([http] ingest = false)",
        )
    })
}

/// What a finished push answers.
#[derive(Debug, serde::Serialize)]
pub struct IngestSummary {
    /// The stream's id while it was live (none for a backup input).
    pub stream_id: Option<String>,
    /// `flv`, `mpegts` or `other` (read by ffmpeg).
    pub container: &'static str,
    /// FLV tags that went into the stream.
    pub tags: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// `POST` or `PUT /ingest/{app}/{name}`.
pub async fn ingest(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((app, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestSummary>, ApiError> {
    let ingest = ingest_context(&state)?;
    let span = tracing::info_span!("http_ingest", peer = %peer);
    async move {
        let mut stream = stream_name(&state, &app, &name, query.as_deref(), &headers)?;
        let kick = CancellationToken::new();
        let admitted = match admission::admit(
            &ingest.inputs,
            &mut stream,
            peer,
            &kick,
            &ingest.shutdown,
        )
        .await
        {
            Ok(admitted) => admitted,
            Err(refusal) => {
                tracing::warn!(stream = %stream.masked(), "publish refused: {refusal}");
                return Err(refused(&refusal));
            }
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        run(&ingest, admitted, body, content_type.as_deref(), &kick).await
    }
    .instrument(span)
    .await
}

/// The stream a push publishes: `{name}` (the key) or, with a bearer key,
/// the key, after checking that it is `{name}`'s.
fn stream_name(
    state: &HttpState,
    app: &str,
    name: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<StreamName, ApiError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_credentials);
    let key = match bearer {
        Some(key) => {
            if state.relay.has_users() && state.relay.user_of_key(key).as_deref() != Some(name) {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    format!("that stream key is not {name}'s"),
                ));
            }
            key
        }
        None => name,
    };
    let with_query = match query {
        Some(query) if !query.is_empty() => format!("{key}?{query}"),
        _ => key.to_owned(),
    };
    StreamName::parse(app, "", &with_query).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "the app and stream name must be 1 to 256 printable characters",
        )
    })
}

/// The HTTP answer to a refused publish.
fn refused(refusal: &Refusal) -> ApiError {
    let status = match refusal {
        Refusal::Auth(AuthError::UnknownKey) => StatusCode::UNAUTHORIZED,
        Refusal::Auth(_) => StatusCode::FORBIDDEN,
        Refusal::TooManyFromAddress => StatusCode::TOO_MANY_REQUESTS,
        Refusal::Elsewhere(_) | Refusal::Hub(HubError::AlreadyPublishing | HubError::NoPrimary) => {
            StatusCode::CONFLICT
        }
        Refusal::Draining | Refusal::RegistryDown | Refusal::Hub(_) | Refusal::Shutdown => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    ApiError::new(status, refusal.peer_description())
}

/// Reads the body into the admitted publisher until it ends, then ends the
/// stream (a clean end) or holds it for its publisher's return (a break).
async fn run(
    ingest: &IngestContext,
    admitted: Admitted,
    body: Body,
    content_type: Option<&str>,
    kick: &CancellationToken,
) -> Result<Json<IngestSummary>, ApiError> {
    let idle = ingest.inputs.session.idle_timeout;
    let stop = feed::stop_token(kick, &ingest.shutdown);
    // Ends the task that links the two tokens, however this returns.
    let _linked = stop.clone().drop_guard();
    let stream_id = admitted.relay.as_ref().map(|r| r.stream_id().to_string());
    let mut body = StreamReader::new(body.into_data_stream().map_err(std::io::Error::other));
    let first = match tokio::time::timeout(idle, body.fill_buf()).await {
        Ok(Ok(first)) => first
            .get(..189.min(first.len()))
            .unwrap_or_default()
            .to_vec(),
        Ok(Err(err)) => return end(ingest, admitted, kick, Err(FeedError::Body(err)), None),
        Err(_) => return end(ingest, admitted, kick, Err(FeedError::Idle(idle)), None),
    };
    let container = Container::sniff(&first, content_type);
    let mut fed = Fed::default();
    let publisher = &admitted.publisher;
    let result = match container {
        Container::Flv => feed::feed_flv(&mut body, publisher, idle, true, &stop, &mut fed).await,
        other => {
            feed::feed_through_ffmpeg(
                &mut body,
                other,
                &ingest.ffmpeg,
                publisher,
                idle,
                &stop,
                &mut fed,
            )
            .await
        }
    };
    let summary = IngestSummary {
        stream_id,
        container: match container {
            Container::Flv => "flv",
            Container::MpegTs => "mpegts",
            Container::Other => "other",
            Container::Pcm { .. } => "pcm",
        },
        tags: fed.tags,
        bytes: fed.bytes,
    };
    end(ingest, admitted, kick, result, Some(summary))
}

/// Ends the push: a clean end of the body ends the stream now; anything else
/// is a publisher that dropped (see `PublisherGrace::publisher_left`).
fn end(
    ingest: &IngestContext,
    admitted: Admitted,
    kick: &CancellationToken,
    result: Result<(), FeedError>,
    summary: Option<IngestSummary>,
) -> Result<Json<IngestSummary>, ApiError> {
    admitted.finish(result.is_err(), &ingest.inputs, kick, &ingest.shutdown);
    match result {
        Ok(()) => {
            tracing::info!("the pushed body ended: unpublished");
            Ok(Json(summary.unwrap_or(IngestSummary {
                stream_id: None,
                container: "flv",
                tags: 0,
                bytes: 0,
            })))
        }
        Err(err) => {
            tracing::warn!("push ended: {err}");
            let status = match err {
                FeedError::Idle(_) => StatusCode::REQUEST_TIMEOUT,
                FeedError::Flv(_) => StatusCode::UNPROCESSABLE_ENTITY,
                FeedError::Body(_) => StatusCode::BAD_REQUEST,
                FeedError::Ffmpeg(_) => StatusCode::UNPROCESSABLE_ENTITY,
                FeedError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            };
            Err(ApiError::new(status, err.to_string()))
        }
    }
}
