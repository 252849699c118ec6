//! The cut end of an MPEG-TS body, marked as damaged so that its unfinished
//! frames are dropped rather than sent on.
//!
//! A body can end inside a PES packet of each elementary stream: an HTTP push
//! whose client went away, an SRT caller's close (the receiver holds the last
//! moments, up to the latency, until their delivery time, and the close comes
//! first; libsrt's receiver, `srt-live-transmit`, loses them too). ffmpeg's
//! demuxer hands such a packet on at the end as if it were whole: an audio
//! frame cut short, a video frame with its last slices missing (a video PES
//! carries no length, so nothing tells it apart). Sent on, that is a damaged
//! frame at every destination, and to a late player a damaged picture until
//! the next keyframe of the following publisher.
//!
//! [`TsEnd`] watches the packets go by (sans I/O) and, at the end, gives one
//! more TS packet for each stream it saw: no payload, the transport error
//! indicator set, the continuity counter unchanged. ffmpeg marks the PES in
//! progress on that PID corrupt, and the remux (`-fflags +discardcorrupt`,
//! [`super::feed`]) drops it. A stream that did arrive whole loses its last
//! frame per track, which a connection that ends in a drop loses anyway.

/// Size of an MPEG-TS packet.
const PACKET: usize = 188;

/// Every TS packet starts with this byte.
const SYNC: u8 = 0x47;

/// The PIDs remembered: a stream from an encoder has a handful (tables, video,
/// audio, perhaps data); a PID storm must not grow this.
const MAX_PIDS: usize = 16;

/// The null packets' PID, which carries nothing to mark.
const NULL_PID: u16 = 0x1fff;

/// Watches an MPEG-TS byte stream and gives the packets that mark its cut end.
#[derive(Debug, Default)]
pub struct TsEnd {
    /// Bytes of the current packet seen so far.
    offset: usize,
    /// The current packet's first four bytes (its header).
    header: [u8; 4],
    /// PIDs seen, each with the continuity counter of its last packet.
    pids: Vec<(u16, u8)>,
    /// Set once a packet did not start with the sync byte: the stream is not
    /// aligned TS, and nothing is marked (ffmpeg resynchronises on its own).
    lost_sync: bool,
}

impl TsEnd {
    /// Takes note of the next bytes of the stream, which may split packets
    /// anywhere.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.lost_sync {
            if self.offset < self.header.len() {
                let take = (self.header.len() - self.offset).min(bytes.len());
                self.header[self.offset..self.offset + take].copy_from_slice(&bytes[..take]);
                self.offset += take;
                bytes = &bytes[take..];
                if self.offset == self.header.len() {
                    self.header_seen();
                }
            }
            let skip = (PACKET - self.offset).min(bytes.len());
            self.offset += skip;
            bytes = &bytes[skip..];
            if self.offset == PACKET {
                self.offset = 0;
            }
        }
    }

    fn header_seen(&mut self) {
        let [sync, high, low, flags] = self.header;
        if sync != SYNC {
            self.lost_sync = true;
            return;
        }
        let pid = u16::from(high & 0x1f) << 8 | u16::from(low);
        if pid == NULL_PID {
            return;
        }
        let counter = flags & 0x0f;
        if let Some(entry) = self.pids.iter_mut().find(|(seen, _)| *seen == pid) {
            entry.1 = counter;
        } else if self.pids.len() < MAX_PIDS {
            self.pids.push((pid, counter));
        }
    }

    /// The packets that mark the end: for each PID seen, an adaptation field
    /// of stuffing with the transport error indicator set. Empty when the
    /// stream was not aligned TS.
    pub fn closing_packets(&self) -> Vec<u8> {
        if self.lost_sync {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.pids.len() * PACKET);
        for &(pid, counter) in &self.pids {
            let mut packet = [0xff_u8; PACKET];
            packet[0] = SYNC;
            // Transport error indicator, no payload unit start, the PID.
            packet[1] = 0x80 | (pid >> 8) as u8;
            packet[2] = pid as u8;
            // Adaptation field only (no payload: the counter does not advance).
            packet[3] = 0x20 | counter;
            // The adaptation field fills the rest: no flags, then stuffing.
            packet[4] = (PACKET - 5) as u8;
            packet[5] = 0;
            out.extend_from_slice(&packet);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(pid: u16, counter: u8) -> [u8; PACKET] {
        let mut p = [0u8; PACKET];
        p[0] = SYNC;
        p[1] = 0x40 | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10 | counter;
        p
    }

    fn marks(end: &TsEnd) -> Vec<(u16, u8, bool)> {
        end.closing_packets()
            .chunks(PACKET)
            .map(|p| {
                assert_eq!(p[0], SYNC);
                assert_eq!(p[3] >> 4, 2, "adaptation field only");
                assert_eq!(usize::from(p[4]), PACKET - 5);
                let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
                (pid, p[3] & 0x0f, p[1] & 0x80 != 0)
            })
            .collect()
    }

    #[test]
    fn marks_each_pid_with_its_last_counter_however_the_bytes_are_split() {
        let stream: Vec<u8> = [
            packet(0, 0),
            packet(0x100, 3),
            packet(0x101, 7),
            packet(NULL_PID, 0),
            packet(0x100, 4),
        ]
        .concat();
        for split in [1, 2, 3, 5, 187, 188, 189, 1316] {
            let mut end = TsEnd::default();
            for piece in stream.chunks(split) {
                end.observe(piece);
            }
            assert_eq!(
                marks(&end),
                [(0, 0, true), (0x100, 4, true), (0x101, 7, true)],
                "split every {split} bytes"
            );
        }
    }

    #[test]
    fn a_stream_out_of_sync_gets_no_marks() {
        let mut end = TsEnd::default();
        end.observe(&packet(0x100, 1));
        end.observe(&[0u8; 200]);
        end.observe(&packet(0x101, 1));
        assert!(end.closing_packets().is_empty());
    }

    #[test]
    fn a_pid_storm_is_remembered_only_up_to_the_bound() {
        let mut end = TsEnd::default();
        for pid in 0..1000u16 {
            end.observe(&packet(pid, (pid % 16) as u8));
        }
        assert_eq!(marks(&end).len(), MAX_PIDS);
    }
}
