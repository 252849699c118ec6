//! The ABR ladder: `[hls] ladder = ["720p30", "480p30"]` gives each stream's HLS
//! one variant per rung besides the source, all from ONE ffmpeg process per
//! stream: one decode, one encode per rung (the rung's re-encode profile), each
//! written as FLV to its own pipe (file descriptors 3, 4, ...), which prism reads
//! into that rung's packager. The profiles force keyframes at the same times
//! (every 2 s of the input's clock), so the rungs' keyframes, and with them
//! their segments, line up.
//!
//! The encoder runs while the stream's HLS is packaged and is restarted with
//! backoff when it fails; a rung's timeline continues across restarts, so its
//! playlist keeps counting. ffmpeg never sees the network and dies with prism.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use super::rung::Rung;
use crate::backoff::{Backoff, BackoffPolicy};
use crate::flv::TagType;
use crate::hub::{Hub, Packet, SubscriberKind};
use crate::transcode::EncoderStatus;
use crate::transcode::encoder::{
    EncoderError, die_with_prism, feed, finish, read_flv, watch_stderr,
};

/// A rung: its name (the profile's) and the profile's ffmpeg output arguments.
#[derive(Debug, Clone)]
pub struct RungSpec {
    /// The rendition's name in URLs: the profile's name.
    pub name: String,
    /// The profile's output arguments.
    pub args: Vec<String>,
}

/// What a stream's ladder encoder runs.
#[derive(Debug, Clone)]
pub struct LadderSpec {
    /// The ffmpeg binary.
    pub ffmpeg: String,
    /// The rungs, in the configured order.
    pub rungs: Vec<RungSpec>,
}

/// What the ladder encoder feeds: a stream's rungs (a trait, so that this module
/// does not depend on the packagers' registry that starts it).
pub trait LadderTarget: Send + Sync {
    /// The source stream's app and hub key.
    fn hub_key(&self) -> (&str, &str);
    /// The stream id, for the log.
    fn stream_id(&self) -> &str;
    /// The rungs, in the ladder's order.
    fn rungs(&self) -> &[Rung];
    /// Wakes the requests waiting for a window to move.
    fn changed(&self);
}

/// How long the encoder may produce nothing before it is restarted.
const STALL: Duration = Duration::from_secs(20);

/// Runs `live`'s ladder encoder until packaging stops (`stop`) or the stream ends.
pub async fn run(
    live: Arc<dyn LadderTarget>,
    hub: Arc<Hub>,
    spec: Arc<LadderSpec>,
    status: Arc<EncoderStatus>,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::new(BackoffPolicy {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(30),
        ..BackoffPolicy::default()
    });
    // Where each rung's timeline is: a restarted encoder's output starts at 0
    // again and is placed after it.
    let mut offsets = vec![0u64; spec.rungs.len()];
    loop {
        let (app, key) = live.hub_key();
        let Ok(subscriber) = hub.subscribe_as(app, key, SubscriberKind::Relay) else {
            break;
        };
        let result = tokio::select! {
            result = run_once(&live, &spec, &subscriber, &status, &mut offsets) => result,
            () = stop.cancelled() => break,
        };
        status.update(|e| e.pid = None);
        match result {
            Ok(()) => break,
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(stream_id = %live.stream_id(), retry_in = ?delay, "HLS ladder encoder failed: {err}");
                status.record_failure(format!("HLS ladder encoder: {err}"), false);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => break,
                }
                status.update(|e| e.restarts += 1);
            }
        }
    }
}

/// One ffmpeg run: feeds it the stream and reads every rung's output until
/// the input ends (Ok) or something fails.
async fn run_once(
    live: &Arc<dyn LadderTarget>,
    spec: &LadderSpec,
    subscriber: &crate::hub::Subscriber,
    status: &EncoderStatus,
    offsets: &mut [u64],
) -> Result<(), EncoderError> {
    let mut pipes = Vec::with_capacity(spec.rungs.len());
    for _ in &spec.rungs {
        let (reader, writer) = std::io::pipe()?;
        pipes.push((OwnedFd::from(reader), OwnedFd::from(writer)));
    }
    let writers: Vec<OwnedFd> = pipes
        .iter()
        .map(|(_, w)| w.try_clone())
        .collect::<Result<_, _>>()?;
    let mut child = spawn(spec, &writers)?;
    // The child has its copies; without closing ours, a rung's reader would
    // never see the end of its pipe.
    drop(writers);
    let readers: Vec<OwnedFd> = pipes.into_iter().map(|(r, _)| r).collect();
    status.started(child.id());
    tracing::info!(pid = ?child.id(), rungs = spec.rungs.len(), "HLS ladder encoder started");
    let (Some(stdin), Some(stderr)) = (child.stdin.take(), child.stderr.take()) else {
        return Err(EncoderError::Exited("pipes unavailable".into()));
    };
    let mut reads = Vec::with_capacity(readers.len());
    for ((fd, rung), offset) in readers
        .into_iter()
        .zip(live.rungs())
        .zip(offsets.iter_mut())
    {
        let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
        reads.push(read_rung(live.as_ref(), rung, pipe, offset));
    }
    let outputs = futures_util::future::try_join_all(reads);
    let progress = watch_stderr(stderr, status);
    let input = feed(stdin, subscriber);
    tokio::pin!(outputs, progress, input);
    let mut input_ended = false;
    let end = loop {
        tokio::select! {
            fed = &mut input, if !input_ended => match fed {
                Ok(()) => input_ended = true,
                Err(err) => break Err(err),
            },
            read = &mut outputs => break match read {
                Ok(_) if input_ended => Ok(()),
                Ok(_) => Err(EncoderError::Exited("ffmpeg closed its outputs".into())),
                Err(err) => Err(err),
            },
            () = &mut progress => {}
        }
    };
    finish(&mut child, end.is_ok()).await;
    end
}

fn spawn(spec: &LadderSpec, writers: &[OwnedFd]) -> Result<Child, EncoderError> {
    let mut command = Command::new(&spec.ffmpeg);
    command
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "warning",
            "-nostats",
        ])
        .args(["-progress", "pipe:2", "-stats_period", "1"])
        .args(["-f", "flv", "-i", "pipe:0"]);
    for (i, rung) in spec.rungs.iter().enumerate() {
        command
            .args(&rung.args)
            .args(["-f", "flv", "-flvflags", "no_duration_filesize"])
            .arg(format!("pipe:{}", 3 + i));
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_prism(&mut command);
    let sources: Vec<i32> = writers.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: runs in the forked child before exec and only calls fcntl and dup2,
    // which are async-signal-safe, on descriptors this process owns; `sources`
    // was allocated before the fork and is only read.
    unsafe {
        command.pre_exec(move || {
            // First out of the way (a source may sit on a target number), then
            // into place at 3, 4, ...; dup2 clears close-on-exec on the copy.
            for (i, &fd) in sources.iter().enumerate() {
                let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64 + i as i32);
                if high < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::dup2(high, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    command.spawn().map_err(|source| EncoderError::Spawn {
        ffmpeg: spec.ffmpeg.clone(),
        source,
    })
}

/// Reads one rung's FLV into its packager until ffmpeg closes it.
async fn read_rung(
    live: &dyn LadderTarget,
    rung: &Rung,
    pipe: tokio::net::unix::pipe::Receiver,
    offset: &mut u64,
) -> Result<(), EncoderError> {
    let start = *offset;
    let mut changed = false;
    read_flv(pipe, STALL, |tag| {
        let Some(tag) = tag else {
            if std::mem::take(&mut changed) {
                live.changed();
            }
            return Ok(());
        };
        let packet = match tag.tag_type {
            TagType::Video => Packet::video(tag.timestamp, tag.data).0,
            TagType::Audio => Packet::audio(tag.timestamp, tag.data).0,
            TagType::Script => return Ok(()),
        };
        let dts = start + u64::from(packet.timestamp);
        *offset = (*offset).max(dts + 1);
        changed |= rung
            .push(&packet, dts)
            .map_err(|err| EncoderError::Exited(format!("{}: {err}", rung.name)))?;
        Ok(())
    })
    .await
}
