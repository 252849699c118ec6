//! A stream's encoder: one ffmpeg child, fed the stream as FLV from the hub,
//! with one output per profile (one decode, one encode per profile, their
//! keyframes forced at the same times), each published into the relay's private
//! transcode hub, where the destinations on that profile (and the HLS ladder's
//! rungs) subscribe like to any stream.
//!
//! ffmpeg never touches the network: RTMPS, reconnects, status and key masking stay
//! prism's. The encoder outlives destination reconnects. It is restarted with
//! backoff when it exits or stops producing output, every output keeping its
//! stream (its publisher) across restarts. An encoder whose runs keep failing
//! soon after they start splits: each profile goes on in a process of its own,
//! so that one profile ffmpeg cannot run (a custom profile's bad arguments)
//! takes down only the destinations on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::unix::pipe;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::child::{self, EncoderError};
use super::status::EncoderStatus;
use crate::backoff::{Backoff, BackoffPolicy};
use crate::hub::{Hub, Publisher, Subscriber, SubscriberKind};
use crate::rate::RateMeter;
use crate::stream_name::StreamName;

/// Failed runs in a row, each shorter than [`SHORT_RUN`], after which an
/// encoder of several profiles splits into one process per profile.
const SPLIT_AFTER: u32 = 2;
/// A run that failed sooner than this after it started counts towards a split.
const SHORT_RUN: Duration = Duration::from_secs(30);

/// What every encoder shares.
#[derive(Debug)]
pub struct EncoderContext {
    /// Where the source streams are.
    pub hub: Arc<Hub>,
    /// Where encoder outputs are published (not reachable by players).
    pub output_hub: Arc<Hub>,
    /// The ffmpeg binary.
    pub ffmpeg: String,
    /// Limits concurrent encoders.
    pub slots: Arc<Semaphore>,
    /// The number of slots.
    pub max_encoders: usize,
    /// No output for this long means ffmpeg hangs.
    pub stall_timeout: Duration,
    /// Restart delays.
    pub restart_backoff: BackoffPolicy,
    /// Numbers the encoders' outputs (see [`EncoderContext::output_name`]).
    pub outputs: AtomicU64,
}

impl EncoderContext {
    /// A fresh identity in the transcode hub for one encoder of `app/name` with
    /// `profile`: unique per call, never reused. When an encoder stops (its last
    /// destination left) while a new one for the same profile starts, the old
    /// one's output is still ending, and under a shared name the new encoder's
    /// destinations would subscribe to it and end with it ("stream ended")
    /// instead of waiting for their own.
    pub fn output_name(&self, app: &str, name: &str, profile: &str) -> StreamName {
        let serial = self.outputs.fetch_add(1, Ordering::Relaxed);
        StreamName {
            app: app.to_owned(),
            name: format!("{name}#{profile}#{serial}"),
            query: String::new(),
        }
    }
}

/// One output of an encoder: a profile's encode and the stream it is published
/// as. It keeps its publisher across the encoder's restarts (and a split), so
/// its destinations follow one stream throughout.
#[derive(Debug)]
pub struct Output {
    /// The profile's name, for the log.
    pub profile: String,
    /// The profile's ffmpeg output arguments.
    pub args: Vec<String>,
    /// Where it is published in the output hub.
    pub name: StreamName,
    /// Its status, which its destinations show.
    pub status: Arc<EncoderStatus>,
    /// ffmpeg input options read beside the stream (a generated picture's):
    /// every output of one process has the same.
    pub inputs: Vec<String>,
    publisher: Option<Publisher>,
}

impl Output {
    /// Profile `profile`'s output, published as `name` once ffmpeg produced some.
    pub fn new(
        profile: String,
        args: Vec<String>,
        name: StreamName,
        status: Arc<EncoderStatus>,
    ) -> Self {
        Self {
            profile,
            args,
            name,
            status,
            inputs: Vec::new(),
            publisher: None,
        }
    }

    /// The same output, its process reading `inputs` beside the stream.
    pub fn with_inputs(mut self, inputs: Vec<String>) -> Self {
        self.inputs = inputs;
        self
    }
}

/// How a run ended without error.
enum RunEnd {
    /// The source stream ended and ffmpeg flushed everything.
    InputEnded,
    /// prism stops or the encoder's last user left.
    Stopped,
}

/// Runs the encoder of `source` with `outputs` until the source ends or `stop`.
pub async fn run(
    ctx: Arc<EncoderContext>,
    source: StreamName,
    outputs: Vec<Output>,
    stop: CancellationToken,
) {
    let Some(outputs) = supervise(&ctx, &source, outputs, &stop, true).await else {
        return;
    };
    let profiles = profile_names(&outputs);
    tracing::warn!(
        %profiles,
        "encoder keeps failing; each profile goes on in a process of its own"
    );
    let singles = outputs
        .into_iter()
        .map(|output| supervise(&ctx, &source, vec![output], &stop, false));
    futures_util::future::join_all(singles).await;
}

/// Runs and restarts one ffmpeg with `outputs`; gives them back, to be split,
/// when `may_split` and its runs keep failing early.
async fn supervise(
    ctx: &EncoderContext,
    source: &StreamName,
    mut outputs: Vec<Output>,
    stop: &CancellationToken,
    may_split: bool,
) -> Option<Vec<Output>> {
    let mut backoff = Backoff::new(ctx.restart_backoff);
    let mut runs = 0u64;
    let mut early_failures = 0;
    loop {
        if stop.is_cancelled() || !ctx.hub.is_live(&source.app, &source.name) {
            break;
        }
        let permit = tokio::select! {
            permit = Arc::clone(&ctx.slots).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let subscriber =
            match ctx
                .hub
                .subscribe_as(&source.app, &source.name, SubscriberKind::Relay)
            {
                Ok(subscriber) => subscriber,
                Err(err) => {
                    tracing::warn!("encoder cannot subscribe: {err}");
                    break;
                }
            };
        if runs > 0 {
            for output in &outputs {
                output.status.update(|e| e.restarts += 1);
            }
        }
        runs += 1;
        let started = Instant::now();
        let result = run_once(ctx, &subscriber, &mut outputs, stop).await;
        drop(permit);
        for output in &outputs {
            output.status.update(|e| e.pid = None);
        }
        let err = match result {
            Ok(RunEnd::InputEnded) => {
                tracing::info!("encoder finished: its input ended");
                break;
            }
            Ok(RunEnd::Stopped) => break,
            Err(err) => err,
        };
        let delay = backoff.next_delay();
        tracing::warn!(retry_in = ?delay, "encoder failed: {err}");
        for output in &outputs {
            // Nothing to send until ffmpeg can run: its destinations failed.
            let cannot_start =
                matches!(err, EncoderError::Spawn { .. }) && output.publisher.is_none();
            output
                .status
                .record_failure(format!("encoder: {err}"), cannot_start);
        }
        early_failures = if started.elapsed() < SHORT_RUN {
            early_failures + 1
        } else {
            0
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => break,
        }
        if may_split && outputs.len() > 1 && early_failures >= SPLIT_AFTER {
            return Some(outputs);
        }
    }
    // Dropping the publishers ends the output streams: the destinations drain
    // them and unpublish cleanly.
    None
}

fn profile_names(outputs: &[Output]) -> String {
    outputs
        .iter()
        .map(|o| o.profile.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

async fn run_once(
    ctx: &EncoderContext,
    subscriber: &Subscriber,
    outputs: &mut [Output],
    stop: &CancellationToken,
) -> Result<RunEnd, EncoderError> {
    let args: Vec<&[String]> = outputs.iter().map(|o| o.args.as_slice()).collect();
    let inputs = outputs.first().map_or(&[][..], |o| o.inputs.as_slice());
    let child::Running {
        mut process,
        stdin,
        stderr,
        outputs: pipes,
    } = child::spawn(&ctx.ffmpeg, inputs, &args)?;
    let pid = process.id();
    let statuses: Vec<Arc<EncoderStatus>> = outputs.iter().map(|o| Arc::clone(&o.status)).collect();
    for status in &statuses {
        status.started(pid);
    }
    tracing::info!(?pid, profiles = %profile_names(outputs), "encoder started: {}", ctx.ffmpeg);
    let progress = child::watch_stderr(stderr, &statuses);
    let feed = child::feed(stdin, subscriber);
    let pumps = futures_util::future::try_join_all(
        pipes
            .into_iter()
            .zip(outputs.iter_mut())
            .map(|(pipe, output)| pump(pipe, &ctx.output_hub, output, ctx.stall_timeout)),
    );
    tokio::pin!(progress, feed, pumps);
    let mut input_ended = false;
    let end = loop {
        tokio::select! {
            fed = &mut feed, if !input_ended => match fed {
                // stdin is closed: ffmpeg flushes its outputs and exits.
                Ok(()) => input_ended = true,
                Err(err) => break Err(err),
            },
            pumped = &mut pumps => break match pumped {
                Ok(_) if input_ended => Ok(RunEnd::InputEnded),
                Ok(_) => Err(child::exit_reason(&mut process).await),
                Err(err) => Err(err),
            },
            () = &mut progress => {}
            () = stop.cancelled() => break Ok(RunEnd::Stopped),
        }
    };
    child::finish(&mut process, matches!(end, Ok(RunEnd::InputEnded))).await;
    end
}

/// Reads one output's FLV and publishes it, measuring its bit rate for the
/// status. Returns at EOF.
async fn pump(
    pipe: pipe::Receiver,
    output_hub: &Arc<Hub>,
    output: &mut Output,
    stall_timeout: Duration,
) -> Result<(), EncoderError> {
    let Output {
        name,
        status,
        publisher,
        ..
    } = output;
    let mut meter = RateMeter::new(Instant::now());
    let mut reported = Instant::now();
    child::read_flv(pipe, stall_timeout, |tag| {
        let now = Instant::now();
        let Some(tag) = tag else {
            if let Some(publisher) = &publisher {
                publisher.flush();
            }
            if now.duration_since(reported) >= crate::rate::WINDOW {
                reported = now;
                let kbps = meter.bits_per_second(now) as f64 / 1000.0;
                status.update(|e| e.bitrate_kbps = Some(kbps));
            }
            return Ok(());
        };
        meter.add(tag.data.len() as u64, now);
        let publisher = match publisher {
            Some(publisher) => publisher,
            None => match output_hub.publish(name) {
                Ok(new) => publisher.insert(new),
                Err(err) => {
                    return Err(EncoderError::Exited(format!(
                        "cannot publish output: {err}"
                    )));
                }
            },
        };
        publisher.push_flv_tag(tag.tag_type, tag.timestamp, tag.data);
        Ok(())
    })
    .await
}
