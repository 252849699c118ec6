//! One destination's life: connect, publish, forward the stream, and on failure
//! reconnect with backoff, for as long as the stream is live.
//!
//! Each attempt subscribes to the hub before connecting, so the new connection
//! starts with the metadata, the sequence headers and the GOP cache from a keyframe,
//! and whatever arrives while it connects waits in its bounded queue. Timestamps are
//! rebased per connection to start at 0. A slow ingest fills only its own queue.
//!
//! This file is the retry loop ([`run`]); one attempt is [`connect`] (TCP, TLS and
//! the publish setup), then the [`forwarder`] (the live phase) over a [`shared_ingest`] the
//! publisher's task can write to directly. A destination that needs video first
//! learns whether the stream has any ([`picture`]).

mod connect;
mod forwarder;
mod picture;
mod shared_ingest;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::RelayContext;
use super::destination::DestinationSpec;
use super::status::{DestinationStatus, State};
use super::tls::TlsError;
use crate::backoff::Backoff;
use crate::hub::{Hub, SubscriberKind};
use crate::mask::Masked;
use crate::rtmp::client::{ClientError, ClientEvent};
use crate::transcode::AudioOnlyVideo;
use crate::transcode::shared::EncoderLease;
use crate::transport::WriteError;

/// How often a re-encoded destination checks whether its encoder has output yet
/// (and one that needs video, whether the stream has any).
const ENCODER_POLL: Duration = Duration::from_millis(100);

/// Quick closes in a row after which the destination is treated as refused (its
/// retries slow down to `relay.failed_retry_secs`).
const QUICK_CLOSES_REFUSED: u32 = 3;
/// What a close before the publish was accepted is reported as.
pub const CLOSED_AFTER_PUBLISH: &str =
    "closed by the ingest right after publish: check the URL and stream key";

/// Why one connection attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// TLS failed (certificate, SNI...).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The ingest refused or broke the session (its handshake among it), or did not
    /// accept the publish in time.
    #[error(transparent)]
    Session(#[from] ClientError),
    /// The TCP connect or the TLS handshake took longer than the whole setup may.
    #[error("not publishing after {0:?}")]
    Timeout(Duration),
    /// The ingest stopped reading.
    #[error("ingest did not read for {0:?}")]
    Stalled(Duration),
    /// The ingest closed the connection.
    #[error("connection closed by the ingest")]
    Closed,
    /// The socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// A write under the stall deadline: a stall is the ingest's fault, named as such.
impl From<WriteError> for PushError {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Stalled(limit) => PushError::Stalled(limit),
            WriteError::Io(error) => PushError::Io(error),
        }
    }
}

impl PushError {
    /// Whether retrying soon is pointless (the ingest refused the key or app).
    pub fn is_permanent(&self) -> bool {
        match self {
            PushError::Session(e) => e.is_permanent(),
            _ => false,
        }
    }
}

/// How an attempt ended without error.
enum Ended {
    /// The publisher stopped; the ingest got a clean unpublish.
    StreamEnded,
    /// prism is stopping or the destination was removed; clean unpublish sent.
    Stopped,
}

/// Runs one destination until the stream ends or `stop` is cancelled.
///
/// `stop` (prism shuts down, the destination is removed) ends a live connection at
/// once with a clean unpublish. `ended` (the publisher left) only cuts short a
/// connect or a backoff wait: a live connection first forwards what is still queued,
/// then unpublishes when the hub closes its queue.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    ctx: Arc<RelayContext>,
    app: String,
    name: String,
    spec: DestinationSpec,
    encoder: Option<EncoderLease>,
    picture: Option<AudioOnlyVideo>,
    status: Arc<DestinationStatus>,
    stop: CancellationToken,
    ended: CancellationToken,
) {
    // A destination that needs video sends an audio-only stream with a
    // generated picture.
    let encoder = match (encoder, picture) {
        (None, Some(picture)) => {
            match picture::choose(&ctx, (&app, &name), &picture, &status, &stop, &ended).await {
                picture::Source::Stream => None,
                picture::Source::Picture(lease) => Some(lease),
                picture::Source::Ended => {
                    status.set_state(State::Stopped);
                    return;
                }
            }
        }
        (encoder, _) => encoder,
    };
    // A re-encoded destination publishes its encoder's output, not the source;
    // it holds its lease on the encoder until it ends.
    let (hub, source_app, source_name) = match &encoder {
        Some(EncoderLease { output, .. }) => (
            &ctx.encoders.output_hub,
            output.app.clone(),
            output.name.clone(),
        ),
        None => (&ctx.hub, app.clone(), name.clone()),
    };
    let mut backoff = Backoff::new(ctx.backoff);
    let mut first = true;
    let mut quick_closes = 0;
    loop {
        if stop.is_cancelled() || ended.is_cancelled() {
            break;
        }
        if encoder.is_some() {
            if !wait_for_encoder(
                &ctx,
                hub,
                (&app, &name),
                (&source_app, &source_name),
                &status,
                &stop,
                &ended,
            )
            .await
            {
                break;
            }
        } else if !hub.is_live(&app, &name) {
            break;
        }
        if !first {
            status.count_reconnect();
        }
        first = false;
        status.set_state(State::Connecting);
        let subscriber = match hub.subscribe_as(&source_app, &source_name, SubscriberKind::Relay) {
            Ok(subscriber) => subscriber,
            Err(err) => {
                tracing::warn!("cannot subscribe: {err}");
                break;
            }
        };
        status.attach_queue(subscriber.queue());
        let out_before = status.bytes_out();
        let result = connect::attempt(&ctx, &spec, &subscriber, &status, &stop, &ended).await;
        status.end_connection_drops();
        drop(subscriber);
        let error = match result {
            Ok(Ended::StreamEnded) => {
                tracing::info!("stream ended; unpublished");
                break;
            }
            Ok(Ended::Stopped) => break,
            Err(error) => error,
        };
        // A close after the handshake, before the publish was accepted, is a
        // refusal: nginx-rtmp does that when its `on_publish` check fails, and
        // many platforms for a wrong key or app, rather than answer with an error
        // status. (A connection that was live and then closed, however soon, is a
        // drop: an ingest restarting looks the same.)
        let quick_close = matches!(error, PushError::Closed | PushError::Io(_))
            && status.bytes_out() > out_before
            && status.live_for().is_none();
        quick_closes = if quick_close { quick_closes + 1 } else { 0 };
        let message = if quick_close {
            CLOSED_AFTER_PUBLISH.to_owned()
        } else {
            mask_error(&error.to_string(), &spec.target.stream_name)
        };
        status.record_failure(message.clone());
        if status
            .live_for()
            .is_some_and(|up| up >= ctx.backoff_reset_after)
        {
            backoff.reset();
        }
        let (state, delay) = if error.is_permanent() || quick_closes >= QUICK_CLOSES_REFUSED {
            (State::Failed, ctx.failed_retry)
        } else {
            (State::Backoff, backoff.next_delay())
        };
        tracing::warn!(retry_in = ?delay, "destination {}: {message}", state_word(state));
        status.set_state(state);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => break,
            () = ended.cancelled() => break,
        }
    }
    drop(encoder);
    status.set_state(State::Stopped);
}

/// Waits until the encoder publishes output, so that the ingest connection is not
/// opened (and left idle) before there is something to send. False when the
/// stream ended or the destination stops meanwhile.
async fn wait_for_encoder(
    ctx: &RelayContext,
    output_hub: &Hub,
    (app, name): (&str, &str),
    (out_app, out_name): (&str, &str),
    status: &DestinationStatus,
    stop: &CancellationToken,
    ended: &CancellationToken,
) -> bool {
    loop {
        if output_hub.is_live(out_app, out_name) {
            return true;
        }
        if !ctx.hub.is_live(app, name) {
            return false;
        }
        // An encoder that cannot start at all (no ffmpeg) fails the destination.
        let cannot_start = status.encoder().is_some_and(|e| e.cannot_start());
        status.set_state(if cannot_start {
            State::Failed
        } else {
            State::WaitingForEncoder
        });
        tokio::select! {
            () = tokio::time::sleep(ENCODER_POLL) => {}
            () = stop.cancelled() => return false,
            () = ended.cancelled() => return false,
        }
    }
}

fn state_word(state: State) -> &'static str {
    match state {
        State::Failed => "refused",
        _ => "failed",
    }
}

/// Replaces every occurrence of the key (with and without its query) by its mask:
/// ingests echo stream names in their error descriptions.
pub fn mask_error(message: &str, stream_name: &str) -> String {
    let mut masked = message.to_owned();
    let bare = stream_name.split('?').next().unwrap_or(stream_name);
    for secret in [stream_name, bare] {
        if !secret.is_empty() {
            masked = masked.replace(secret, &Masked(secret).to_string());
        }
    }
    masked
}

fn log_event(event: &ClientEvent) {
    match event {
        ClientEvent::Status { level, code, .. } => tracing::info!(%level, %code, "ingest status"),
        other => tracing::debug!(?other, "ingest event"),
    }
}
