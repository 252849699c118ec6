//! MPEG-TS for the tests of inputs that take it (SRT, HTTP pushes): a clip with
//! B-frames, its TS as ffmpeg muxes it, and where to cut that TS inside a
//! picture.

use std::path::{Path, PathBuf};

use super::{generate, require};

/// A clip with B-frames (composition offsets that must survive).
pub fn b_frame_clip() -> PathBuf {
    generate(
        &require("ffmpeg"),
        "clip-bframes-6s.flv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30:duration=6",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=6",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-pix_fmt",
            "yuv420p",
            "-bf",
            "2",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-c:a",
            "aac",
            "-b:a",
            "64k",
            "-shortest",
        ],
    )
}

/// `source` remuxed to MPEG-TS by ffmpeg (video on PID 0x100, audio on 0x101).
pub fn mpeg_ts_of(source: &Path) -> Vec<u8> {
    let out = std::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(source)
        .args(["-c", "copy", "-f", "mpegts", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success());
    out.stdout
}

/// Where to cut `ts`, past its middle, so that a picture is cut short: after
/// the second packet of a video PES that has more. (A video PES carries no
/// length, so nothing in the TS itself says it was cut.)
pub fn inside_a_picture(ts: &[u8]) -> usize {
    let packets: Vec<(u16, bool)> = ts
        .chunks_exact(188)
        .map(|p| {
            (
                u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]),
                p[1] & 0x40 != 0,
            )
        })
        .collect();
    let video = |i: usize, starts: bool| packets.get(i) == Some(&(0x100, starts));
    (packets.len() / 2..packets.len())
        .find(|&i| video(i, true) && video(i + 1, false) && video(i + 2, false))
        .map(|i| (i + 2) * 188)
        .expect("a picture to cut")
}
