//! One re-encoded destination's encoder: an ffmpeg child fed FLV on stdin from the
//! hub, whose FLV output on stdout is published into the relay's private transcode
//! hub, where the destination's push task subscribes like to any stream.
//!
//! ffmpeg never touches the network: RTMPS, reconnects, status and key masking stay
//! prism's. The encoder outlives destination reconnects. It is restarted with
//! backoff when it exits or stops producing output. Children die with prism: they
//! are killed when their task ends, get SIGKILL from the kernel if prism itself is
//! killed (PR_SET_PDEATHSIG), and see EOF on stdin either way.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::status::EncoderStatus;
use crate::backoff::{Backoff, BackoffPolicy};
use crate::flv::{FlvHeader, FlvReader, FlvWriter, TagType};
use crate::hub::{Hub, Packet, Publisher, Subscriber, SubscriberKind};
use crate::rtmp::amf0::{self, Amf0Value};
use crate::stream_name::StreamName;
use crate::timestamp::Rebaser;

/// stderr lines logged per minute per encoder; ffmpeg can print a warning per frame.
const LOG_LINES_PER_MINUTE: u32 = 20;
/// How long ffmpeg gets to flush and exit after its input ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Why one ffmpeg run ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    /// ffmpeg could not be started (missing binary, no permission).
    #[error("cannot start ffmpeg `{ffmpeg}`: {source}")]
    Spawn {
        /// The configured binary.
        ffmpeg: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// ffmpeg exited while its input was still live.
    #[error("ffmpeg exited ({0})")]
    Exited(String),
    /// ffmpeg produced no output for too long.
    #[error("ffmpeg produced no output for {0:?}; restarting it")]
    Stalled(Duration),
    /// ffmpeg's output was not FLV.
    #[error("ffmpeg output is not valid FLV: {0}")]
    Output(crate::flv::FlvError),
    /// A pipe failed.
    #[error("ffmpeg pipe: {0}")]
    Io(#[from] std::io::Error),
}

/// How a run ended without error.
enum RunEnd {
    /// The source stream ended and ffmpeg flushed everything.
    InputEnded,
    /// prism stops or the destination was removed.
    Stopped,
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

/// Runs the encoder of one destination until the source ends or `stop`.
pub async fn run(
    ctx: Arc<EncoderContext>,
    source: StreamName,
    output: StreamName,
    args: Vec<String>,
    status: Arc<EncoderStatus>,
    stop: CancellationToken,
) {
    let mut publisher: Option<Publisher> = None;
    let mut backoff = Backoff::new(ctx.restart_backoff);
    let mut runs = 0u64;
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
            status.update(|e| e.restarts += 1);
        }
        runs += 1;
        let result = run_once(
            &ctx,
            &args,
            &subscriber,
            &output,
            &mut publisher,
            &status,
            &stop,
        )
        .await;
        drop(permit);
        status.update(|e| e.pid = None);
        match result {
            Ok(RunEnd::InputEnded) => {
                tracing::info!("encoder finished: its input ended");
                break;
            }
            Ok(RunEnd::Stopped) => break,
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(retry_in = ?delay, "encoder failed: {err}");
                // Nothing to send until ffmpeg can run: the destination failed.
                let cannot_start = matches!(err, EncoderError::Spawn { .. }) && publisher.is_none();
                status.record_failure(format!("encoder: {err}"), cannot_start);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => break,
                }
            }
        }
    }
    // Dropping the publisher ends the output stream: the destination drains it and
    // unpublishes cleanly.
    drop(publisher);
}

fn spawn(ffmpeg: &str, args: &[String]) -> Result<Child, EncoderError> {
    let mut command = Command::new(ffmpeg);
    command
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "warning",
            "-nostats",
        ])
        .args(["-progress", "pipe:2", "-stats_period", "1"])
        .args(["-f", "flv", "-i", "pipe:0"])
        .args(args)
        .args(["-f", "flv", "-flvflags", "no_duration_filesize", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_prism(&mut command);
    command.spawn().map_err(|source| EncoderError::Spawn {
        ffmpeg: ffmpeg.to_owned(),
        source,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_once(
    ctx: &EncoderContext,
    args: &[String],
    subscriber: &Subscriber,
    output: &StreamName,
    publisher: &mut Option<Publisher>,
    status: &EncoderStatus,
    stop: &CancellationToken,
) -> Result<RunEnd, EncoderError> {
    let mut child = spawn(&ctx.ffmpeg, args)?;
    let pid = child.id();
    status.started(pid);
    tracing::info!(?pid, "encoder started: {} {}", ctx.ffmpeg, args.join(" "));
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(EncoderError::Exited("pipes unavailable".into()));
    };
    let progress = watch_stderr(stderr, status);
    let feed = feed(stdin, subscriber);
    let pump = pump(
        stdout,
        &ctx.output_hub,
        output,
        publisher,
        ctx.stall_timeout,
    );
    tokio::pin!(progress, feed, pump);
    let mut input_ended = false;
    let end = loop {
        tokio::select! {
            fed = &mut feed, if !input_ended => match fed {
                // stdin is closed: ffmpeg flushes its output and exits.
                Ok(()) => input_ended = true,
                Err(err) => break Err(err),
            },
            pumped = &mut pump => break match pumped {
                Ok(()) if input_ended => Ok(RunEnd::InputEnded),
                Ok(()) => Err(exit_reason(&mut child).await),
                Err(err) => Err(err),
            },
            () = &mut progress => {}
            () = stop.cancelled() => break Ok(RunEnd::Stopped),
        }
    };
    finish(&mut child, matches!(end, Ok(RunEnd::InputEnded))).await;
    end
}

/// Reaps an ffmpeg child (an encoder's, the HLS ladder's): a clean end gets time
/// to exit, anything else is killed.
pub async fn finish(child: &mut Child, clean: bool) {
    if clean
        && tokio::time::timeout(DRAIN_TIMEOUT, child.wait())
            .await
            .is_ok()
    {
        return;
    }
    let _ = child.kill().await;
}

async fn exit_reason(child: &mut Child) -> EncoderError {
    match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
        Ok(Ok(status)) => EncoderError::Exited(status.to_string()),
        Ok(Err(err)) => EncoderError::Io(err),
        Err(_) => EncoderError::Exited("closed its output".into()),
    }
}

/// Writes the source stream into ffmpeg as FLV: header, then every packet as a tag
/// with timestamps rebased to start at 0. Returns when the source ends.
pub async fn feed(stdin: ChildStdin, subscriber: &Subscriber) -> Result<(), EncoderError> {
    let mut stdin = BufWriter::with_capacity(256 * 1024, stdin);
    stdin
        .write_all(&FlvWriter::header(&FlvHeader {
            has_audio: true,
            has_video: true,
        }))
        .await?;
    let mut rebaser = Rebaser::new();
    let mut batch = Vec::with_capacity(256);
    while subscriber.recv_batch(&mut batch).await {
        for packet in batch.drain(..) {
            let timestamp = packet.stamp(&mut rebaser);
            write_tag(&mut stdin, &packet, timestamp).await?;
        }
        stdin.flush().await?;
    }
    stdin.shutdown().await?;
    Ok(())
}

async fn write_tag<W: AsyncWrite + Unpin>(
    out: &mut W,
    packet: &Packet,
    timestamp: u32,
) -> Result<(), EncoderError> {
    let (header, trailer) = packet
        .flv_framing(timestamp)
        .map_err(EncoderError::Output)?;
    out.write_all(&header).await?;
    out.write_all(&packet.payload).await?;
    out.write_all(&trailer).await?;
    Ok(())
}

/// Reads ffmpeg's FLV output and publishes it. Returns at EOF.
async fn pump(
    stdout: ChildStdout,
    output_hub: &Arc<Hub>,
    output: &StreamName,
    publisher: &mut Option<Publisher>,
    stall_timeout: Duration,
) -> Result<(), EncoderError> {
    read_flv(stdout, stall_timeout, |tag| {
        let Some(tag) = tag else {
            if let Some(publisher) = &publisher {
                publisher.flush();
            }
            return Ok(());
        };
        let publisher = match publisher {
            Some(publisher) => publisher,
            None => match output_hub.publish(output) {
                Ok(new) => publisher.insert(new),
                Err(err) => {
                    return Err(EncoderError::Exited(format!(
                        "cannot publish output: {err}"
                    )));
                }
            },
        };
        publish_tag(publisher, tag.tag_type, tag.timestamp, tag.data);
        Ok(())
    })
    .await
}

/// Reads an FLV stream from ffmpeg until EOF: `each` gets every tag, then
/// `None` after the tags of each read (a moment to flush). ffmpeg producing
/// nothing for `stall` is an error, so a hung encoder is restarted.
pub async fn read_flv<R: AsyncRead + Unpin>(
    mut input: R,
    stall: Duration,
    mut each: impl FnMut(Option<crate::flv::FlvTag>) -> Result<(), EncoderError>,
) -> Result<(), EncoderError> {
    let mut reader = FlvReader::new();
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut header_read = false;
    loop {
        if buf.capacity() - buf.len() < 64 * 1024 {
            buf.reserve(256 * 1024);
        }
        let read = tokio::time::timeout(stall, input.read_buf(&mut buf))
            .await
            .map_err(|_| EncoderError::Stalled(stall))??;
        if read == 0 {
            return Ok(());
        }
        if !header_read {
            match reader.read_header(&mut buf).map_err(EncoderError::Output)? {
                Some(_) => header_read = true,
                None => continue,
            }
        }
        while let Some(next) = reader.read_tag(&mut buf).map_err(EncoderError::Output)? {
            each(Some(next))?;
        }
        each(None)?;
    }
}

fn publish_tag(publisher: &Publisher, tag_type: TagType, timestamp: u32, data: Bytes) {
    match tag_type {
        TagType::Audio => publisher.push_audio(timestamp, data),
        TagType::Video => publisher.push_video(timestamp, data),
        TagType::Script => match amf0::decode_all(&data) {
            Ok(values) if values.first().and_then(Amf0Value::as_str) == Some("onMetaData") => {
                if let Some(metadata) = values.get(1) {
                    publisher.set_metadata(metadata, timestamp);
                }
            }
            _ => publisher.push_data(timestamp, data),
        },
    }
}

/// Turns ffmpeg's stderr into progress for the status and rate-limited log lines.
pub async fn watch_stderr<R: AsyncRead + Unpin>(stderr: R, status: &EncoderStatus) {
    let mut lines = BufReader::new(stderr).lines();
    let mut progress = Progress::default();
    let mut window = tokio::time::Instant::now();
    let mut logged = 0u32;
    let mut suppressed = 0u32;
    while let Ok(Some(line)) = lines.next_line().await {
        if progress.apply_line(&line) {
            if line.starts_with("progress=") {
                status.update(|e| {
                    e.fps = progress.fps;
                    e.speed = progress.speed;
                    e.bitrate_kbps = progress.bitrate_kbps;
                });
            }
            continue;
        }
        if window.elapsed() >= Duration::from_secs(60) {
            if suppressed > 0 {
                tracing::warn!("ffmpeg: {suppressed} more lines not logged");
            }
            window = tokio::time::Instant::now();
            logged = 0;
            suppressed = 0;
        }
        if logged < LOG_LINES_PER_MINUTE {
            logged += 1;
            tracing::warn!("ffmpeg: {line}");
        } else {
            suppressed += 1;
        }
    }
    // stderr closed: ffmpeg is exiting; park until the run ends.
    std::future::pending::<()>().await;
}

/// Makes the child `command` starts die with prism: if prism dies, even by
/// SIGKILL, the kernel kills the child too, so no ffmpeg outlives it (encoders,
/// slate renders).
pub fn die_with_prism(command: &mut Command) {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it
    // runs in the forked child before exec, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
