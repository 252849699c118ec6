//! The figures of one run, from the decoded capture.
//!
//! Definitions (BENCHMARKS.md repeats them):
//! - A *frame* is a coded audio or video message (sequence headers, metadata and
//!   end-of-sequence excluded: relays send those on their own schedule).
//! - A sink frame is *matched* to a published frame when it has the same payload
//!   (length and hash), in order: the relay may skip frames (at the start, or when
//!   it drops), but it must not reorder them.
//! - *Published* frames are those whose last byte left the publisher before the
//!   end of the measurement window; *delivered (all)* is the share of them matched
//!   on a sink before the capture ended (one tail second later), counted from the
//!   publisher's very first frame, so a relay that loses the start shows it here;
//!   *delivered (window)* counts only frames published inside the window: the
//!   steady state.
//! - *Added latency* of a video frame on one sink: capture time of the segment
//!   that completed it on the relay -> sink connection minus that of the
//!   publisher -> relay connection, for frames published inside the window.
//! - *First frame*: capture time of a sink's first video frame minus that of the
//!   publisher's first keyframe.
//! - *Delivered megabits*: audio + video payload bytes (every message of type 8
//!   or 9, without RTMP chunk headers) completed on relay -> sink connections
//!   inside the window, times 8, over 10^6.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::capture::{Decoded, Flow, Kind, MediaMessage, Role};

/// The measurement window, ns since the epoch (the capture's clock).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    /// Start (end of the warm-up).
    pub start_ns: u64,
    /// End.
    pub end_ns: u64,
}

impl Window {
    fn contains(&self, time_ns: u64) -> bool {
        (self.start_ns..=self.end_ns).contains(&time_ns)
    }

    fn secs(&self) -> f64 {
        (self.end_ns - self.start_ns) as f64 / 1e9
    }
}

/// What the publisher sent.
#[derive(Debug, Default, Serialize)]
pub struct Published {
    /// Frames (audio + video) completed before the window's end.
    pub frames: u64,
    /// Of which inside the window.
    pub frames_in_window: u64,
    /// Video frames inside the window.
    pub video_frames_in_window: u64,
    /// Media payload rate inside the window, Mbit/s.
    pub mbit_per_s: f64,
}

/// One sink's figures.
#[derive(Debug, Serialize)]
pub struct SinkFigures {
    /// Stream name at the sink.
    pub name: String,
    /// Connections the relay made to it (1 unless it reconnected).
    pub connections: usize,
    /// Matched / published, from the publisher's first frame.
    pub delivered_all: f64,
    /// Matched / published, frames published inside the window.
    pub delivered_window: f64,
    /// Sink frames that match no published frame in order (should be 0).
    pub unmatched: u64,
    /// The relay's first connection to the sink (its SYN) after the publisher's
    /// first keyframe, ms (negative: before it). With `first_frame_ms`, tells
    /// connection setup from waiting for media.
    pub connect_ms: Option<f64>,
    /// First video frame at the sink after the publisher's first keyframe, ms.
    pub first_frame_ms: Option<f64>,
    /// Whether the sink's first video frame is the publisher's first keyframe.
    pub starts_at_first_keyframe: bool,
    /// Added latency of video frames published inside the window, ms.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile.
    pub latency_p99_ms: Option<f64>,
    /// Maximum.
    pub latency_max_ms: Option<f64>,
}

/// Everything one run measured on the wire.
#[derive(Debug, Serialize)]
pub struct Figures {
    /// The publisher's side.
    pub published: Published,
    /// Per sink, by name.
    pub sinks: Vec<SinkFigures>,
    /// Lowest `delivered_all` over sinks (0 when a sink got nothing).
    pub delivered_all_min: f64,
    /// Lowest `delivered_window` over sinks.
    pub delivered_window_min: f64,
    /// Median over sinks of the first-frame time, ms.
    pub first_frame_median_ms: Option<f64>,
    /// Maximum over sinks, ms.
    pub first_frame_max_ms: Option<f64>,
    /// Added latency over every (sink, video frame) pair in the window, ms.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile of the same pairs.
    pub latency_p99_ms: Option<f64>,
    /// Maximum of the same pairs.
    pub latency_max_ms: Option<f64>,
    /// Pairs measured.
    pub latency_pairs: usize,
    /// Added latency of keyframes only (the largest messages), median and maximum, ms.
    pub keyframe_latency_p50_ms: Option<f64>,
    /// Maximum over keyframes.
    pub keyframe_latency_max_ms: Option<f64>,
    /// The slowest (sink, video frame) pairs, slowest first: where the tail comes from.
    pub slowest: Vec<SlowFrame>,
    /// Delivered megabits inside the window, all sinks.
    pub delivered_mbit: f64,
    /// Problems that make the run's figures untrustworthy.
    pub problems: Vec<String>,
}

/// One slow delivery, for the JSON.
#[derive(Debug, Clone, Serialize)]
pub struct SlowFrame {
    /// Added latency, ms.
    pub latency_ms: f64,
    /// The sink.
    pub sink: String,
    /// Payload bytes.
    pub len: u32,
    /// Whether it is a keyframe.
    pub keyframe: bool,
    /// When the publisher sent it, ms after the window's start.
    pub published_at_ms: f64,
}

/// How many slow frames a run's JSON lists.
const SLOWEST: usize = 10;

/// Computes the figures of a run with `sinks` expected sink names.
pub fn analyze(decoded: &Decoded, window: Window, sink_names: &[String]) -> Figures {
    let mut problems = Vec::new();
    for flow in &decoded.flows {
        if let Some(error) = &flow.error {
            problems.push(format!(
                "{:?} flow from port {}: {error}",
                flow.role, flow.client_port
            ));
        }
        if flow.other_messages.contains_key(&22) {
            problems.push(format!(
                "{:?} flow from port {} carries aggregate messages, which are not counted",
                flow.role, flow.client_port
            ));
        }
    }
    let publishers: Vec<&Flow> = decoded
        .flows
        .iter()
        .filter(|f| f.role == Role::Publisher && !f.media.is_empty())
        .collect();
    if publishers.len() != 1 {
        problems.push(format!(
            "expected one publisher connection with media, found {}",
            publishers.len()
        ));
    }
    let empty = Vec::new();
    let published_media: &Vec<MediaMessage> = publishers.first().map_or(&empty, |f| &f.media);
    // Every frame, to match against; counts use only those before the window's end.
    let published_video: Vec<&MediaMessage> = published_media
        .iter()
        .filter(|m| m.kind.is_video_frame())
        .collect();
    let published_audio: Vec<&MediaMessage> = published_media
        .iter()
        .filter(|m| m.kind.is_audio_frame())
        .collect();
    let first_keyframe = published_video
        .iter()
        .position(|m| m.kind == Kind::VideoKey);
    let first_keyframe_ns = first_keyframe.map(|i| published_video[i].time_ns);
    let published_bytes_in_window: u64 = published_media
        .iter()
        .filter(|m| window.contains(m.time_ns))
        .map(|m| u64::from(m.len))
        .sum();
    let frames_in_window =
        |list: &[&MediaMessage]| list.iter().filter(|m| window.contains(m.time_ns)).count() as u64;
    let counted = |m: &&&MediaMessage| m.time_ns <= window.end_ns;
    let published = Published {
        frames: (published_video.iter().filter(counted).count()
            + published_audio.iter().filter(counted).count()) as u64,
        frames_in_window: frames_in_window(&published_video) + frames_in_window(&published_audio),
        video_frames_in_window: frames_in_window(&published_video),
        mbit_per_s: published_bytes_in_window as f64 * 8.0 / 1e6 / window.secs(),
    };

    // Sink connections by stream name, in capture order.
    let mut by_name: BTreeMap<&str, Vec<&Flow>> = BTreeMap::new();
    for flow in decoded.flows.iter().filter(|f| f.role == Role::Sink) {
        match flow.stream.as_deref() {
            Some(name) => by_name.entry(name).or_default().push(flow),
            None if flow.media.is_empty() => {}
            None => problems.push(format!(
                "sink flow from port {} has media but no publish command",
                flow.client_port
            )),
        }
    }
    for name in by_name.keys() {
        if !sink_names.iter().any(|n| n == name) {
            problems.push(format!("unexpected sink stream {name:?}"));
        }
    }

    let mut sinks = Vec::new();
    let mut all_latencies: Vec<u64> = Vec::new();
    let mut keyframe_latencies: Vec<u64> = Vec::new();
    let mut slowest: Vec<SlowFrame> = Vec::new();
    let mut delivered_bytes: u64 = 0;
    for name in sink_names {
        let flows = by_name.get(name.as_str()).cloned().unwrap_or_default();
        let mut media: Vec<MediaMessage> =
            flows.iter().flat_map(|f| f.media.iter().copied()).collect();
        media.sort_by_key(|m| m.time_ns);
        delivered_bytes += media
            .iter()
            .filter(|m| window.contains(m.time_ns))
            .map(|m| u64::from(m.len))
            .sum::<u64>();
        let sink_video: Vec<&MediaMessage> =
            media.iter().filter(|m| m.kind.is_video_frame()).collect();
        let sink_audio: Vec<&MediaMessage> =
            media.iter().filter(|m| m.kind.is_audio_frame()).collect();
        let video = match_in_order(&published_video, &sink_video);
        let audio = match_in_order(&published_audio, &sink_audio);

        let mut latencies: Vec<u64> = video
            .pairs
            .iter()
            .filter(|(p, _)| window.contains(published_video[*p].time_ns))
            .map(|&(p, s)| {
                sink_video[s]
                    .time_ns
                    .saturating_sub(published_video[p].time_ns)
            })
            .collect();
        latencies.sort_unstable();
        all_latencies.extend_from_slice(&latencies);
        for &(p, s) in &video.pairs {
            let published_frame = published_video[p];
            if !window.contains(published_frame.time_ns) {
                continue;
            }
            let latency = sink_video[s]
                .time_ns
                .saturating_sub(published_frame.time_ns);
            if published_frame.kind == Kind::VideoKey {
                keyframe_latencies.push(latency);
            }
            slowest.push(SlowFrame {
                latency_ms: ns_to_ms(latency),
                sink: name.clone(),
                len: published_frame.len,
                keyframe: published_frame.kind == Kind::VideoKey,
                published_at_ms: ns_to_ms(published_frame.time_ns - window.start_ns),
            });
        }
        slowest.sort_by(|a, b| b.latency_ms.total_cmp(&a.latency_ms));
        slowest.truncate(SLOWEST);

        let matched_all = video
            .pairs
            .iter()
            .filter(|(p, _)| published_video[*p].time_ns <= window.end_ns)
            .count()
            + audio
                .pairs
                .iter()
                .filter(|(p, _)| published_audio[*p].time_ns <= window.end_ns)
                .count();
        let matched_window = video
            .pairs
            .iter()
            .filter(|(p, _)| window.contains(published_video[*p].time_ns))
            .count()
            + audio
                .pairs
                .iter()
                .filter(|(p, _)| window.contains(published_audio[*p].time_ns))
                .count();
        let first_frame_ms = match (sink_video.first(), first_keyframe_ns) {
            (Some(first), Some(key)) => Some(ms(first.time_ns as i64 - key as i64)),
            _ => None,
        };
        let connect_ms = match (
            flows.iter().filter_map(|f| f.syn_ns).min(),
            first_keyframe_ns,
        ) {
            (Some(syn), Some(key)) => Some(ms(syn as i64 - key as i64)),
            _ => None,
        };
        sinks.push(SinkFigures {
            name: name.clone(),
            connections: flows.len(),
            connect_ms,
            delivered_all: ratio(matched_all as u64, published.frames),
            delivered_window: ratio(matched_window as u64, published.frames_in_window),
            unmatched: video.unmatched + audio.unmatched,
            first_frame_ms,
            starts_at_first_keyframe: video
                .pairs
                .first()
                .is_some_and(|&(p, s)| s == 0 && Some(p) == first_keyframe),
            latency_p50_ms: percentile(&latencies, 0.50).map(ns_to_ms),
            latency_p99_ms: percentile(&latencies, 0.99).map(ns_to_ms),
            latency_max_ms: latencies.last().copied().map(ns_to_ms),
        });
    }
    for sink in &sinks {
        if sink.unmatched > 0 {
            problems.push(format!(
                "sink {} received {} frames that match no published frame in order",
                sink.name, sink.unmatched
            ));
        }
    }
    all_latencies.sort_unstable();
    keyframe_latencies.sort_unstable();
    let mut first_frames: Vec<f64> = sinks.iter().filter_map(|s| s.first_frame_ms).collect();
    first_frames.sort_by(f64::total_cmp);
    let first_frame_max_ms = if first_frames.len() == sinks.len() {
        first_frames.last().copied()
    } else {
        // A sink that never got a frame has no finite first-frame time.
        None
    };
    Figures {
        delivered_all_min: sinks.iter().map(|s| s.delivered_all).fold(1.0, f64::min),
        delivered_window_min: sinks.iter().map(|s| s.delivered_window).fold(1.0, f64::min),
        first_frame_median_ms: median_f64(&first_frames),
        first_frame_max_ms,
        latency_p50_ms: percentile(&all_latencies, 0.50).map(ns_to_ms),
        latency_p99_ms: percentile(&all_latencies, 0.99).map(ns_to_ms),
        latency_max_ms: all_latencies.last().copied().map(ns_to_ms),
        latency_pairs: all_latencies.len(),
        keyframe_latency_p50_ms: percentile(&keyframe_latencies, 0.50).map(ns_to_ms),
        keyframe_latency_max_ms: keyframe_latencies.last().copied().map(ns_to_ms),
        slowest,
        delivered_mbit: delivered_bytes as f64 * 8.0 / 1e6,
        published,
        sinks,
        problems,
    }
}

struct Matches {
    /// (published index, sink index).
    pairs: Vec<(usize, usize)>,
    unmatched: u64,
}

/// Pairs each sink message with the next published message of the same payload,
/// keeping order: skipped published messages are losses, a sink message with no
/// later published twin is unmatched.
fn match_in_order(published: &[&MediaMessage], sink: &[&MediaMessage]) -> Matches {
    let mut pairs = Vec::with_capacity(sink.len());
    let mut unmatched = 0;
    let mut next = 0;
    for (s, message) in sink.iter().enumerate() {
        match published[next..]
            .iter()
            .position(|p| p.key() == message.key())
        {
            Some(found) => {
                pairs.push((next + found, s));
                next += found + 1;
            }
            None => unmatched += 1,
        }
    }
    Matches { pairs, unmatched }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Median of sorted values (mean of the middle two for an even count).
pub fn median_f64(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn ns_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(time_ns: u64, len: u32) -> MediaMessage {
        MediaMessage {
            time_ns,
            kind: Kind::VideoInter,
            len,
            hash: u64::from(len) * 31,
        }
    }

    #[test]
    fn matching_skips_lost_frames_and_keeps_order() {
        let published = [
            message(0, 10),
            message(1, 20),
            message(2, 30),
            message(3, 20),
        ];
        let sink = [message(5, 20), message(6, 20), message(7, 99)];
        let p: Vec<&MediaMessage> = published.iter().collect();
        let s: Vec<&MediaMessage> = sink.iter().collect();
        let matches = match_in_order(&p, &s);
        assert_eq!(matches.pairs, vec![(1, 0), (3, 1)]);
        assert_eq!(matches.unmatched, 1);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), Some(50));
        assert_eq!(percentile(&values, 0.99), Some(99));
        assert_eq!(percentile(&[7], 0.99), Some(7));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
