//! One ffmpeg child as prism runs it: the source stream in as FLV on stdin, one
//! FLV output per profile on its own pipe (file descriptors 3, 4, ...), progress
//! on stderr. One input, so one decode however many outputs: each output is one
//! encode. ffmpeg never touches the network, and it dies with prism: it is
//! killed when its task ends, gets SIGKILL from the kernel if prism itself is
//! killed (PR_SET_PDEATHSIG), and sees EOF on stdin either way.
//!
//! What runs it: the encoders shared by destinations ([`super::encoder`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::BufWriter;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStderr, ChildStdin, Command};

use super::progress::Progress;
use super::status::EncoderStatus;
use crate::flv::{FlvHeader, FlvReader, FlvTag, FlvWriter};
use crate::hub::{Packet, Subscriber};
use crate::timestamp::Rebaser;

/// stderr lines logged per minute per encoder; ffmpeg can print a warning per frame.
const LOG_LINES_PER_MINUTE: u32 = 20;
/// How long ffmpeg gets to flush and exit after its input ended.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A started ffmpeg: the process, its input, its stderr and one pipe per output,
/// in the order of the outputs it was given.
#[derive(Debug)]
pub struct Running {
    /// The process (killed when dropped).
    pub process: Child,
    /// Where the source goes, as FLV.
    pub stdin: ChildStdin,
    /// Progress and warnings.
    pub stderr: ChildStderr,
    /// Each output's FLV.
    pub outputs: Vec<pipe::Receiver>,
}

/// Starts `ffmpeg` reading FLV on stdin (input 0), then whatever `inputs` add
/// (input options ending in `-i`), and writing one FLV stream per entry of
/// `outputs` (each a profile's output arguments) on fds 3, 4, ...
pub fn spawn(
    ffmpeg: &str,
    inputs: &[String],
    outputs: &[&[String]],
) -> Result<Running, EncoderError> {
    let mut pipes = Vec::with_capacity(outputs.len());
    for _ in outputs {
        let (reader, writer) = std::io::pipe()?;
        pipes.push((OwnedFd::from(reader), OwnedFd::from(writer)));
    }
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
        // The stream's tracks come first in the feed (its metadata and
        // sequence headers), so ffmpeg need not read far to know them; its
        // default, 5 s, would hold an audio-only stream back that long (the
        // FLV header names video, which never comes).
        .args(["-analyzeduration", "1000000"])
        .args(["-f", "flv", "-i", "pipe:0"])
        .args(inputs);
    for (i, args) in outputs.iter().enumerate() {
        command
            .args(*args)
            .args(["-f", "flv", "-flvflags", "no_duration_filesize"])
            .arg(format!("pipe:{}", 3 + i));
    }
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    die_with_prism(&mut command);
    let sources: Vec<i32> = pipes.iter().map(|(_, w)| w.as_raw_fd()).collect();
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
    let mut process = command.spawn().map_err(|source| EncoderError::Spawn {
        ffmpeg: ffmpeg.to_owned(),
        source,
    })?;
    // The child has its copies of the write ends; ours close here, or a reader
    // would never see the end of its pipe.
    let readers = pipes
        .into_iter()
        .map(|(reader, _writer)| pipe::Receiver::from_owned_fd(reader))
        .collect::<Result<Vec<_>, _>>()?;
    let (Some(stdin), Some(stderr)) = (process.stdin.take(), process.stderr.take()) else {
        return Err(EncoderError::Exited("pipes unavailable".into()));
    };
    Ok(Running {
        process,
        stdin,
        stderr,
        outputs: readers,
    })
}

/// Reaps an ffmpeg child: a clean end gets time to exit, anything else is killed.
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

/// Why a child that closed its outputs while its input was live did so.
pub async fn exit_reason(child: &mut Child) -> EncoderError {
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

/// Reads an FLV stream from ffmpeg until EOF: `each` gets every tag, then
/// `None` after the tags of each read (a moment to flush). ffmpeg producing
/// nothing for `stall` is an error, so a hung encoder is restarted.
pub async fn read_flv<R: AsyncRead + Unpin>(
    mut input: R,
    stall: Duration,
    mut each: impl FnMut(Option<FlvTag>) -> Result<(), EncoderError>,
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

/// Turns ffmpeg's stderr into progress for the statuses of its outputs (the
/// frame rate and speed are the process's: one decode feeds every output) and
/// rate-limited log lines.
pub async fn watch_stderr<R: AsyncRead + Unpin>(stderr: R, statuses: &[Arc<EncoderStatus>]) {
    let mut lines = BufReader::new(stderr).lines();
    let mut progress = Progress::default();
    let mut window = tokio::time::Instant::now();
    let mut logged = 0u32;
    let mut suppressed = 0u32;
    while let Ok(Some(line)) = lines.next_line().await {
        if progress.apply_line(&line) {
            if line.starts_with("progress=") {
                for status in statuses {
                    status.update(|e| {
                        e.fps = progress.fps;
                        e.speed = progress.speed;
                    });
                }
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
