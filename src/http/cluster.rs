//! One view of the cluster from any node: `GET /api/v1/streams` lists every node's
//! streams (each with its `node`), and a per-stream request (the API's, and
//! `/hls/`) for a stream that lives on another node is forwarded there, with the
//! caller's credentials, and answered with that node's answer. `/metrics` stays
//! per node.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::access::{self, Access};
use super::api::{self, ApiError};
use super::{HttpState, MAX_BODY_BYTES};
use crate::cluster::{Cluster, NodeInfo};

/// Marks a request one node sent another: answered by that node alone, never
/// forwarded again (no loops, no fan-out of fan-outs).
pub const FORWARDED: HeaderName = HeaderName::from_static("x-prism-forwarded");

/// How long a node waits for another's stream list: a node that does not answer
/// in time is listed as unreachable rather than holding up the whole list.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a forwarded request may take: as long as one to this node may
/// (`http.request_timeout_secs`' default), since an LL-HLS playlist request
/// waits for its part.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

/// A client for the other nodes, made once.
fn client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default()
    })
}

/// `GET /api/v1/streams`: this node's streams; in a cluster every node's, each
/// with its `node`, unless `?scope=node` (or the request came from another node).
pub async fn list_streams(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let access = access::authorize(&state, &headers, false)?;
    let whole_cluster = query.scope.as_deref() != Some("node") && !headers.contains_key(FORWARDED);
    match &state.cluster {
        Some(cluster) if whole_cluster => Ok(streams(&state, cluster, &headers, &access).await),
        _ => Ok(Json(api::stream_list(&state, &access)).into_response()),
    }
}

/// `GET /api/v1/streams`' query.
#[derive(Debug, serde::Deserialize)]
pub struct ListQuery {
    /// `node`: this node's streams only.
    scope: Option<String>,
}

/// The whole cluster's list: this node's streams and every other node's (asked
/// with the caller's credentials), each with its `node`; nodes that did not
/// answer are listed in `unreachable_nodes`.
async fn streams(
    state: &HttpState,
    cluster: &Cluster,
    headers: &HeaderMap,
    access: &Access,
) -> Response {
    let mut streams: Vec<serde_json::Value> = api::stream_list(state, access)
        .streams
        .into_iter()
        .filter_map(|stream| serde_json::to_value(stream).ok())
        .collect();
    let me = &cluster.node().node_id;
    let nodes = match cluster.nodes().await {
        Ok(nodes) => nodes,
        Err(err) => {
            let body = serde_json::json!({
                "streams": streams,
                "unreachable_nodes": [],
                "registry_error": err.to_string(),
            });
            return Json(body).into_response();
        }
    };
    let others: Vec<&NodeInfo> = nodes.iter().filter(|node| &node.node_id != me).collect();
    let asks = others.iter().map(|node| async move {
        let url = format!("http://{}/api/v1/streams?scope=node", node.http);
        let request = client().get(url).timeout(LIST_TIMEOUT);
        let answer = with_credentials(request, headers).send().await;
        let list = match answer {
            Ok(response) if response.status().is_success() => {
                response.json::<serde_json::Value>().await.ok()
            }
            _ => None,
        };
        (node.node_id.clone(), list)
    });
    let mut unreachable = Vec::new();
    for (node_id, list) in futures_util::future::join_all(asks).await {
        match list.and_then(|mut list| list.get_mut("streams").map(serde_json::Value::take)) {
            Some(serde_json::Value::Array(theirs)) => streams.extend(theirs),
            _ => unreachable.push(node_id),
        }
    }
    let key = |s: &serde_json::Value| {
        ["app", "name", "id"].map(|k| s.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned())
    };
    streams.sort_by_key(key);
    Json(serde_json::json!({ "streams": streams, "unreachable_nodes": unreachable }))
        .into_response()
}

/// The caller's `Authorization`, passed on: every node checks it itself.
fn with_credentials(
    request: reqwest::RequestBuilder,
    headers: &HeaderMap,
) -> reqwest::RequestBuilder {
    let request = request.header(FORWARDED, "1");
    match headers.get(header::AUTHORIZATION) {
        Some(value) => request.header(header::AUTHORIZATION, value),
        None => request,
    }
}

/// Middleware on the per-stream routes: a request for a stream this node does not
/// have, which the registry places on another node, is forwarded there.
pub async fn forward_if_elsewhere(
    State(state): State<Arc<HttpState>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(cluster) = state.cluster.as_ref() else {
        return next.run(request).await;
    };
    if request.headers().contains_key(FORWARDED) {
        return next.run(request).await;
    }
    let Some(owner) = owner(&state, cluster, request.uri().path()).await else {
        return next.run(request).await;
    };
    forward(owner, request).await
}

/// The other node holding the stream a per-stream path names, if any.
async fn owner(state: &HttpState, cluster: &Cluster, path: &str) -> Option<NodeInfo> {
    if let Some(rest) = path.strip_prefix("/hls/") {
        return hls_owner(state, cluster, rest).await;
    }
    let rest = path.strip_prefix("/api/v1/streams/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    let by_id = segments.len() == 1 || matches!(segments[1], "destinations" | "hls_token");
    if by_id {
        let id = segments[0];
        if state.relay.find_by_id(id).is_ok() {
            return None;
        }
        cluster.locate_id(id).await
    } else {
        let (app, name) = (segments[0], segments[1]);
        if state.relay.find(app, name).is_ok() {
            return None;
        }
        cluster.locate(app, name, false).await
    }
}

/// The other node holding the stream an `/hls/` path names (by id, or by app and
/// user), if any. A stream that just ended here keeps its last files here.
async fn hls_owner(state: &HttpState, cluster: &Cluster, path: &str) -> Option<NodeInfo> {
    use crate::hls::path::{self, StreamRef};
    let (stream, _) = path::parse(path)?;
    let ended_here = |id: Option<&str>, user: Option<(&str, &str)>| {
        state
            .hls
            .as_ref()
            .is_some_and(|hls| hls.ended(id, user).is_some())
    };
    match stream {
        StreamRef::Id(id) => {
            if state.relay.find_by_id(&id).is_ok() || ended_here(Some(&id), None) {
                return None;
            }
            cluster.locate_id(&id).await
        }
        StreamRef::User { app, user } => {
            let here = state.relay.find_of_user(&app, &user, &user).is_ok();
            if here || ended_here(None, Some((&app, &user))) {
                return None;
            }
            cluster.locate(&app, &user, false).await
        }
    }
}

/// Sends `request` to `node` as it came (method, path, query, body, credentials)
/// and answers with the node's answer.
async fn forward(node: NodeInfo, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            .into_response();
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{}{path}", node.http);
    let request = client()
        .request(parts.method.clone(), url)
        .timeout(FORWARD_TIMEOUT);
    let mut outgoing = with_credentials(request, &parts.headers);
    if let Some(kind) = parts.headers.get(header::CONTENT_TYPE) {
        outgoing = outgoing.header(header::CONTENT_TYPE, kind);
    }
    let answer = match outgoing.body(body).send().await {
        Ok(answer) => answer,
        Err(err) => {
            let message = format!(
                "the stream lives on node {}, which did not answer: {err}",
                node.node_id
            );
            return ApiError::new(StatusCode::BAD_GATEWAY, message).into_response();
        }
    };
    let status = answer.status();
    // What a player or a script acts on; CORS is this node's own (its layer).
    let kept: Vec<(HeaderName, HeaderValue)> = [
        header::CONTENT_TYPE,
        header::CACHE_CONTROL,
        header::WWW_AUTHENTICATE,
    ]
    .into_iter()
    .filter_map(|name| {
        let value = answer.headers().get(&name)?.clone();
        Some((name, value))
    })
    .collect();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().extend(kept);
    if let Ok(value) = HeaderValue::from_str(&node.node_id) {
        response.headers_mut().insert("x-prism-node", value);
    }
    response
}
