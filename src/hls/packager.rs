//! One rendition's LL-HLS packaging, without I/O: a stream's packets in, a
//! window of CMAF segments made of parts out (see [`crate::hls`] for the rules).
//!
//! Timing follows the decode timestamps, never the wall clock, so the same input
//! always gives the same segments (what the property tests rely on). The stream's
//! driving track (video, or audio for a stream without video) decides the cuts:
//! - a part ends when the next frame would take it past the part target (the
//!   frame interval so far predicts when the next frame comes; when a frame comes
//!   later than predicted, the part ends at the frame before, so no part is ever
//!   longer than the target);
//! - a segment ends at a keyframe once it is at least three quarters of the
//!   segment target long, or, when keyframes come too seldom, at the part boundary
//!   that would otherwise take it past the playlist's target duration (that
//!   segment then does not start with a keyframe, and its first part is not marked
//!   independent).

use std::collections::VecDeque;

use bytes::Bytes;

use super::daterange::DateRanges;
use crate::fmp4::{Fmp4Error, Fmp4Muxer};
use crate::hub::{Packet, PacketKind};
use crate::rtmp::cue::CuePoint;

/// How a rendition is cut; fixed for a stream's life, so that its playlist's
/// target durations never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The segment target (ms): segments end at the first keyframe after 3/4 of it.
    pub segment_ms: u64,
    /// The part target (ms): `EXT-X-PART-INF:PART-TARGET`, no part longer.
    pub part_ms: u64,
    /// Complete segments kept (and listed) besides the one being made.
    pub window: usize,
}

impl Timing {
    /// `EXT-X-TARGETDURATION` (s): the segment target plus one second, for
    /// keyframes that come a little late; a segment is forced to end before its
    /// rounded duration passes it.
    pub fn target_duration_secs(&self) -> u64 {
        self.segment_ms.div_ceil(1000) + 1
    }

    /// The longest a segment may get: under half a second past the target
    /// duration, so that its duration rounds to at most the target.
    fn max_segment_ms(&self) -> u64 {
        self.target_duration_secs() * 1000 + 400
    }
}

/// One part: a CMAF chunk (`moof` + `mdat`).
#[derive(Debug, Clone)]
pub struct Part {
    /// Its duration (ms) on the driving track.
    pub duration_ms: u64,
    /// Whether it starts with a keyframe (`INDEPENDENT=YES`).
    pub independent: bool,
    /// The chunk, shared with every request for it.
    pub data: Bytes,
}

/// A segment: its parts, in order; complete once the next one started.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its media sequence number.
    pub msn: u64,
    /// The decode time (ms) it starts at.
    pub start_ms: u64,
    /// Its parts so far.
    pub parts: Vec<Part>,
    /// Which initialization segment it needs.
    pub init: u32,
    /// Whether it follows a change of decoder configuration
    /// (`EXT-X-DISCONTINUITY`).
    pub discontinuity: bool,
}

impl Segment {
    /// Its duration (ms): its parts'.
    pub fn duration_ms(&self) -> u64 {
        self.parts.iter().map(|p| p.duration_ms).sum()
    }

    /// Its bytes, as the chunks they are (a response body, not a copy).
    pub fn chunks(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.parts.iter().map(|p| p.data.clone())
    }
}

/// The muxer of the current initialization segment and where its parts stand.
#[derive(Debug)]
struct Cutting {
    muxer: Fmp4Muxer,
    video_config: Option<Bytes>,
    audio_config: Option<Bytes>,
    /// Whether video drives the cuts (the stream has a video track).
    video: bool,
    /// The driving track's last frame time and the interval before it.
    last_dts: Option<u64>,
    last_interval: u64,
    /// Whether the driving track's last frame was a keyframe.
    last_key: bool,
    part_start: u64,
    part_independent: bool,
}

/// A rendition's packager and the window it keeps.
#[derive(Debug)]
pub struct Packager {
    timing: Timing,
    /// Initialization segments by number; those no kept segment needs are dropped.
    inits: VecDeque<(u32, Bytes)>,
    /// Complete segments, oldest first, then the one being made (last).
    segments: VecDeque<Segment>,
    cutting: Option<Cutting>,
    /// Discontinuities that left the window (`EXT-X-DISCONTINUITY-SEQUENCE`).
    discontinuity_sequence: u64,
    next_msn: u64,
    ended: bool,
    /// The latest sequence headers, for the next initialization segment.
    video_header: Option<Packet>,
    audio_header: Option<Packet>,
    /// An audio codec fMP4 here does not carry, once frames of it arrived:
    /// the rendition is video only.
    left_out: Option<crate::flv::AudioCodec>,
    /// The cue points in the window (`EXT-X-DATERANGE`).
    dateranges: DateRanges,
}

impl Packager {
    /// An empty packager cutting by `timing`.
    pub fn new(timing: Timing) -> Self {
        Self {
            timing,
            inits: VecDeque::new(),
            segments: VecDeque::new(),
            cutting: None,
            discontinuity_sequence: 0,
            next_msn: 0,
            ended: false,
            video_header: None,
            audio_header: None,
            left_out: None,
            dateranges: DateRanges::default(),
        }
    }

    /// The audio codec left out of this rendition (one fMP4 does not carry,
    /// such as MP3), once its frames arrived.
    pub fn left_out(&self) -> Option<crate::flv::AudioCodec> {
        self.left_out
    }

    /// How it cuts.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Takes one packet stamped `dts` (ms, on one monotonic timeline). Returns
    /// whether the window changed (a part was added); an error means the stream
    /// cannot be packaged (a codec fMP4 here does not carry).
    pub fn push(&mut self, packet: &Packet, dts: u64) -> Result<bool, Fmp4Error> {
        if self.ended {
            return Ok(false);
        }
        if packet.sequence_header {
            let slot = match packet.kind {
                PacketKind::Video => &mut self.video_header,
                PacketKind::Audio => &mut self.audio_header,
                _ => return Ok(false),
            };
            *slot = Some(packet.clone());
            return Ok(false);
        }
        let is_video = match packet.kind {
            PacketKind::Video => true,
            PacketKind::Audio => false,
            PacketKind::Data => {
                if let Some(cue) = CuePoint::decode(&packet.payload) {
                    self.dateranges.add(dts, cue);
                }
                return Ok(false);
            }
            PacketKind::Metadata => return Ok(false),
        };
        if !is_video && self.audio_header.is_none() && self.left_out.is_none() {
            // Audio without a configuration: a codec that has none (MP3,
            // Speex...), which no track here describes.
            self.left_out = crate::flv::parse_audio(&packet.payload)
                .ok()
                .map(|t| t.codec);
        }
        let mut changed = false;
        if self.config_changed() {
            changed = self.close_muxer()?;
        }
        if self.cutting.is_none() && !self.open_muxer(is_video, packet.keyframe)? {
            return Ok(changed);
        }
        let cutting = self.cutting.as_mut().expect("opened above");
        if is_video {
            let key = cutting.muxer.push_video(dts, &packet.payload);
            if cutting.video {
                changed |= self.driving_frame(dts, key)?;
            }
        } else {
            cutting.muxer.push_audio(dts, &packet.payload);
            if !cutting.video {
                changed |= self.driving_frame(dts, true)?;
            }
        }
        Ok(changed)
    }

    /// The stream ended: the last part and segment are closed, and the playlist
    /// says so (`EXT-X-ENDLIST`). Returns whether the window changed.
    pub fn end(&mut self) -> Result<bool, Fmp4Error> {
        let changed = self.close_muxer()?;
        self.ended = true;
        Ok(changed)
    }

    /// The cue points in the window.
    pub fn dateranges(&self) -> &DateRanges {
        &self.dateranges
    }

    /// Whether the stream ended.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// The kept segments, oldest first; the last may be incomplete (see
    /// [`Packager::complete`]).
    pub fn segments(&self) -> &VecDeque<Segment> {
        &self.segments
    }

    /// How many of [`segments`](Self::segments) are complete: all but the last
    /// while the stream goes on, all once it ended.
    pub fn complete(&self) -> usize {
        if self.ended || self.cutting.is_none() {
            self.segments.len()
        } else {
            self.segments.len().saturating_sub(1)
        }
    }

    /// Initialization segment number `n`, while a kept segment needs it.
    pub fn init(&self, n: u32) -> Option<&Bytes> {
        self.inits.iter().find(|(i, _)| *i == n).map(|(_, b)| b)
    }

    /// `EXT-X-DISCONTINUITY-SEQUENCE`.
    pub fn discontinuity_sequence(&self) -> u64 {
        self.discontinuity_sequence
    }

    /// Where the live edge is: the segment being made (or the next, after a
    /// complete one) and how many of its parts exist.
    pub fn edge(&self) -> (u64, usize) {
        match self.segments.back() {
            Some(last) if self.complete() < self.segments.len() => (last.msn, last.parts.len()),
            _ => (self.next_msn, 0),
        }
    }

    /// The sequence headers (FLV payloads) of the current initialization
    /// segment, or the latest ones before it starts.
    pub fn configs(&self) -> (Option<&Bytes>, Option<&Bytes>) {
        match &self.cutting {
            Some(c) => (c.video_config.as_ref(), c.audio_config.as_ref()),
            None => (
                self.video_header.as_ref().map(|p| &p.payload),
                self.audio_header.as_ref().map(|p| &p.payload),
            ),
        }
    }

    /// The highest bit rate of the kept complete segments (or, before one is
    /// complete, of the parts so far): `BANDWIDTH` in a master playlist.
    pub fn peak_bps(&self) -> Option<u64> {
        let rate = |bytes: usize, ms: u64| (ms > 0).then(|| bytes as u64 * 8 * 1000 / ms);
        let complete = self.segments.iter().take(self.complete());
        let peak = complete
            .filter_map(|s| rate(s.parts.iter().map(|p| p.data.len()).sum(), s.duration_ms()))
            .max();
        peak.or_else(|| {
            let parts = self.segments.back()?;
            rate(
                parts.parts.iter().map(|p| p.data.len()).sum(),
                parts.duration_ms(),
            )
        })
    }

    /// Bytes it holds: initialization segments and parts.
    pub fn held_bytes(&self) -> usize {
        let inits: usize = self.inits.iter().map(|(_, b)| b.len()).sum();
        let parts: usize = self
            .segments
            .iter()
            .flat_map(|s| &s.parts)
            .map(|p| p.data.len())
            .sum();
        inits + parts
    }

    /// The last part made: its segment's media sequence number and its index.
    pub fn last_part(&self) -> Option<(u64, usize)> {
        self.segments
            .iter()
            .rev()
            .find(|s| !s.parts.is_empty())
            .map(|s| (s.msn, s.parts.len() - 1))
    }

    /// Segment `msn`, while kept.
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments
            .get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    fn config_changed(&self) -> bool {
        let Some(cutting) = &self.cutting else {
            return false;
        };
        let differs = |now: &Option<Packet>, then: &Option<Bytes>| {
            now.as_ref().map(|p| &p.payload) != then.as_ref()
        };
        differs(&self.video_header, &cutting.video_config)
            || differs(&self.audio_header, &cutting.audio_config)
    }

    /// Starts a muxer (and a segment) at this frame if it can start one: a
    /// stream with video starts at a keyframe.
    fn open_muxer(&mut self, is_video: bool, keyframe: bool) -> Result<bool, Fmp4Error> {
        let has_video = self.video_header.is_some();
        if has_video && !(is_video && keyframe) {
            return Ok(false);
        }
        let video_config = self.video_header.as_ref().map(|p| p.payload.clone());
        let audio_config = self.audio_header.as_ref().map(|p| p.payload.clone());
        let (muxer, init) = Fmp4Muxer::new(video_config.as_deref(), audio_config.as_deref())?;
        let number = self.inits.back().map_or(0, |(n, _)| n + 1);
        self.inits.push_back((number, Bytes::from(init)));
        self.cutting = Some(Cutting {
            muxer,
            video_config,
            audio_config,
            video: has_video,
            last_dts: None,
            last_interval: 0,
            last_key: false,
            part_start: 0,
            part_independent: true,
        });
        self.next_segment(None, number > 0);
        Ok(true)
    }

    /// Closes the muxer: its last samples as the last part of the last segment.
    fn close_muxer(&mut self) -> Result<bool, Fmp4Error> {
        let Some(mut cutting) = self.cutting.take() else {
            return Ok(false);
        };
        let Some(data) = cutting.muxer.finish()? else {
            return Ok(false);
        };
        let duration = cutting.last_dts.map_or(0, |last| {
            last.saturating_sub(cutting.part_start) + cutting.last_interval
        });
        self.add_part(duration, cutting.part_independent, data);
        Ok(true)
    }

    /// A frame of the driving track, already in the muxer: cuts a part, and a
    /// segment, where the rules say.
    fn driving_frame(&mut self, dts: u64, key: bool) -> Result<bool, Fmp4Error> {
        let timing = self.timing;
        let cutting = self
            .cutting
            .as_mut()
            .expect("a frame after the muxer opened");
        let Some(previous) = cutting.last_dts.replace(dts) else {
            cutting.part_start = dts;
            cutting.last_key = key;
            self.segments
                .back_mut()
                .expect("opened with a segment")
                .start_ms = dts;
            return Ok(false);
        };
        let interval = dts.saturating_sub(previous);
        let previous_key = std::mem::replace(&mut cutting.last_key, key);
        cutting.last_interval = interval;
        let mut changed = false;
        // Later than predicted: the part ends at the frame before.
        if dts.saturating_sub(cutting.part_start) > timing.part_ms && previous > cutting.part_start
        {
            changed |= self.cut_part(previous, previous_key)?;
        }
        let segment_start = self.segments.back().map_or(dts, |s| s.start_ms);
        let cutting = self.cutting.as_mut().expect("still open");
        let segment_long = dts.saturating_sub(segment_start) >= timing.segment_ms * 3 / 4;
        if key && segment_long {
            changed |= self.cut_part(dts, true)?;
            if self.segments.back().is_some_and(|s| s.start_ms != dts) {
                self.next_segment(Some(dts), false);
            }
        } else if dts.saturating_sub(cutting.part_start) + interval > timing.part_ms {
            changed |= self.cut_part(dts, key)?;
        }
        Ok(changed)
    }

    /// Ends the current part at `at` (the next starts there, independent when
    /// `next_key`); at a boundary that keeps the segment from growing past the
    /// target duration, the segment ends there too.
    fn cut_part(&mut self, at: u64, next_key: bool) -> Result<bool, Fmp4Error> {
        let cutting = self.cutting.as_mut().expect("a cut while open");
        let Some(data) = cutting.muxer.fragment_until(at)? else {
            return Ok(false);
        };
        let duration = at.saturating_sub(cutting.part_start);
        let independent = std::mem::replace(&mut cutting.part_independent, next_key);
        cutting.part_start = at;
        self.add_part(duration, independent, data);
        let timing = self.timing;
        let segment_start = self.segments.back().map_or(at, |s| s.start_ms);
        if at.saturating_sub(segment_start) + timing.part_ms > timing.max_segment_ms() {
            self.next_segment(Some(at), false);
        }
        Ok(true)
    }

    fn add_part(&mut self, duration_ms: u64, independent: bool, data: Vec<u8>) {
        if let Some(segment) = self.segments.back_mut() {
            segment.parts.push(Part {
                duration_ms,
                independent,
                data: Bytes::from(data),
            });
        }
    }

    /// Starts the next segment (at `start`, when known), dropping the oldest
    /// beyond the window and the initialization segments no kept one needs.
    fn next_segment(&mut self, start: Option<u64>, discontinuity: bool) {
        // A segment without parts (a muxer that closed before its first cut) is
        // reused rather than listed empty.
        if let Some(last) = self.segments.back_mut()
            && last.parts.is_empty()
        {
            last.start_ms = start.unwrap_or(last.start_ms);
            last.init = self.inits.back().map_or(0, |(n, _)| *n);
            last.discontinuity |= discontinuity;
            return;
        }
        let init = self.inits.back().map_or(0, |(n, _)| *n);
        self.segments.push_back(Segment {
            msn: self.next_msn,
            start_ms: start.unwrap_or(0),
            parts: Vec::new(),
            init,
            discontinuity,
        });
        self.next_msn += 1;
        while self.segments.len() > self.timing.window + 1 {
            if let Some(gone) = self.segments.pop_front()
                && gone.discontinuity
            {
                self.discontinuity_sequence += 1;
            }
        }
        if let Some(front) = self.segments.front() {
            self.dateranges.keep_from(front.start_ms);
        }
        let oldest = self.segments.front().map_or(init, |s| s.init);
        while self.inits.front().is_some_and(|(n, _)| *n < oldest) {
            self.inits.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;
