//! The message layer over the chunk stream: the connection-level half of RTMP that both
//! roles share, free of I/O.
//!
//! A [`MessageLayer`] owns the chunk decoder and encoder of one connection and deals with
//! protocol control traffic itself: it applies the peer's Set Chunk Size and Abort,
//! answers pings, and acknowledges received bytes when the peer asked for it. What
//! reaches the session above is only what a session has to decide about.

use bytes::{Bytes, BytesMut};

use super::chunk::{
    BudgetAccount, ChunkDecoder, ChunkEncoder, ChunkError, DecoderLimits, MessageHeader, OutBuf,
    RawMessage,
};
use super::message::{Message, MessageError, UserControl, type_id};

/// Chunk stream id for protocol control messages (fixed by the spec).
pub const CSID_CONTROL: u32 = 2;
/// Chunk stream id for NetConnection commands and their replies.
pub const CSID_COMMAND: u32 = 3;
/// Chunk stream id for NetStream status and data messages.
pub const CSID_STREAM: u32 = 5;
/// Chunk stream id for audio; separate from video so that each keeps small deltas.
pub const CSID_AUDIO: u32 = 6;
/// Chunk stream id for video.
pub const CSID_VIDEO: u32 = 7;

/// The largest chunk size we send. Larger chunks save header bytes but some old
/// peers choke above 64 KiB; SRS warns there too.
pub const MAX_OUT_CHUNK_SIZE: u32 = 65_536;

/// Why the message layer failed. Each one ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum MessageLayerError {
    /// The chunk stream itself was malformed or over a limit.
    #[error("chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    /// A complete message was malformed.
    #[error("message on chunk stream {csid}: {source}")]
    Message {
        /// The chunk stream it arrived on.
        csid: u32,
        /// What was wrong with it.
        #[source]
        source: MessageError,
    },
}

/// A message the session has to handle, with where and when it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The message stream id (0 for the NetConnection).
    pub stream_id: u32,
    /// The message timestamp in ms.
    pub timestamp: u32,
    /// The decoded message.
    pub message: Message,
}

/// The message layer of one connection: its chunk codec, and the protocol control traffic
/// it handles itself.
pub struct MessageLayer {
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    out: OutBuf,
    bytes_in: u64,
    acked_at: u64,
    peer_window: u32,
    non_media: u64,
}

impl MessageLayer {
    /// A message layer with the given inbound limits and the spec's initial chunk size of 128.
    pub fn new(limits: DecoderLimits) -> Self {
        Self::with_decoder(ChunkDecoder::new(limits))
    }

    /// Like [`Self::new`], with reassembly buffers that also draw on a budget shared with
    /// other connections (server connections: see [`super::chunk::PendingBudget`]).
    pub fn with_budget(limits: DecoderLimits, account: BudgetAccount) -> Self {
        Self::with_decoder(ChunkDecoder::with_budget(limits, account))
    }

    fn with_decoder(decoder: ChunkDecoder) -> Self {
        Self {
            decoder,
            encoder: ChunkEncoder::new(),
            out: OutBuf::new(),
            bytes_in: 0,
            acked_at: 0,
            peer_window: 0,
            non_media: 0,
        }
    }

    /// This connection's share of a shared budget for partial messages, if it has one.
    pub fn budget(&self) -> Option<&BudgetAccount> {
        self.decoder.budget()
    }

    /// The error of a decoder evicted from its shared budget; `Ok` otherwise.
    pub fn check_budget(&self) -> Result<(), MessageLayerError> {
        self.decoder.check_budget().map_err(MessageLayerError::from)
    }

    /// Messages received so far that are not media (audio, video, data, aggregate):
    /// commands, protocol control and user control messages, shared objects. Each costs
    /// work to answer or apply, and an encoder sends a handful, so the driver bounds
    /// their rate.
    pub fn non_media_messages(&self) -> u64 {
        self.non_media
    }

    /// Total bytes taken off the wire so far (after the handshake).
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    /// The bytes waiting to be written to the peer.
    pub fn out(&mut self) -> &mut OutBuf {
        &mut self.out
    }

    /// Decodes the next message the session must see. Protocol control messages are
    /// handled here and not returned. `Ok(None)` means more bytes are needed.
    pub fn poll(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, MessageLayerError> {
        loop {
            let before = buf.len();
            let decoded = self.decoder.decode(buf);
            self.count_received((before - buf.len()) as u64);
            let Some(raw) = decoded? else {
                return Ok(None);
            };
            if let Some(incoming) = self.handle(raw)? {
                return Ok(Some(incoming));
            }
        }
    }

    fn handle(&mut self, raw: RawMessage) -> Result<Option<Incoming>, MessageLayerError> {
        if !matches!(
            raw.type_id,
            type_id::AUDIO
                | type_id::VIDEO
                | type_id::DATA_AMF0
                | type_id::DATA_AMF3
                | type_id::AGGREGATE
        ) {
            self.non_media += 1;
        }
        let RawMessage {
            csid,
            timestamp,
            type_id,
            stream_id,
            payload,
        } = raw;
        let message = Message::decode(type_id, payload)
            .map_err(|source| MessageLayerError::Message { csid, source })?;
        match message {
            Message::SetChunkSize(size) => self.decoder.set_chunk_size(size)?,
            Message::Abort(csid) => self.decoder.abort(csid),
            Message::WindowAckSize(size) => self.peer_window = size,
            Message::Acknowledgement(_) | Message::SetPeerBandwidth { .. } => {}
            Message::UserControl(UserControl::PingRequest(ts)) => {
                self.send(
                    CSID_CONTROL,
                    0,
                    0,
                    &Message::UserControl(UserControl::PingResponse(ts)),
                );
            }
            message => {
                return Ok(Some(Incoming {
                    stream_id,
                    timestamp,
                    message,
                }));
            }
        }
        Ok(None)
    }

    fn count_received(&mut self, n: u64) {
        self.bytes_in += n;
        let window = u64::from(self.peer_window);
        if window > 0 && self.bytes_in - self.acked_at >= window {
            self.acked_at = self.bytes_in;
            // The sequence number is a 32-bit counter that wraps, per the spec.
            let seq = self.bytes_in as u32;
            self.send(CSID_CONTROL, 0, 0, &Message::Acknowledgement(seq));
        }
    }

    /// Queues a message for the peer.
    pub fn send(&mut self, csid: u32, timestamp: u32, stream_id: u32, message: &Message) {
        let (type_id, payload) = message.encode();
        self.send_raw(
            &MessageHeader {
                csid,
                timestamp,
                type_id,
                stream_id,
            },
            &payload,
        );
    }

    /// Queues a message body that is shared, not copied (media on the hot path).
    pub fn send_raw(&mut self, header: &MessageHeader, payload: &Bytes) {
        self.encoder.encode(header, payload, &mut self.out);
    }

    /// Announces and adopts a new outgoing chunk size.
    pub fn set_chunk_size(&mut self, size: u32) {
        let size = size.clamp(1, MAX_OUT_CHUNK_SIZE);
        self.send(CSID_CONTROL, 0, 0, &Message::SetChunkSize(size));
        self.encoder.set_chunk_size(size);
    }

    /// Asks the peer to acknowledge every `size` bytes it receives.
    pub fn send_window_ack_size(&mut self, size: u32) {
        self.send(CSID_CONTROL, 0, 0, &Message::WindowAckSize(size));
    }

    /// Sends a Set Peer Bandwidth message (dynamic limit), as servers do after connect.
    pub fn send_peer_bandwidth(&mut self, size: u32) {
        self.send(
            CSID_CONTROL,
            0,
            0,
            &Message::SetPeerBandwidth { size, limit: 2 },
        );
    }

    /// Sends a stream event on the control chunk stream.
    pub fn send_user_control(&mut self, event: UserControl) {
        self.send(CSID_CONTROL, 0, 0, &Message::UserControl(event));
    }
}

/// Media type ids that go on their own chunk streams.
pub fn media_csid(type_id: u8) -> u32 {
    match type_id {
        type_id::AUDIO => CSID_AUDIO,
        type_id::VIDEO => CSID_VIDEO,
        _ => CSID_STREAM,
    }
}
