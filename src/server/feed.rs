//! Media that arrives as a byte stream (an HTTP push's body, an SRT
//! connection's MPEG-TS) into a publisher: FLV read natively, paced to real time
//! (a client may upload a whole file at once: the destinations still get it as
//! a live stream, and the body is read no faster), or any other container
//! through a supervised ffmpeg child that remuxes it (MPEG-TS: timestamps,
//! composition offsets and the 33-bit wrap are ffmpeg's to map) or re-encodes it
//! (WebM, Ogg, WAV, raw AAC or MP3...) to H.264 and AAC in FLV, paced by
//! ffmpeg's `-re`.

use std::process::Stdio;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::Command;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ts_end::TsEnd;
use crate::flv::{FlvError, FlvReader, TagType};
use crate::hub::Publisher;

/// The largest tag accepted: far above any frame an encoder sends, far below
/// what would let one client make prism hold much memory.
const MAX_TAG_BYTES: usize = 8 * 1024 * 1024;
/// How far ahead of real time a body may be read: a little, so that a client
/// pacing itself is never slowed by prism's own rounding.
const LEAD: Duration = Duration::from_millis(500);
/// A step forward in the timestamps beyond this is a jump (a new clock), not
/// media to wait for.
const MAX_STEP: Duration = Duration::from_secs(10);
/// How much of ffmpeg's stderr is kept, for the error when it fails.
const STDERR_KEPT: usize = 2048;

/// How a pushed stream ended, short of its clean end.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Nothing arrived for this long.
    #[error("no data for {0:?}")]
    Idle(Duration),
    /// The input broke off (the client went away, the connection failed).
    #[error("the input broke off: {0}")]
    Body(std::io::Error),
    /// Not FLV where FLV was expected, or a tag over the limit.
    #[error("bad FLV: {0}")]
    Flv(#[from] FlvError),
    /// ffmpeg could not start, or failed on the input.
    #[error("ffmpeg: {0}")]
    Ffmpeg(String),
    /// The operator kicked the publisher, or prism shuts down.
    #[error("stopped by prism")]
    Stopped,
}

/// What a body brought.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fed {
    /// FLV tags pushed into the stream.
    pub tags: u64,
    /// Bytes of them.
    pub bytes: u64,
}

/// What a body's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// FLV: read here.
    Flv,
    /// MPEG-TS: remuxed by ffmpeg.
    MpegTs,
    /// Anything else ffmpeg reads: re-encoded.
    Other,
    /// Raw PCM (16-bit little-endian, interleaved), as a chunked push
    /// assembles it: encoded to AAC.
    Pcm {
        /// Samples per second.
        rate: u32,
        /// Channels.
        channels: u32,
    },
}

impl Container {
    /// Sniffs `first` (the body's first bytes) and the request's content type.
    pub fn sniff(first: &[u8], content_type: Option<&str>) -> Self {
        let flv = b"FLV";
        if !first.is_empty() && flv.starts_with(&first[..first.len().min(3)]) {
            return Self::Flv;
        }
        let ts = first.first() == Some(&0x47) && first.get(188).is_none_or(|b| *b == 0x47);
        if ts || content_type.is_some_and(|t| t.eq_ignore_ascii_case("video/mp2t")) {
            return Self::MpegTs;
        }
        Self::Other
    }
}

/// What a body's end says of its last bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// A clean end means that all that was sent arrived (an HTTP body that
    /// ended with its terminator); one that broke off is cut.
    Whole,
    /// Even a clean end may cut the last frames short: an SRT caller's close
    /// loses what was still in flight.
    Cut,
}

/// What [`feed_through_ffmpeg`] is given to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyKind {
    /// Its container.
    pub container: Container,
    /// What its end says.
    pub end: BodyEnd,
}

impl From<Container> for BodyKind {
    fn from(container: Container) -> Self {
        Self {
            container,
            end: BodyEnd::Whole,
        }
    }
}

/// Reads FLV from `input` into `publisher` until it ends (a clean end is
/// `Ok`), pacing media to real time when `pace`.
pub async fn feed_flv<R: AsyncRead + Unpin>(
    mut input: R,
    publisher: &Publisher,
    idle: Duration,
    pace: bool,
    stop: &CancellationToken,
    fed: &mut Fed,
) -> Result<(), FeedError> {
    let mut reader = FlvReader::with_max_tag_data_len(MAX_TAG_BYTES);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut header_read = false;
    let mut pacer = Pacer::default();
    loop {
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let read = tokio::select! {
            read = tokio::time::timeout(idle, input.read_buf(&mut buf)) => read,
            () = stop.cancelled() => return Err(FeedError::Stopped),
        };
        let read = read
            .map_err(|_| FeedError::Idle(idle))?
            .map_err(FeedError::Body)?;
        if read == 0 {
            return if buf.is_empty() {
                Ok(())
            } else {
                Err(FeedError::Flv(FlvError::Truncated(
                    "the body ended inside a tag",
                )))
            };
        }
        if !header_read {
            match reader.read_header(&mut buf)? {
                Some(_) => header_read = true,
                None => continue,
            }
        }
        while let Some(tag) = reader.read_tag(&mut buf)? {
            if pace && tag.tag_type != TagType::Script {
                let wait = pacer.due(tag.timestamp, Instant::now());
                if !wait.is_zero() {
                    publisher.flush();
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = stop.cancelled() => return Err(FeedError::Stopped),
                    }
                }
            }
            fed.tags += 1;
            fed.bytes += tag.data.len() as u64;
            publisher.push_flv_tag(tag.tag_type, tag.timestamp, tag.data);
        }
        publisher.flush();
    }
}

/// Real-time pacing: when a tag stamped `timestamp` is due.
#[derive(Debug, Default)]
struct Pacer {
    base: Option<(u32, Instant)>,
}

impl Pacer {
    /// How long to wait, at `now`, before sending a tag stamped `timestamp`.
    fn due(&mut self, timestamp: u32, now: Instant) -> Duration {
        let (first, start) = *self.base.get_or_insert((timestamp, now));
        let ahead = timestamp.wrapping_sub(first) as i32;
        if ahead < 0 {
            return Duration::ZERO;
        }
        let at = start + Duration::from_millis(ahead as u64);
        if at > now + MAX_STEP {
            // A jump in the clock: start again from here.
            self.base = Some((timestamp, now));
            return Duration::ZERO;
        }
        at.saturating_duration_since(now + LEAD)
    }
}

/// Feeds `body` through ffmpeg (remuxing MPEG-TS, re-encoding anything else to
/// H.264 and AAC) into `publisher`, until the body and ffmpeg's output end.
pub async fn feed_through_ffmpeg<R: AsyncRead + Unpin>(
    mut body: R,
    kind: impl Into<BodyKind>,
    ffmpeg: &str,
    publisher: &Publisher,
    idle: Duration,
    stop: &CancellationToken,
    fed: &mut Fed,
) -> Result<(), FeedError> {
    let kind = kind.into();
    let container = kind.container;
    let mut command = Command::new(ffmpeg);
    command.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-re"]);
    match container {
        Container::MpegTs => {
            // A PES that ffmpeg's demuxer knows to be damaged (a continuity
            // gap, a length that does not add up, a transport error, as
            // `copy_body` marks a cut end) is dropped, not sent on as a
            // damaged frame.
            command.args(["-fflags", "+discardcorrupt", "-f", "mpegts"]);
        }
        Container::Pcm { rate, channels } => {
            let (rate, channels) = (rate.to_string(), channels.to_string());
            command.args(["-f", "s16le", "-ar", &rate, "-ac", &channels]);
        }
        Container::Flv | Container::Other => {}
    }
    command.args(["-i", "pipe:0", "-map", "0:v?", "-map", "0:a?"]);
    match container {
        Container::MpegTs => command.args(["-c", "copy"]),
        Container::Pcm { .. } => command.args(["-c:a", "aac", "-b:a", "128k"]),
        _ => command.args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-tune",
            "zerolatency",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "60",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
            "-ar",
            "44100",
        ]),
    };
    command
        .args(["-f", "flv", "pipe:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    crate::transcode::child::die_with_prism(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| FeedError::Ffmpeg(format!("cannot start {ffmpeg}: {e}")))?;
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(FeedError::Ffmpeg("no pipes".into()));
    };
    let errors = async move {
        let mut kept = Vec::new();
        let mut chunk = [0u8; 512];
        while let Ok(n) = stderr.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&chunk[..n]);
            if kept.len() > STDERR_KEPT {
                kept.drain(..kept.len() - STDERR_KEPT);
            }
        }
        kept
    };
    let mut errors = Box::pin(errors);
    let mut copied = None;
    let mut said = None;
    let fed_result = {
        let copy = async {
            let copied = copy_body(&mut body, &mut stdin, kind).await;
            drop(stdin);
            copied
        };
        let read = feed_flv(stdout, publisher, idle, false, stop, fed);
        tokio::pin!(copy, read);
        loop {
            tokio::select! {
                result = &mut copy, if copied.is_none() => copied = Some(result),
                text = &mut errors, if said.is_none() => said = Some(text),
                result = &mut read => break result,
            }
        }
    };
    // Once its input ended, ffmpeg exits by itself; otherwise (the output
    // failed, or prism stops) it is killed.
    if copied.is_none() || fed_result.is_err() {
        let _ = child.start_kill();
    }
    let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
    let status = match status {
        Ok(Ok(status)) => Some(status),
        _ => {
            let _ = child.kill().await;
            None
        }
    };
    let stderr_text = match said {
        Some(text) => text,
        None => tokio::time::timeout(Duration::from_millis(500), &mut errors)
            .await
            .unwrap_or_default(),
    };
    if let Some(Err(err)) = copied {
        return Err(FeedError::Body(err));
    }
    fed_result?;
    let clean = copied.is_some() && status.is_some_and(|s| s.success()) && fed.tags > 0;
    if !clean {
        let text = String::from_utf8_lossy(&stderr_text).trim().to_owned();
        let status = status.map_or("did not exit".to_owned(), |s| s.to_string());
        let why = match (copied.is_some(), text.is_empty()) {
            (_, false) => format!("{status}: {text}"),
            (false, true) => format!("{status} before the body ended"),
            (true, true) => format!("{status}, having read no media"),
        };
        return Err(FeedError::Ffmpeg(why));
    }
    Ok(())
}

/// Copies `body` into ffmpeg's input. An MPEG-TS body that broke off, or
/// whose end is a cut, is followed by the packets that mark its end damaged
/// ([`TsEnd`]): its last frames may have been cut short, and ffmpeg's demuxer
/// would hand a PES cut short on as if whole (a video PES carries no length).
async fn copy_body<R, W>(body: &mut R, input: &mut W, kind: BodyKind) -> std::io::Result<u64>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if kind.container != Container::MpegTs {
        return tokio::io::copy(body, input).await;
    }
    let mut end = TsEnd::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0;
    loop {
        match body.read(&mut buf).await {
            Ok(0) => {
                if kind.end == BodyEnd::Cut {
                    input.write_all(&end.closing_packets()).await?;
                }
                return Ok(copied);
            }
            Ok(n) => {
                end.observe(&buf[..n]);
                input.write_all(&buf[..n]).await?;
                copied += n as u64;
            }
            Err(err) => {
                // ffmpeg still reads to the end of its input: what arrived
                // whole is relayed, the frame cut short is not.
                let _ = input.write_all(&end.closing_packets()).await;
                return Err(err);
            }
        }
    }
}

/// A token cancelled by either of `kick` and `shutdown` (cancel it, or
/// drop a guard of it, once done: that ends the task that links them).
pub fn stop_token(kick: &CancellationToken, shutdown: &CancellationToken) -> CancellationToken {
    let stop = shutdown.child_token();
    let (kicked, linked) = (kick.clone(), stop.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = kicked.cancelled() => linked.cancel(),
            () = linked.cancelled() => {}
        }
    });
    stop
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_known_by_its_first_bytes() {
        assert_eq!(Container::sniff(b"FLV\x01\x05", None), Container::Flv);
        assert_eq!(Container::sniff(b"F", None), Container::Flv);
        let mut ts = vec![0u8; 376];
        ts[0] = 0x47;
        ts[188] = 0x47;
        assert_eq!(Container::sniff(&ts, None), Container::MpegTs);
        ts[188] = 0;
        assert_eq!(Container::sniff(&ts, None), Container::Other);
        assert_eq!(Container::sniff(b"\x1aE\xdf\xa3", None), Container::Other);
        assert_eq!(
            Container::sniff(b"RIFF", Some("video/MP2T")),
            Container::MpegTs
        );
    }

    #[test]
    fn pacing_holds_a_burst_to_real_time_and_follows_a_jump() {
        let mut pacer = Pacer::default();
        let start = Instant::now();
        let ms = |n| start + Duration::from_millis(n);
        assert_eq!(pacer.due(1_000, ms(0)), Duration::ZERO);
        assert_eq!(pacer.due(1_400, ms(0)), Duration::ZERO, "within the lead");
        assert_eq!(pacer.due(3_000, ms(0)), Duration::from_millis(1_500));
        assert_eq!(pacer.due(3_000, ms(1_500)), Duration::ZERO);
        assert_eq!(
            pacer.due(900, ms(1_500)),
            Duration::ZERO,
            "a step back goes at once"
        );
        assert_eq!(
            pacer.due(3_600_000, ms(1_500)),
            Duration::ZERO,
            "a jump restarts the clock"
        );
        assert_eq!(
            pacer.due(3_602_000, ms(1_500)),
            Duration::from_millis(1_500)
        );
    }
}
