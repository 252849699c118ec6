//! The chunked push, for clients that cannot hold one request open (a phone
//! app in the background, a mini-program that records audio in pieces): a
//! session (`POST /ingest/{app}/{name}/session` → its id) and numbered chunks
//! (`PUT .../session/{id}/{seq}`, each a small file ffmpeg reads: WAV, MP3, AAC,
//! Ogg..., sent as is or base64), ended by `DELETE .../session/{id}` or by
//! silence.
//!
//! Each chunk is decoded to PCM as it comes; [`Reorder`] puts the chunks in
//! order within a window, and a chunk missing when a later one is waiting
//! becomes one chunk of silence after one chunk's time, so the stream goes on
//! without a hole. The PCM goes, in real time, into one ffmpeg that encodes it
//! to AAC in FLV for the stream. Audio only: destinations that need video get
//! what the stream has.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::io::StreamReader;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::reorder::{ChunkError, Reorder, Step};
use super::{HttpState, IngestContext, refused, stream_name};
use crate::http::api::ApiError;
use crate::server::admission::{self, Admitted};
use crate::server::feed::{self, Container, Fed};

/// The PCM every chunk is decoded to, and the encoder reads.
const PCM_RATE: u32 = 48_000;
/// Bytes of PCM per millisecond: 16-bit stereo.
const PCM_BYTES_PER_MS: usize = PCM_RATE as usize / 1000 * 4;
/// The longest a decoded chunk may be (and the `chunk_ms` bounds).
const MAX_CHUNK_MS: u64 = 10_000;
const MIN_CHUNK_MS: u64 = 100;
/// The largest chunk body accepted (before decoding).
pub const MAX_CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// Chunks of one session decoded at once (each by a short ffmpeg): a client
/// sending faster than real time gets 429 beyond it rather than making prism
/// run an ffmpeg per request it holds open.
pub const DECODES_PER_SESSION: usize = 2;

/// One chunked push.
#[derive(Debug)]
pub struct Session {
    app: String,
    name: String,
    chunk: Duration,
    order: Mutex<Reorder>,
    /// Woken when a chunk comes or the session is ended.
    wake: Notify,
    last_chunk: Mutex<Instant>,
    /// Bounds the chunks decoded at once ([`DECODES_PER_SESSION`]).
    decoding: tokio::sync::Semaphore,
}

impl Session {
    fn order(&self) -> std::sync::MutexGuard<'_, Reorder> {
        self.order.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the session may go without a chunk: five chunks' time, and at
    /// least ten seconds.
    fn timeout(&self) -> Duration {
        (self.chunk * 5).max(Duration::from_secs(10))
    }
}

/// What opening a session answers.
#[derive(Debug, serde::Serialize)]
pub struct SessionJson {
    /// The session's id: the capability to send its chunks (keep it secret).
    pub session: String,
    /// Where its chunks go: `PUT {chunks}/{seq}`, from 0.
    pub chunks: String,
    /// Each chunk's length (ms): a missing one becomes this much silence.
    pub chunk_ms: u64,
}

/// `POST /ingest/{app}/{name}/session[?chunk_ms=N&destinations...]`: admits
/// the stream (as a push or an RTMP publish is) and opens a session for its
/// chunks; 201.
pub async fn open(
    State(state): State<Arc<HttpState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((app, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<SessionJson>), ApiError> {
    let ingest = super::ingest_context(&state)?;
    let (chunk_ms, query) = split_chunk_ms(query.as_deref().unwrap_or_default())?;
    let mut stream = stream_name(&state, &app, &name, Some(&query), &headers)?;
    let kick = CancellationToken::new();
    let span = tracing::info_span!("http_ingest", peer = %peer);
    let admitted = admission::admit(&ingest.inputs, &mut stream, peer, &kick, &ingest.shutdown)
        .instrument(span.clone())
        .await
        .map_err(|refusal| {
            span.in_scope(
                || tracing::warn!(stream = %stream.masked(), "publish refused: {refusal}"),
            );
            refused(&refusal)
        })?;
    let mut id = [0u8; 16];
    rand::fill(&mut id[..]);
    let id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let chunk = Duration::from_millis(chunk_ms);
    let session = Arc::new(Session {
        app: app.clone(),
        name: name.clone(),
        chunk,
        order: Mutex::new(Reorder::new(chunk)),
        wake: Notify::new(),
        last_chunk: Mutex::new(Instant::now()),
        decoding: tokio::sync::Semaphore::new(DECODES_PER_SESSION),
    });
    ingest.sessions.insert(id.clone(), Arc::clone(&session));
    let task = run(Arc::clone(&ingest), id.clone(), session, admitted, kick);
    ingest.tracker.spawn(task.instrument(span));
    Ok((
        StatusCode::CREATED,
        Json(SessionJson {
            chunks: format!("/ingest/{app}/{name}/session/{id}"),
            session: id,
            chunk_ms,
        }),
    ))
}

/// Takes `chunk_ms` out of a session's query (the rest names destinations).
fn split_chunk_ms(query: &str) -> Result<(u64, String), ApiError> {
    let mut chunk_ms = 1_000;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == "chunk_ms" {
            chunk_ms = value
                .parse()
                .ok()
                .filter(|ms| (MIN_CHUNK_MS..=MAX_CHUNK_MS).contains(ms))
                .ok_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("chunk_ms is {MIN_CHUNK_MS} to {MAX_CHUNK_MS}"),
                    )
                })?;
        } else {
            rest.append_pair(&key, &value);
        }
    }
    Ok((chunk_ms, rest.finish()))
}

/// `PUT /ingest/{app}/{name}/session/{id}/{seq}`: one chunk, binary, or base64
/// with `?encoding=base64` or a `text/plain` body. 204; 409 a chunk too late,
/// twice or too far ahead; 410 an ended session; 422 one ffmpeg cannot read.
pub async fn put_chunk(
    State(state): State<Arc<HttpState>>,
    Path((app, name, id, seq)): Path<(String, String, String, u64)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let ingest = super::ingest_context(&state)?;
    let session = find(&ingest, &app, &name, &id)?;
    let base64 = query.as_deref() == Some("encoding=base64")
        || headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/plain"));
    let body = if base64 {
        use base64::Engine;
        let text: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad base64: {e}")))?,
        )
    } else {
        body
    };
    let refused = |err: ChunkError| {
        let status = match err {
            ChunkError::Ended => StatusCode::GONE,
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, err.to_string())
    };
    session.order().admits(seq).map_err(refused)?;
    let Ok(_decoding) = session.decoding.try_acquire() else {
        return Err(ApiError::too_many(
            format!(
                "{DECODES_PER_SESSION} chunks of this session are being decoded; send the next when one is done"
            ),
            1,
        ));
    };
    let pcm = decode(&ingest.ffmpeg, body)
        .await
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    session.order().offer(seq, pcm).map_err(refused)?;
    *session.last_chunk.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    session.wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /ingest/{app}/{name}/session/{id}`: what came is sent (holes
/// filled), then the stream ends; 204.
pub async fn end(
    State(state): State<Arc<HttpState>>,
    Path((app, name, id)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let ingest = super::ingest_context(&state)?;
    let session = find(&ingest, &app, &name, &id)?;
    session.order().close();
    session.wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

fn find(ingest: &IngestContext, app: &str, name: &str, id: &str) -> Result<Arc<Session>, ApiError> {
    ingest
        .sessions
        .get(id)
        .map(|s| Arc::clone(s.value()))
        .filter(|s| s.app == app && s.name == name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such session"))
}

/// A chunk as PCM: `-f s16le` at [`PCM_RATE`], stereo, at most
/// [`MAX_CHUNK_MS`] of it.
async fn decode(ffmpeg: &str, chunk: Bytes) -> Result<Bytes, String> {
    let mut command = tokio::process::Command::new(ffmpeg);
    command
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            "pipe:0",
        ])
        .args([
            "-vn",
            "-f",
            "s16le",
            "-ar",
            &PCM_RATE.to_string(),
            "-ac",
            "2",
            "pipe:1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    crate::transcode::child::die_with_prism(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start {ffmpeg}: {e}"))?;
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("no pipes".into());
    };
    let write = async move {
        let _ = stdin.write_all(&chunk).await;
    };
    let limit = (MAX_CHUNK_MS as usize * PCM_BYTES_PER_MS) as u64;
    let mut pcm = Vec::new();
    let mut output = stdout.take(limit);
    let read = output.read_to_end(&mut pcm);
    let work = async { tokio::join!(write, read).1 };
    let read = tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| "decoding the chunk took over 10 s".to_owned())?;
    read.map_err(|e| e.to_string())?;
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if !status.success() || pcm.is_empty() {
        return Err("ffmpeg could not read the chunk as audio".into());
    }
    // Whole samples only.
    pcm.truncate(pcm.len() / 4 * 4);
    Ok(Bytes::from(pcm))
}

/// The session's life: its chunks, in order and in real time, through the
/// encoder into the stream; then the stream's end (the client ended it) or a
/// dropped publisher (it went silent).
async fn run(
    ingest: Arc<IngestContext>,
    id: String,
    session: Arc<Session>,
    admitted: Admitted,
    kick: CancellationToken,
) {
    let stop = feed::stop_token(&kick, &ingest.shutdown);
    let _linked = stop.clone().drop_guard();
    let silence = Bytes::from(vec![
        0u8;
        session.chunk.as_millis() as usize * PCM_BYTES_PER_MS
    ]);
    let pcm = futures_util::stream::unfold(Arc::clone(&session), move |session| {
        let silence = silence.clone();
        async move {
            let next = next_pcm(&session, &silence).await?;
            Some((next, session))
        }
    });
    let mut fed = Fed::default();
    let result = feed::feed_through_ffmpeg(
        StreamReader::new(Box::pin(pcm)),
        Container::Pcm {
            rate: PCM_RATE,
            channels: 2,
        },
        &ingest.ffmpeg,
        &admitted.publisher,
        session.timeout(),
        &stop,
        &mut fed,
    )
    .await;
    ingest.sessions.remove(&id);
    match &result {
        Ok(()) => tracing::info!(bytes = fed.bytes, "the chunked push ended: unpublished"),
        Err(err) => tracing::warn!("chunked push ended: {err}"),
    }
    admitted.finish(result.is_err(), &ingest.inputs, &kick, &ingest.shutdown);
}

/// The next PCM to encode: a chunk, silence for a chunk given up on, or the
/// end (`None`); an error once the session went silent too long.
async fn next_pcm(session: &Session, silence: &Bytes) -> Option<std::io::Result<Bytes>> {
    loop {
        let step = session.order().step(Instant::now());
        let wait = match step {
            Step::Chunk(pcm) => return Some(Ok(pcm)),
            Step::Silence => return Some(Ok(silence.clone())),
            Step::End => return None,
            Step::Wait(until) => until,
        };
        let last = *session.last_chunk.lock().unwrap_or_else(|p| p.into_inner());
        let timeout_at = last + session.timeout();
        if Instant::now() >= timeout_at && !session.order().is_closing() {
            return Some(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no chunk for {:?}", session.timeout()),
            )));
        }
        let until = wait.map_or(timeout_at, |w| w.min(timeout_at));
        tokio::select! {
            () = session.wake.notified() => {}
            () = tokio::time::sleep_until(until.into()) => {}
        }
    }
}
