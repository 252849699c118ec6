//! The GOP cache: every packet since the last keyframe, so that a subscriber that
//! joins mid-stream starts decoding at once instead of waiting for the next keyframe.

use std::collections::VecDeque;

use super::packet::Packet;

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
        }
    }

    /// Adds a media or data packet (not a sequence header) in publish order.
    pub fn push(&mut self, packet: &Packet) {
        if packet.keyframe {
            self.clear();
            self.overflowed = false;
        } else if self.packets.is_empty() || self.overflowed {
            // No keyframe yet in this GOP: a joiner could not decode these anyway.
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

    /// Forgets everything (the publisher left).
    pub fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
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
            config: false,
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
