//! When a recording's file is cut, and what the next file starts with: no I/O,
//! so every rule is a unit test.
//!
//! A file is cut before a keyframe (before any audio packet of a stream without
//! video) once it holds `segment_ms` of media or `max_bytes`, never before its
//! first frame. Each new file starts with the stream's latest metadata and
//! sequence headers (a file must decode on its own), stamped with the keyframe's
//! time; every media packet is written to exactly one file, so the files put end
//! to end hold every packet once.

use crate::hub::{Packet, PacketKind};

/// What to do with the next packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Write it to the current file.
    Write,
    /// Close the current file, open the next, write [`Segmenter::preamble`] and
    /// then the packet.
    Cut,
}

/// Tracks one recording's current file.
#[derive(Debug, Default)]
pub struct Segmenter {
    segment_ms: u64,
    max_bytes: u64,
    metadata: Option<Packet>,
    video_config: Option<Packet>,
    audio_config: Option<Packet>,
    /// The time of the current file's first frame.
    started_at: Option<u32>,
    bytes: u64,
}

impl Segmenter {
    /// Cuts after `segment_ms` of media and after `max_bytes` (0: never for each).
    pub fn new(segment_ms: u64, max_bytes: u64) -> Self {
        Self {
            segment_ms,
            max_bytes,
            ..Self::default()
        }
    }

    /// Decides for `packet`, stamped `timestamp` in the recording's timeline,
    /// and remembers what a new file would need from it.
    pub fn next(&mut self, packet: &Packet, timestamp: u32) -> Step {
        let frame =
            matches!(packet.kind, PacketKind::Audio | PacketKind::Video) && !packet.sequence_header;
        let step = match self.started_at {
            Some(start) if frame && packet.keyframe && self.full(start, timestamp) => {
                self.started_at = Some(timestamp);
                self.bytes = 0;
                Step::Cut
            }
            None if frame => {
                self.started_at = Some(timestamp);
                Step::Write
            }
            _ => Step::Write,
        };
        self.remember(packet);
        step
    }

    /// The latest video and audio sequence headers.
    pub fn configs(&self) -> (Option<&Packet>, Option<&Packet>) {
        (self.video_config.as_ref(), self.audio_config.as_ref())
    }

    /// Counts bytes written to the current file.
    pub fn wrote(&mut self, bytes: usize) {
        self.bytes += bytes as u64;
    }

    /// What a new file starts with, before the keyframe that opens it: the
    /// latest metadata, video and audio sequence headers.
    pub fn preamble(&self) -> impl Iterator<Item = &Packet> {
        [&self.metadata, &self.video_config, &self.audio_config]
            .into_iter()
            .flatten()
    }

    fn full(&self, start: u32, now: u32) -> bool {
        let long = self.segment_ms > 0 && u64::from(now.wrapping_sub(start)) >= self.segment_ms;
        let big = self.max_bytes > 0 && self.bytes >= self.max_bytes;
        long || big
    }

    fn remember(&mut self, packet: &Packet) {
        let slot = match packet.kind {
            PacketKind::Metadata => &mut self.metadata,
            PacketKind::Video if packet.sequence_header => &mut self.video_config,
            PacketKind::Audio if packet.sequence_header => &mut self.audio_config,
            _ => return,
        };
        *slot = Some(packet.clone());
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use proptest::prelude::*;

    use super::*;

    fn packet(kind: PacketKind, keyframe: bool, sequence_header: bool) -> Packet {
        Packet {
            kind,
            timestamp: 0,
            payload: Bytes::from_static(b"x"),
            keyframe,
            sequence_header,
        }
    }

    #[test]
    fn cuts_at_the_first_keyframe_after_the_duration_and_replays_the_headers() {
        let mut s = Segmenter::new(2000, 0);
        let meta = packet(PacketKind::Metadata, false, false);
        let vcfg = packet(PacketKind::Video, true, true);
        let acfg = packet(PacketKind::Audio, true, true);
        let key = packet(PacketKind::Video, true, false);
        let inter = packet(PacketKind::Video, false, false);
        for (p, t) in [
            (&meta, 0),
            (&vcfg, 0),
            (&acfg, 0),
            (&key, 0),
            (&inter, 1000),
        ] {
            assert_eq!(s.next(p, t), Step::Write);
        }
        // Long enough, but not a keyframe: no cut.
        assert_eq!(s.next(&inter, 2100), Step::Write);
        assert_eq!(s.next(&key, 2500), Step::Cut);
        let preamble: Vec<_> = s.preamble().map(|p| (p.kind, p.sequence_header)).collect();
        assert_eq!(
            preamble,
            [
                (PacketKind::Metadata, false),
                (PacketKind::Video, true),
                (PacketKind::Audio, true)
            ]
        );
        // The new file counts from its own keyframe.
        assert_eq!(s.next(&key, 4000), Step::Write);
        assert_eq!(s.next(&key, 4500), Step::Cut);
    }

    #[test]
    fn cuts_by_size_and_never_before_the_first_frame() {
        let mut s = Segmenter::new(0, 100);
        let key = packet(PacketKind::Video, true, false);
        assert_eq!(s.next(&key, 0), Step::Write);
        s.wrote(99);
        assert_eq!(s.next(&key, 10), Step::Write);
        s.wrote(1);
        assert_eq!(s.next(&key, 20), Step::Cut);
        let mut never = Segmenter::new(0, 0);
        for t in 0..1000 {
            assert_eq!(never.next(&key, t * 1000), Step::Write);
        }
    }

    proptest! {
        /// Whatever the stream, every cut is at a keyframe that is a frame, each file
        /// but the last reaches the duration, and a file never starts twice at
        /// one packet.
        #[test]
        fn every_cut_is_at_a_keyframe_after_the_duration(
            steps in proptest::collection::vec((0u8..4, 0u32..700), 1..400),
        ) {
            let mut s = Segmenter::new(1000, 0);
            let mut now = 0u32;
            let mut file_start: Option<u32> = None;
            for (kind, gap) in steps {
                now = now.wrapping_add(gap);
                let p = match kind {
                    0 => packet(PacketKind::Video, true, false),
                    1 => packet(PacketKind::Video, false, false),
                    2 => packet(PacketKind::Audio, false, false),
                    _ => packet(PacketKind::Video, true, true),
                };
                let step = s.next(&p, now);
                if step == Step::Cut {
                    prop_assert!(p.keyframe && !p.sequence_header);
                    let start = file_start.expect("a cut after a first frame");
                    prop_assert!(now.wrapping_sub(start) >= 1000);
                    file_start = Some(now);
                } else if file_start.is_none() && !p.sequence_header {
                    file_start = Some(now);
                }
            }
        }
    }
}
