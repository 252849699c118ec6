//! [`render`]: one ffmpeg run that turns a [`SlateSpec`] (and an operator's file, if
//! any) into a [`Slate`].
//!
//! ffmpeg writes FLV to a pipe; its stderr's last lines become the error when it
//! fails. It runs under a deadline, dies when the render is cancelled or dropped
//! (and with prism, by PR_SET_PDEATHSIG), and its output is bounded.
//!
//! Two failures are retried once with less: a card whose text cannot be drawn (an
//! ffmpeg without freetype or fonts) is rendered without text, and an operator's
//! video without sound gets silence.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::command::{self, CardText, Source};
use super::encoders::Capabilities;
use super::error::RenderError;
use super::slate::Slate;
use super::spec::{SlateAudioCodec, SlateSpec};

/// The longest a render may take.
pub const RENDER_TIMEOUT: Duration = Duration::from_secs(60);
/// The most FLV bytes a render may produce (a 4 s loop of a static card is tens of
/// kilobytes; an operator's busy video at 4K a few megabytes).
const MAX_OUTPUT: usize = 64 * 1024 * 1024;
/// Lines of ffmpeg's stderr kept for the error, and characters per line.
const STDERR_LINES: usize = 8;
const STDERR_LINE_CHARS: usize = 300;

/// Renders the slate of `spec`: the generated card, or `source` (an image or a video
/// file) fitted into the picture.
///
/// # Errors
/// A [`RenderError`] that says why; nothing is served from a failed render.
pub async fn render(
    ffmpeg: &Path,
    spec: &SlateSpec,
    source: Option<&Path>,
    cancel: &CancellationToken,
) -> Result<Slate, RenderError> {
    let caps = Capabilities::of(ffmpeg).await?;
    caps.video_encoder(spec.video.codec)?;
    let mut notes = Vec::new();
    let he_aac_kept = match spec.audio.as_ref().map(|a| a.codec) {
        Some(
            codec @ SlateAudioCodec::Aac {
                object_type: 5 | 29,
            },
        ) => {
            let kept = caps.audio_encoder(codec)? == "libfdk_aac";
            if !kept {
                notes.push("HE-AAC rendered as AAC-LC at the same rate (no libfdk_aac)".into());
            }
            kept
        }
        Some(codec) => {
            caps.audio_encoder(codec)?;
            false
        }
        None => false,
    };
    let mut with_text = source.is_none() && caps.drawtext;
    if source.is_none() && !caps.drawtext {
        notes.push("card without text: this ffmpeg has no drawtext filter".into());
    }
    let mut file_audio = spec.audio.is_some();
    loop {
        let text = match with_text {
            true => match TextFiles::write(&spec.title) {
                Ok(files) => Some(files),
                Err(err) => {
                    notes.push(format!("card without text: {err}"));
                    None
                }
            },
            false => None,
        };
        let source_arg = match source {
            None => Source::Card(text.as_ref().map(TextFiles::card_text)),
            Some(path) if command::is_image(path) => Source::Image(path),
            Some(path) => Source::Video { path, file_audio },
        };
        let args = command::ffmpeg_args(spec, &caps, source_arg)?;
        match run(ffmpeg, &args, cancel).await {
            Ok(flv) => return Slate::from_flv(spec, flv, he_aac_kept, notes),
            Err(RenderError::Failed { stderr, .. }) if text.is_some() && mentions_text(&stderr) => {
                tracing::warn!(
                    "slate: drawing the card's text failed, rendering it without: {stderr}"
                );
                notes.push("card without text: drawtext failed".into());
                with_text = false;
            }
            Err(RenderError::Failed { stderr, .. })
                if matches!(
                    source_arg,
                    Source::Video {
                        file_audio: true,
                        ..
                    }
                ) && stderr.contains("matches no streams") =>
            {
                notes.push("the file has no sound: silence".into());
                file_audio = false;
            }
            Err(err) => return Err(err),
        }
    }
}

fn mentions_text(stderr: &str) -> bool {
    let lower = stderr.to_ascii_lowercase();
    ["drawtext", "font", "freetype"]
        .iter()
        .any(|word| lower.contains(word))
}

/// The card's lines in files of their own (drawtext reads them literally), removed
/// when dropped.
struct TextFiles {
    headline: PathBuf,
    title: Option<PathBuf>,
}

impl TextFiles {
    fn write(title: &str) -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let serial = NEXT.fetch_add(1, Ordering::Relaxed);
        let base =
            std::env::temp_dir().join(format!("prism-slate-{}-{serial}", std::process::id()));
        let mut files = Self {
            headline: base.with_extension("headline.txt"),
            title: None,
        };
        std::fs::write(&files.headline, command::headline())?;
        if !title.is_empty() {
            let path = base.with_extension("title.txt");
            files.title = Some(path.clone());
            std::fs::write(path, title)?;
        }
        Ok(files)
    }

    fn card_text(&self) -> CardText<'_> {
        CardText {
            headline: &self.headline,
            title: self.title.as_deref(),
        }
    }
}

impl Drop for TextFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.headline);
        if let Some(title) = &self.title {
            let _ = std::fs::remove_file(title);
        }
    }
}

/// Runs ffmpeg to its end and returns its stdout.
async fn run(
    ffmpeg: &Path,
    args: &[OsString],
    cancel: &CancellationToken,
) -> Result<BytesMut, RenderError> {
    let mut command = Command::new(ffmpeg);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    crate::transcode::child::die_with_prism(&mut command);
    let mut child = command.spawn().map_err(|e| RenderError::Spawn {
        ffmpeg: ffmpeg.display().to_string(),
        reason: e.to_string(),
    })?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(RenderError::Output("ffmpeg's pipes are unavailable".into()));
    };
    let read_out = async move {
        let mut out = BytesMut::with_capacity(256 * 1024);
        loop {
            if out.len() > MAX_OUTPUT {
                return Err(RenderError::Output(format!(
                    "more than {MAX_OUTPUT} bytes for one loop"
                )));
            }
            out.reserve(64 * 1024);
            match stdout.read_buf(&mut out).await {
                Ok(0) => return Ok(out),
                Ok(_) => {}
                Err(err) => return Err(RenderError::Output(err.to_string())),
            }
        }
    };
    let read_err = async {
        let mut tail = VecDeque::with_capacity(STDERR_LINES);
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tail.len() == STDERR_LINES {
                tail.pop_front();
            }
            tail.push_back(line.chars().take(STDERR_LINE_CHARS).collect::<String>());
        }
        Vec::from(tail).join(" | ")
    };
    let work = async {
        let (out, stderr) = tokio::join!(read_out, read_err);
        (out, stderr, child.wait().await)
    };
    let (out, stderr, status) = tokio::select! {
        done = tokio::time::timeout(RENDER_TIMEOUT, work) => {
            done.map_err(|_| RenderError::Timeout(RENDER_TIMEOUT.as_secs()))?
        }
        () = cancel.cancelled() => return Err(RenderError::Cancelled),
    };
    let status = status.map_err(|e| RenderError::Output(e.to_string()))?;
    if !status.success() {
        return Err(RenderError::Failed {
            status: status.to_string(),
            stderr,
        });
    }
    out
}
