//! `/hls/...`: the HLS of live streams (see [`crate::hls`]), and
//! `POST /api/v1/streams/{id}/hls_token`, which signs access tokens.
//!
//! Access: a stream's HLS is public unless `[hls] public = false` (or its user's
//! file says so); then a request needs the admin's or the stream's user's bearer
//! token, or a signed `?token=` for the stream's user (or, for a stream without a
//! user, its id). A token given is written into every URI of the playlists, so a
//! player carries it to every file without knowing about it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::HttpState;
use super::access::{Access, authorize_control, bearer_access};
use super::api::{ApiError, StreamPath};
use crate::hls::live::{Broadcast, LiveHls};
use crate::hls::packager::Packager;
use crate::hls::path::{self, File, StreamRef};
use crate::hls::playlist::{self, Names};
use crate::hls::{HlsService, SOURCE, token, variant};

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const MEDIA_TYPE: &str = "video/mp4";

/// `GET /hls/{*path}`.
pub async fn serve(
    State(state): State<Arc<HttpState>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(hls) = state.hls.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "HLS is disabled ([hls] enabled)",
        ));
    };
    let (stream, file) = path::parse(&path)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such HLS file"))?;
    let params = Params::parse(query.as_deref())?;
    let found = match &stream {
        StreamRef::Id(id) => state.relay.find_by_id(id),
        StreamRef::User { app, user } => state.relay.find_of_user(app, user, user),
    };
    let live = match found {
        Ok(relay) => {
            let broadcast = Broadcast {
                id: relay.id().to_string(),
                app: relay.app().to_owned(),
                key: relay.key().to_owned(),
                user: relay.user().map(str::to_owned),
            };
            let query = authorize(&state, hls, &headers, &broadcast, params.token.as_deref())?;
            let live = hls.open(&broadcast).map_err(|_| not_live())?;
            (live, query)
        }
        // A broadcast that just ended: its last files stay a moment.
        Err(_) => {
            let live = match &stream {
                StreamRef::Id(id) => hls.ended(Some(id), None),
                StreamRef::User { app, user } => hls.ended(None, Some((app, user))),
            }
            .ok_or_else(not_live)?;
            let query = authorize(
                &state,
                hls,
                &headers,
                &live.broadcast,
                params.token.as_deref(),
            )?;
            (live, query)
        }
    };
    let (live, query) = live;
    let rendition = file.rendition().to_owned();
    if live.rendition(&rendition).is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such rendition"));
    }
    let block = Duration::from_secs(3 * hls.config().timing().target_duration_secs());
    let names = Names {
        rendition: &rendition,
        query: &query,
    };
    let at = Rendition {
        live: &live,
        name: &rendition,
    };
    match file {
        File::Index if !live.rungs.is_empty() => master_playlist(&live, &query, block).await,
        File::Index | File::Playlist(_) => media_playlist(at, names, &params, block).await,
        File::Init(_, n) => {
            let init = at.window()?.init(n).cloned();
            init.map(|bytes| media(bytes.into()))
                .ok_or_else(|| gone(&live, "no such initialization segment"))
        }
        File::Segment(_, msn) => segment(at, msn, block).await,
        File::Part(_, msn, part) => part_file(at, msn, part, block).await,
    }
}

/// One rendition of a stream's HLS.
#[derive(Clone, Copy)]
struct Rendition<'a> {
    live: &'a LiveHls,
    name: &'a str,
}

impl Rendition<'_> {
    fn window(&self) -> Result<std::sync::MutexGuard<'_, Packager>, ApiError> {
        self.live
            .rendition(self.name)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such rendition"))
    }

    async fn wait_for(&self, block: Duration, ready: impl FnMut(&Packager) -> bool) -> bool {
        self.live.wait_for(self.name, block, ready).await
    }
}

/// The master playlist of a stream with a ladder: the source and each rung, once
/// each has made a part (or the wait ran out: a rung still starting is listed
/// with its profile's nominal rate).
async fn master_playlist(
    live: &LiveHls,
    query: &str,
    block: Duration,
) -> Result<Response, ApiError> {
    let started = |p: &Packager| p.ended() || p.segments().iter().any(|s| !s.parts.is_empty());
    if !live.wait_for(SOURCE, block, started).await {
        return Err(unavailable(live));
    }
    for rung in &live.rungs {
        live.wait_for(&rung.name, block, started).await;
    }
    let mut variants = vec![variant::of(SOURCE, &live.packager(), 0)];
    for rung in &live.rungs {
        variants.push(variant::of(&rung.name, &rung.packager(), rung.nominal_bps));
    }
    let mut response = (StatusCode::OK, playlist::master(&variants, query)).into_response();
    set(&mut response, header::CONTENT_TYPE, PLAYLIST_TYPE);
    set(&mut response, header::CACHE_CONTROL, "no-cache");
    Ok(response)
}

/// hls.js (light build, Apache-2.0, `src/http/assets/hls.js.LICENSE`), vendored
/// by `scripts/vendor-hlsjs`: the dashboard's preview player, served from the
/// binary so that no page of prism loads anything from elsewhere.
const HLS_JS: &[u8] = include_bytes!("assets/hls.light.min.js");

/// `GET /assets/hls.light.min.js`.
pub async fn hls_js() -> Response {
    let mut response = (StatusCode::OK, HLS_JS).into_response();
    set(&mut response, header::CONTENT_TYPE, "text/javascript");
    set(
        &mut response,
        header::CACHE_CONTROL,
        "public, max-age=86400",
    );
    response
}

/// The query parameters HLS requests carry.
#[derive(Debug, Default)]
struct Params {
    msn: Option<u64>,
    part: Option<usize>,
    token: Option<String>,
}

impl Params {
    fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut params = Self::default();
        let bad = |what: &str| ApiError::new(StatusCode::BAD_REQUEST, format!("bad {what}"));
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "_HLS_msn" => params.msn = Some(value.parse().map_err(|_| bad("_HLS_msn"))?),
                "_HLS_part" => params.part = Some(value.parse().map_err(|_| bad("_HLS_part"))?),
                "token" if value.len() <= 128 => params.token = Some(value.into_owned()),
                "token" => return Err(bad("token")),
                _ => {}
            }
        }
        if params.part.is_some() && params.msn.is_none() {
            return Err(bad("_HLS_part without _HLS_msn"));
        }
        Ok(params)
    }
}

/// Checks access to `relay`'s HLS; returns the query to put on every URI.
fn authorize(
    state: &HttpState,
    hls: &HlsService,
    headers: &HeaderMap,
    broadcast: &Broadcast,
    token: Option<&str>,
) -> Result<String, ApiError> {
    let public = broadcast
        .user
        .as_deref()
        .and_then(|user| state.relay.user_hls_public(user))
        .unwrap_or(hls.config().public);
    if public {
        return Ok(String::new());
    }
    let allowed = match bearer_access(state, headers) {
        Some(Access::Admin) => true,
        Some(Access::User(name)) => broadcast.user.as_deref() == Some(name.as_str()),
        _ => false,
    };
    if allowed {
        return Ok(String::new());
    }
    let Some(token) = token else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this stream's HLS needs a token: ?token= (POST /api/v1/streams/{id}/hls_token) \
             or Authorization: Bearer",
        ));
    };
    hls.signer
        .verify(
            &subject(broadcast.user.as_deref(), &broadcast.id),
            token,
            SystemTime::now(),
        )
        .map_err(|err| ApiError::new(StatusCode::FORBIDDEN, err.to_string()))?;
    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    Ok(format!("?token={encoded}"))
}

/// What a token for a stream is signed for: its user, so that one token serves
/// all their broadcasts, or the stream id.
fn subject(user: Option<&str>, id: &str) -> String {
    match user {
        Some(user) => format!("user:{user}"),
        None => format!("stream:{id}"),
    }
}

fn not_live() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no live stream here")
}

async fn media_playlist(
    at: Rendition<'_>,
    names: Names<'_>,
    params: &Params,
    block: Duration,
) -> Result<Response, ApiError> {
    let ready = match params.msn {
        Some(msn) => {
            let (edge, _) = at.window()?.edge();
            // The spec's bound: a request more than two segments ahead is refused.
            if msn > edge + 2 {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "_HLS_msn is more than two segments ahead of the live edge",
                ));
            }
            let part = params.part;
            at.wait_for(block, |p| {
                let (edge, parts) = p.edge();
                p.ended() || edge > msn || (edge == msn && part.is_some_and(|part| parts > part))
            })
            .await
        }
        None => {
            at.wait_for(block, |p| {
                p.ended() || p.segments().iter().any(|s| !s.parts.is_empty())
            })
            .await
        }
    };
    if !ready {
        return Err(unavailable(at.live));
    }
    let mut text = playlist::media(&*at.window()?, names, at.live.anchor());
    let reports: Vec<playlist::RenditionReport> = std::iter::once(SOURCE)
        .chain(at.live.rungs.iter().map(|r| r.name.as_str()))
        .filter(|name| *name != at.name)
        .filter_map(|name| {
            let last = at.live.rendition(name)?.last_part()?;
            Some(playlist::RenditionReport {
                rendition: name.to_owned(),
                last,
            })
        })
        .collect();
    playlist::rendition_reports(&mut text, &reports, names.query);
    let mut response = (StatusCode::OK, text).into_response();
    set(&mut response, header::CONTENT_TYPE, PLAYLIST_TYPE);
    set(&mut response, header::CACHE_CONTROL, "no-cache");
    Ok(response)
}

async fn segment(at: Rendition<'_>, msn: u64, block: Duration) -> Result<Response, ApiError> {
    let (edge, _) = at.window()?.edge();
    if msn == edge {
        at.wait_for(block, |p| p.edge().0 > msn || p.ended()).await;
    }
    let live = at.live;
    let packager = at.window()?;
    let complete = packager.complete();
    let first = packager.segments().front().map_or(0, |s| s.msn);
    let found = packager
        .segment(msn)
        .filter(|_| msn < first + complete as u64)
        .ok_or_else(|| gone(live, "no such segment"))?;
    let chunks: Vec<_> = found
        .chunks()
        .map(Ok::<_, std::convert::Infallible>)
        .collect();
    drop(packager);
    Ok(media(Body::from_stream(futures_util::stream::iter(chunks))))
}

async fn part_file(
    at: Rendition<'_>,
    msn: u64,
    part: usize,
    block: Duration,
) -> Result<Response, ApiError> {
    let exists = |p: &Packager| p.segment(msn).is_some_and(|s| s.parts.len() > part);
    let (edge, parts) = at.window()?.edge();
    // The hinted part, or the first of the next segment: worth waiting for.
    let next = (msn == edge && part <= parts) || (msn == edge + 1 && part == 0);
    if next {
        at.wait_for(block, |p| exists(p) || p.edge().0 > msn || p.ended())
            .await;
    }
    let live = at.live;
    let packager = at.window()?;
    let data = packager
        .segment(msn)
        .and_then(|s| s.parts.get(part))
        .map(|p| p.data.clone())
        .ok_or_else(|| gone(live, "no such part"))?;
    drop(packager);
    Ok(media(data.into()))
}

fn media(body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    set(&mut response, header::CONTENT_TYPE, MEDIA_TYPE);
    set(&mut response, header::CACHE_CONTROL, "max-age=60");
    response
}

fn set(response: &mut Response, name: header::HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

/// 404 for a file that is not (or no longer) there, or the packaging error.
fn gone(live: &LiveHls, what: &str) -> ApiError {
    match live.error() {
        Some(err) => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, err),
        None => ApiError::new(StatusCode::NOT_FOUND, what),
    }
}

/// 503 for a blocking request the stream did not satisfy in time.
fn unavailable(live: &LiveHls) -> ApiError {
    match live.error() {
        Some(err) => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, err),
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the stream has not reached that point yet",
        ),
    }
}

/// The answer of `POST /api/v1/streams/{id}/hls_token`.
#[derive(Debug, serde::Serialize)]
pub struct HlsToken {
    /// The token, for `?token=`.
    pub token: String,
    /// When it stops working (RFC 3339).
    pub expires_at: String,
    /// The stream's HLS with the token.
    pub url: String,
}

/// `POST /api/v1/streams/{id}/hls_token?ttl_secs=N` (admin or the stream's user;
/// default one hour, at most a week).
pub async fn issue_token(
    State(state): State<Arc<HttpState>>,
    stream: StreamPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<axum::Json<HlsToken>, ApiError> {
    let access = authorize_control(&state, &headers)?;
    let relay = stream.find(&state, &access)?;
    let Some(hls) = state.hls.as_deref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "HLS is disabled ([hls] enabled)",
        ));
    };
    let mut ttl = Duration::from_secs(3600);
    for (key, value) in url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        if key == "ttl_secs" {
            let secs: u64 = value
                .parse()
                .ok()
                .filter(|s| (1..=token::MAX_TTL.as_secs()).contains(s))
                .ok_or_else(|| {
                    ApiError::new(StatusCode::BAD_REQUEST, "ttl_secs must be 1 to 604800")
                })?;
            ttl = Duration::from_secs(secs);
        }
    }
    let expires = SystemTime::now() + ttl;
    let token = hls
        .signer
        .sign(&subject(relay.user(), &relay.id().to_string()), expires);
    let place = match relay.user() {
        Some(user) => format!("{}/{user}", relay.app()),
        None => relay.id().to_string(),
    };
    Ok(axum::Json(HlsToken {
        url: format!("/hls/{place}/index.m3u8?token={token}"),
        token,
        expires_at: humantime::format_rfc3339_seconds(expires).to_string(),
    }))
}
