//! Playlists, written from a packager's window: the media playlist of one
//! rendition (LL-HLS: parts, preload hint, blocking reload) and the master
//! playlist of a ladder.
//!
//! Every URI is relative to the playlist and carries the request's access token
//! (`?token=`), if any, since a relative URI does not inherit the playlist's
//! query.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use super::packager::Packager;

/// How many complete segments, newest first, keep their parts listed: parts are
/// for a player near the live edge, and three segments is more than the part
/// hold-back of any player.
const SEGMENTS_WITH_PARTS: usize = 3;

/// The names of one rendition's files: `{rendition}.m3u8`,
/// `{rendition}.init{n}.mp4`, `{rendition}.{msn}.m4s`,
/// `{rendition}.{msn}.{part}.m4s`.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    /// The rendition (`src` or a ladder rung's profile).
    pub rendition: &'a str,
    /// `?token=...` or empty.
    pub query: &'a str,
}

impl Names<'_> {
    fn init(&self, n: u32) -> String {
        format!("{}.init{n}.mp4{}", self.rendition, self.query)
    }

    fn segment(&self, msn: u64) -> String {
        format!("{}.{msn}.m4s{}", self.rendition, self.query)
    }

    fn part(&self, msn: u64, part: usize) -> String {
        format!("{}.{msn}.{part}.m4s{}", self.rendition, self.query)
    }
}

/// The media playlist of `packager`'s window. `anchor` is the wall-clock time of
/// decode time 0 (`EXT-X-PROGRAM-DATE-TIME`, what players measure latency by).
pub fn media(packager: &Packager, names: Names<'_>, anchor: Option<SystemTime>) -> String {
    let timing = packager.timing();
    let part_target = timing.part_ms as f64 / 1000.0;
    let target = timing.target_duration_secs();
    let mut out = String::with_capacity(4096);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3},HOLD-BACK={:.3}",
        3.0 * part_target,
        3.0 * target as f64
    );
    let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
    let segments = packager.segments();
    let first = segments.front().map_or(packager.edge().0, |s| s.msn);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first}");
    if packager.discontinuity_sequence() > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            packager.discontinuity_sequence()
        );
    }
    let complete = packager.complete();
    let mut map = None;
    for (i, segment) in segments.iter().enumerate() {
        if segment.parts.is_empty() {
            continue;
        }
        if segment.discontinuity {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if map != Some(segment.init) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", names.init(segment.init));
            map = Some(segment.init);
        }
        if let Some(anchor) = anchor {
            let at = anchor + Duration::from_millis(segment.start_ms);
            let _ = writeln!(
                out,
                "#EXT-X-PROGRAM-DATE-TIME:{}",
                humantime::format_rfc3339_millis(at)
            );
            // The first segment's cues include any from before its start that
            // the window still keeps.
            let from = if i == 0 { 0 } else { segment.start_ms };
            let until = segments.get(i + 1).map(|next| next.start_ms);
            for range in packager.dateranges().starting_in(from, until) {
                super::daterange::write_tag(&mut out, range, anchor);
            }
        }
        if i + SEGMENTS_WITH_PARTS >= complete {
            for (p, part) in segment.parts.iter().enumerate() {
                let _ = write!(
                    out,
                    "#EXT-X-PART:DURATION={:.3},URI=\"{}\"",
                    part.duration_ms as f64 / 1000.0,
                    names.part(segment.msn, p)
                );
                out.push_str(if part.independent {
                    ",INDEPENDENT=YES\n"
                } else {
                    "\n"
                });
            }
        }
        if i < complete {
            let _ = writeln!(
                out,
                "#EXTINF:{:.3},\n{}",
                segment.duration_ms() as f64 / 1000.0,
                names.segment(segment.msn)
            );
        }
    }
    if packager.ended() {
        out.push_str("#EXT-X-ENDLIST\n");
    } else {
        let (msn, parts) = packager.edge();
        let _ = writeln!(
            out,
            "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{}\"",
            names.part(msn, parts)
        );
    }
    out
}

/// Where another rendition of the stream is (`EXT-X-RENDITION-REPORT`): its name
/// and its last part, as [`Packager::last_part`] gives it.
#[derive(Debug, Clone)]
pub struct RenditionReport {
    /// The rendition's name (its playlist is `{name}.m3u8`).
    pub rendition: String,
    /// Its last media sequence number and part index.
    pub last: (u64, usize),
}

/// The rendition reports LL-HLS asks a media playlist of a multi-variant
/// stream to end with: one per other rendition, so a player switching
/// variants knows where to ask without a reload of the other playlist first.
pub fn rendition_reports(out: &mut String, reports: &[RenditionReport], query: &str) {
    for report in reports {
        let (msn, part) = report.last;
        let _ = writeln!(
            out,
            "#EXT-X-RENDITION-REPORT:URI=\"{}.m3u8{query}\",LAST-MSN={msn},LAST-PART={part}",
            report.rendition
        );
    }
}

/// One variant of a master playlist.
#[derive(Debug, Clone)]
pub struct Variant {
    /// Its media playlist's rendition name.
    pub rendition: String,
    /// Peak bits per second (`BANDWIDTH`).
    pub bandwidth: u64,
    /// `RESOLUTION`, when known.
    pub resolution: Option<(u32, u32)>,
    /// `CODECS`, when known.
    pub codecs: Option<String>,
}

/// The master playlist of a ladder: one variant per rendition.
pub fn master(variants: &[Variant], query: &str) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for variant in variants {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", variant.bandwidth);
        if let Some((w, h)) = variant.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(codecs) = &variant.codecs {
            let _ = write!(out, ",CODECS=\"{codecs}\"");
        }
        let _ = writeln!(out, "\n{}.m3u8{query}", variant.rendition);
    }
    out
}

#[cfg(test)]
mod tests;
