//! SRT callers for the tests of the SRT ingest: ffmpeg's libsrt sending a file
//! as MPEG-TS in real time, to a URL naming prism's SRT listener.

use std::path::Path;

use tokio::process::Child;

use super::{Prism, require, spawn_path};

/// The SRT URL of `prism`'s listener for `stream_id`, with 200 ms of latency
/// and `extra` query parameters (`&passphrase=...`).
pub fn srt_url(prism: &Prism, stream_id: &str, extra: &str) -> String {
    let addr = prism.app.as_ref().unwrap().srt_addr().unwrap();
    format!("srt://{addr}?streamid={stream_id}&latency=200000{extra}")
}

/// ffmpeg sending `file` in real time over SRT as MPEG-TS.
pub fn srt_publish(file: &Path, url: &str) -> Child {
    srt_publish_using(&require("ffmpeg"), file, url)
}

/// [`srt_publish`] with the given ffmpeg binary.
pub fn srt_publish_using(ffmpeg: &Path, file: &Path, url: &str) -> Child {
    let file = file.to_str().unwrap();
    let args = ["-hide_banner", "-loglevel", "error", "-re", "-i", file];
    spawn_path(
        ffmpeg,
        &[&args[..], &["-c", "copy", "-f", "mpegts", url]].concat(),
    )
}
