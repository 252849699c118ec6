//! Queuing one packet for every subscriber of a stream, and the one packet that
//! comes from no input: a data message the operator inserts (a cue point), put
//! on the stream's timeline where the on-air input is now.

use bytes::Bytes;

use super::packet::{Packet, PacketKind};
use super::queue::PushOutcome;
use super::stream::{Stream, StreamState};

impl StreamState {
    /// Queues `packet` for every subscriber of the stream `name` (for the log).
    /// Never waits on a subscriber; the on-air input's next flush delivers it.
    pub(super) fn fan_out(&mut self, name: &str, packet: &Packet) {
        let generation = self.config_generation;
        let configs = [
            self.metadata.as_ref(),
            self.video_header.as_ref(),
            self.audio_header.as_ref(),
        ];
        let (mut episodes, mut closed) = (0, false);
        for queue in self.subscribers.iter() {
            match queue.push(packet, || (generation, configs)) {
                PushOutcome::Closed => closed = true,
                PushOutcome::StartedDropping => {
                    episodes += 1;
                    tracing::warn!(
                        stream = %crate::mask::Masked(name),
                        "subscriber too slow: dropping frames until the next keyframe"
                    );
                }
                PushOutcome::Queued | PushOutcome::Dropped => {}
            }
        }
        if closed {
            self.subscribers.remove_closed();
        }
        self.drop_episodes += episodes;
    }
}

impl Stream {
    /// Inserts a data message (an AMF0 body such as a cue point's) into the
    /// stream, stamped with the latest timestamp the stream sent, so that every
    /// subscriber (destinations, players, recordings, HLS) gets it in order with
    /// the media around it. `payload` is built from that timestamp (a cue
    /// point's `time`), hence a function of it.
    ///
    /// Returns the timestamp, or `None` when no input is on air (nothing sent
    /// yet, or the stream is between publishers): a cue needs a moment of the
    /// stream to mark. It is not kept in the GOP cache: a player or destination
    /// that joins later does not act on a cue that came before it. It goes out
    /// with the on-air input's next flush (within one read of the publisher),
    /// so that only that input's task ever writes to a destination's socket.
    pub fn insert_data(&self, payload: impl FnOnce(u32) -> Bytes) -> Option<u32> {
        let mut state = self.lock();
        let timestamp = state.inputs.on_air_time()?;
        let packet = Packet {
            kind: PacketKind::Data,
            timestamp,
            payload: payload(timestamp),
            keyframe: false,
            sequence_header: false,
        };
        state.packets_in += 1;
        state.bytes_in += packet.len() as u64;
        state.fan_out(&self.name, &packet);
        Some(timestamp)
    }
}
