//! The GOP cache: every packet since the last keyframe, so that a subscriber that
//! joins mid-stream starts decoding at once instead of waiting for the next keyframe.
//!
//! Encoders do not always send audio and video in timestamp order: librtmp-based
//! ones can send audio a second ahead of the pictures it belongs with. Audio that
//! arrived before a keyframe but is stamped at or after it belongs to that keyframe's
//! GOP, so the cache keeps the latest audio frames aside and, on a video keyframe,
//! puts those stamped from the keyframe on (within [`AUDIO_LEAD_MAX_MS`]) right
//! after it.

use std::collections::VecDeque;

use super::packet::{Packet, PacketKind};

/// Audio frames remembered for the next keyframe: more than two seconds of AAC at
/// 48 kHz (a frame every 21.3 ms), which covers the send-order skew seen in the wild.
pub const RECENT_AUDIO_MAX: usize = 128;

/// The furthest ahead of a keyframe an audio frame may be stamped and still be taken
/// as sent early for that keyframe's GOP.
pub const AUDIO_LEAD_MAX_MS: u32 = 5_000;

/// Whether `audio` is stamped at or after `keyframe` (32-bit serial arithmetic), by
/// at most [`AUDIO_LEAD_MAX_MS`].
pub fn belongs_after(audio: &Packet, keyframe: &Packet) -> bool {
    audio.timestamp.wrapping_sub(keyframe.timestamp) <= AUDIO_LEAD_MAX_MS
}

/// Whether `packet` is an audio frame that may belong to a later keyframe's GOP.
pub fn is_audio_frame(packet: &Packet) -> bool {
    packet.kind == PacketKind::Audio && !packet.sequence_header && !packet.keyframe
}

/// A bounded cache of the current group of pictures.
#[derive(Debug)]
pub struct GopCache {
    packets: VecDeque<Packet>,
    bytes: usize,
    max_bytes: usize,
    max_packets: usize,
    /// The current GOP outgrew the bounds: nothing is cached until the next keyframe,
    /// because a GOP with a hole would give joiners a broken picture.
    overflowed: bool,
    /// The latest audio frames, whichever GOP they went to (see the module docs).
    recent_audio: VecDeque<Packet>,
}

impl GopCache {
    /// A cache holding at most `max_bytes` of payload in `max_packets` packets.
    pub fn new(max_bytes: usize, max_packets: usize) -> Self {
        Self {
            packets: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_packets,
            overflowed: false,
            recent_audio: VecDeque::new(),
        }
    }

    /// Adds a media or data packet (not a sequence header) in publish order.
    pub fn push(&mut self, packet: &Packet) {
        if is_audio_frame(packet) {
            if self.recent_audio.len() == RECENT_AUDIO_MAX {
                self.recent_audio.pop_front();
            }
            self.recent_audio.push_back(packet.clone());
        }
        if packet.keyframe {
            self.clear();
            self.overflowed = false;
            self.add(packet);
            if packet.kind == PacketKind::Video {
                let early: Vec<Packet> = self
                    .recent_audio
                    .iter()
                    .filter(|audio| belongs_after(audio, packet))
                    .cloned()
                    .collect();
                for audio in &early {
                    self.add(audio);
                }
            }
            return;
        }
        if self.packets.is_empty() || self.overflowed {
            // No keyframe yet in this GOP: a joiner could not decode these anyway.
            return;
        }
        self.add(packet);
    }

    /// Appends to the current GOP within the bounds; past them the GOP is dropped.
    fn add(&mut self, packet: &Packet) {
        if self.overflowed {
            return;
        }
        if self.bytes + packet.len() > self.max_bytes || self.packets.len() >= self.max_packets {
            self.clear();
            self.overflowed = true;
            return;
        }
        self.bytes += packet.len();
        self.packets.push_back(packet.clone());
    }

    /// The cached packets, starting with a keyframe (or empty).
    pub fn packets(&self) -> impl ExactSizeIterator<Item = &Packet> {
        self.packets.iter()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets the current GOP.
    pub fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
    }

    /// Forgets everything, remembered audio included (the publisher left).
    pub fn reset(&mut self) {
        self.clear();
        self.recent_audio.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::packet::PacketKind;
    use bytes::Bytes;

    fn video(ts: u32, keyframe: bool, len: usize) -> Packet {
        Packet {
            kind: PacketKind::Video,
            timestamp: ts,
            payload: Bytes::from(vec![0u8; len]),
            keyframe,
            sequence_header: false,
        }
    }

    #[test]
    fn starts_at_the_last_keyframe() {
        let mut gop = GopCache::new(1 << 20, 100);
        gop.push(&video(0, false, 10));
        assert_eq!(gop.packets().len(), 0, "nothing before the first keyframe");
        gop.push(&video(1, true, 10));
        gop.push(&video(2, false, 10));
        gop.push(&video(3, true, 10));
        gop.push(&video(4, false, 10));
        let ts: Vec<u32> = gop.packets().map(|p| p.timestamp).collect();
        assert_eq!(ts, vec![3, 4]);
        assert_eq!(gop.bytes(), 20);
    }

    #[test]
    fn an_oversized_gop_is_dropped_whole_until_the_next_keyframe() {
        let mut gop = GopCache::new(25, 100);
        gop.push(&video(0, true, 10));
        gop.push(&video(1, false, 10));
        gop.push(&video(2, false, 10));
        assert_eq!(gop.packets().len(), 0);
        gop.push(&video(3, false, 1));
        assert_eq!(gop.packets().len(), 0);
        gop.push(&video(4, true, 10));
        assert_eq!(gop.packets().len(), 1);
    }

    fn audio(ts: u32) -> Packet {
        Packet {
            kind: PacketKind::Audio,
            timestamp: ts,
            payload: Bytes::from(vec![1u8; 4]),
            keyframe: false,
            sequence_header: false,
        }
    }

    #[test]
    fn audio_sent_ahead_of_its_keyframe_joins_that_keyframes_gop() {
        let mut gop = GopCache::new(1 << 20, 100);
        // Audio runs a second ahead of video in send order.
        for ts in (0..1000).step_by(100) {
            gop.push(&audio(ts));
        }
        gop.push(&video(0, true, 10));
        gop.push(&audio(1000));
        gop.push(&video(33, false, 10));
        let got: Vec<(PacketKind, u32)> = gop.packets().map(|p| (p.kind, p.timestamp)).collect();
        let mut want = vec![(PacketKind::Video, 0)];
        want.extend((0..1000).step_by(100).map(|ts| (PacketKind::Audio, ts)));
        want.extend([(PacketKind::Audio, 1000), (PacketKind::Video, 33)]);
        assert_eq!(got, want);
        // The next keyframe takes only the audio stamped from it on.
        for ts in (1100..2100).step_by(100) {
            gop.push(&audio(ts));
        }
        gop.push(&video(1500, true, 10));
        let ts: Vec<u32> = gop.packets().map(|p| p.timestamp).collect();
        assert_eq!(ts, vec![1500, 1500, 1600, 1700, 1800, 1900, 2000]);
    }

    #[test]
    fn packet_count_is_bounded_too() {
        let mut gop = GopCache::new(1 << 20, 3);
        gop.push(&video(0, true, 1));
        gop.push(&video(1, false, 1));
        gop.push(&video(2, false, 1));
        gop.push(&video(3, false, 1));
        assert_eq!(gop.packets().len(), 0);
    }
}
