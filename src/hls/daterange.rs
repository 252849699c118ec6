//! Cue points in a playlist: each `onCuePoint` the stream carries becomes an
//! `EXT-X-DATERANGE` (RFC 8216 4.4.5.1) starting at the cue's wall-clock time,
//! written before the first part of the segment it falls in, and kept while
//! that segment is in the window.
//!
//! The cue's name and type and its parameters become client attributes
//! (`X-CUE-NAME`, `X-CUE-TYPE`, `X-<PARAMETER>`), and a numeric `duration`
//! parameter the range's `DURATION`, so that a player's ad logic reads them as
//! it reads a SCTE-35 ad marker's.

use std::collections::VecDeque;
use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::rtmp::cue::{CuePoint, CueValue};

/// The most cues a window keeps: at the API's cue budget, more than a window's
/// worth; a publisher that sends cues faster loses the oldest from playlists.
const MAX_KEPT: usize = 64;

/// One cue on a rendition's decode timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct DateRange {
    /// Unique within the packager's life (`ID="cue-N"`).
    pub id: u64,
    /// Its decode time (ms).
    pub start_ms: u64,
    /// What it carries.
    pub cue: CuePoint,
}

/// The cues of a window, oldest first.
#[derive(Debug, Default)]
pub struct DateRanges {
    ranges: VecDeque<DateRange>,
    next_id: u64,
}

impl DateRanges {
    /// Keeps `cue`, at decode time `start_ms`.
    pub fn add(&mut self, start_ms: u64, cue: CuePoint) {
        if self.ranges.len() == MAX_KEPT {
            self.ranges.pop_front();
        }
        self.ranges.push_back(DateRange {
            id: self.next_id,
            start_ms,
            cue,
        });
        self.next_id += 1;
    }

    /// Forgets the cues that start before `oldest_ms` (the window's first
    /// segment).
    pub fn keep_from(&mut self, oldest_ms: u64) {
        while self.ranges.front().is_some_and(|r| r.start_ms < oldest_ms) {
            self.ranges.pop_front();
        }
    }

    /// The cues starting at or after `from` and before `until` (none: no end).
    pub fn starting_in(&self, from: u64, until: Option<u64>) -> impl Iterator<Item = &DateRange> {
        self.ranges
            .iter()
            .filter(move |r| r.start_ms >= from && until.is_none_or(|u| r.start_ms < u))
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// Writes `range` as an `EXT-X-DATERANGE` line; `anchor` is the wall-clock time
/// of decode time 0 (the playlist's `EXT-X-PROGRAM-DATE-TIME` follows it too).
pub fn write_tag(out: &mut String, range: &DateRange, anchor: SystemTime) {
    let start = anchor + Duration::from_millis(range.start_ms);
    let cue = &range.cue;
    let _ = write!(
        out,
        "#EXT-X-DATERANGE:ID=\"cue-{}\",START-DATE=\"{}\"",
        range.id,
        humantime::format_rfc3339_millis(start)
    );
    if let Some(duration) = cue.number("duration").filter(|d| *d >= 0.0) {
        let _ = write!(out, ",DURATION={duration:.3}");
    }
    let _ = write!(
        out,
        ",X-CUE-NAME=\"{}\",X-CUE-TYPE=\"{}\"",
        quoted(cue.name()),
        cue.kind().as_str()
    );
    for (key, value) in cue.parameters() {
        let Some(name) = attribute_name(key) else {
            continue;
        };
        let _ = match value {
            CueValue::Number(n) => write!(out, ",X-{name}={n}"),
            CueValue::Text(text) => write!(out, ",X-{name}=\"{}\"", quoted(text)),
            CueValue::Bool(b) => write!(out, ",X-{name}=\"{b}\""),
        };
    }
    out.push('\n');
}

/// A parameter's name as an attribute name (`[A-Z0-9-]`): `ad_id` is `AD-ID`.
/// `None` for one that would clash with the range's own attributes or says
/// nothing.
fn attribute_name(key: &str) -> Option<String> {
    let name: String = key
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' => c,
            _ => '-',
        })
        .collect();
    let says_something = name.chars().any(|c| c != '-');
    (says_something && !name.starts_with("CUE-")).then_some(name)
}

/// Text as a quoted-string may hold it: no double quote, CR or LF.
fn quoted(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '"' | '\r' | '\n'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::cue::CueKind;

    #[test]
    fn a_cue_is_a_daterange_at_its_wall_clock_time() {
        let cue = CuePoint::new(
            "ad-break",
            CueKind::Event,
            vec![
                ("duration".into(), CueValue::Number(30.0)),
                ("ad_id".into(), CueValue::Text("a\"1\n".into())),
                ("skippable".into(), CueValue::Bool(false)),
            ],
        )
        .unwrap();
        let mut ranges = DateRanges::default();
        ranges.add(2_500, cue);
        let anchor = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut out = String::new();
        write_tag(
            &mut out,
            ranges.starting_in(0, None).next().unwrap(),
            anchor,
        );
        assert_eq!(
            out,
            "#EXT-X-DATERANGE:ID=\"cue-0\",START-DATE=\"2027-01-15T08:00:02.500Z\",\
             DURATION=30.000,X-CUE-NAME=\"ad-break\",X-CUE-TYPE=\"event\",\
             X-DURATION=30,X-AD-ID=\"a1\",X-SKIPPABLE=\"false\"\n"
        );
    }

    #[test]
    fn cues_leave_with_their_segment_and_are_bounded() {
        let cue = CuePoint::new("c", CueKind::Event, vec![]).unwrap();
        let mut ranges = DateRanges::default();
        for at in [100, 200, 300] {
            ranges.add(at, cue.clone());
        }
        assert_eq!(ranges.starting_in(150, Some(300)).count(), 1);
        ranges.keep_from(200);
        assert_eq!(ranges.len(), 2);
        for at in 0..100 {
            ranges.add(1_000 + at, cue.clone());
        }
        assert_eq!(ranges.len(), MAX_KEPT);
        assert_eq!(
            ranges.starting_in(0, None).next().unwrap().id,
            100 + 2 - 64 + 1
        );
    }
}
