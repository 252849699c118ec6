//! Typed RTMP messages: what a complete chunk-stream message means.
//!
//! The chunk layer hands over `(type id, payload)` pairs; this module turns them into
//! [`Message`] values and back. Media payloads (audio, video) stay as the `Bytes` the
//! chunk decoder produced, so classifying a message never copies media.

use bytes::{BufMut, Bytes, BytesMut};

use super::amf0::{self, Amf0Error, Amf0Value};

/// RTMP message type ids (RTMP 1.0 spec, section 5.4 and 7.1).
pub mod type_id {
    /// Protocol control: the sender's new maximum chunk size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Protocol control: discard a partially received message.
    pub const ABORT: u8 = 2;
    /// Protocol control: bytes received so far.
    pub const ACKNOWLEDGEMENT: u8 = 3;
    /// Stream events (Stream Begin, pings, buffer length...).
    pub const USER_CONTROL: u8 = 4;
    /// Protocol control: how often the peer wants acknowledgements.
    pub const WINDOW_ACK_SIZE: u8 = 5;
    /// Protocol control: output bandwidth limit for the peer.
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    /// An FLV audio tag body.
    pub const AUDIO: u8 = 8;
    /// An FLV video tag body.
    pub const VIDEO: u8 = 9;
    /// Data message in AMF3 (format byte, then AMF0 with AMF3 switches).
    pub const DATA_AMF3: u8 = 15;
    /// Shared object in AMF3 (unsupported, ignored).
    pub const SHARED_OBJECT_AMF3: u8 = 16;
    /// Command message in AMF3 (format byte, then AMF0 with AMF3 switches).
    pub const COMMAND_AMF3: u8 = 17;
    /// Data message in AMF0 (`@setDataFrame`, `onMetaData`...).
    pub const DATA_AMF0: u8 = 18;
    /// Shared object in AMF0 (unsupported, ignored).
    pub const SHARED_OBJECT_AMF0: u8 = 19;
    /// Command message in AMF0 (`connect`, `publish`, `play`...).
    pub const COMMAND_AMF0: u8 = 20;
    /// A sequence of FLV tags in one message.
    pub const AGGREGATE: u8 = 22;
}

/// Why a message could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// A fixed-size control message was shorter than its format requires.
    #[error("message type {type_id} needs {needed} bytes, got {got}")]
    TooShort {
        /// The message type id.
        type_id: u8,
        /// Bytes its format needs.
        needed: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// A command or data message's AMF body did not decode.
    #[error("bad AMF in message type {type_id}: {source}")]
    Amf {
        /// The message type id.
        type_id: u8,
        /// What the AMF decoder said.
        #[source]
        source: Amf0Error,
    },
    /// A command message did not start with a name and a transaction id.
    #[error("command message without a name")]
    CommandWithoutName,
}

/// User Control events (RTMP 1.0 spec, section 7.1.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControl {
    /// A stream became functional; sent before play/publish replies.
    StreamBegin(u32),
    /// Playback of a stream ended.
    StreamEof(u32),
    /// No more data on the stream for now.
    StreamDry(u32),
    /// The client's buffer length in milliseconds.
    SetBufferLength {
        /// The stream the buffer belongs to.
        stream_id: u32,
        /// Buffer length in ms.
        millis: u32,
    },
    /// The stream is a recording.
    StreamIsRecorded(u32),
    /// A liveness probe; must be answered with a [`UserControl::PingResponse`].
    PingRequest(u32),
    /// The answer to a ping, echoing its timestamp.
    PingResponse(u32),
    /// Any other event, kept so that it can be ignored knowingly.
    Other {
        /// Event type.
        event: u16,
        /// Event data.
        data: Bytes,
    },
}

/// A command (`connect`, `publish`, `_result`...) in either encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// The command name.
    pub name: String,
    /// The transaction id a reply must echo.
    pub transaction_id: f64,
    /// The command object (`Null` when absent).
    pub object: Amf0Value,
    /// Further arguments.
    pub args: Vec<Amf0Value>,
}

impl Command {
    /// Builds a command; `object` is usually `Null` except for `connect` and `_result`.
    pub fn new(name: &str, transaction_id: f64, object: Amf0Value, args: Vec<Amf0Value>) -> Self {
        Self {
            name: name.to_owned(),
            transaction_id,
            object,
            args,
        }
    }

    /// The first argument as a string, which is where `publish`, `play`,
    /// `releaseStream` and `FCPublish` carry the stream name.
    pub fn first_string_arg(&self) -> Option<&str> {
        self.args.first().and_then(Amf0Value::as_str)
    }

    /// Encodes the command as an AMF0 body (we always answer in AMF0; AMF3 clients
    /// accept AMF0 replies because every AMF3 session also speaks AMF0).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(128);
        amf0::encode(&Amf0Value::String(self.name.clone()), &mut out);
        amf0::encode(&Amf0Value::Number(self.transaction_id), &mut out);
        amf0::encode(&self.object, &mut out);
        amf0::encode_all(&self.args, &mut out);
        out.freeze()
    }

    fn from_values(values: Vec<Amf0Value>) -> Result<Self, MessageError> {
        let mut values = values.into_iter();
        let name = match values.next() {
            Some(Amf0Value::String(name)) => name,
            _ => return Err(MessageError::CommandWithoutName),
        };
        // Some clients omit the transaction id or the object on notifications; be lenient.
        let transaction_id = values.next().and_then(|v| v.as_f64()).unwrap_or(0.0);
        let object = values.next().unwrap_or(Amf0Value::Null);
        Ok(Self {
            name,
            transaction_id,
            object,
            args: values.collect(),
        })
    }
}

/// One RTMP message, decoded as far as prism needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The peer's chunk size from now on.
    SetChunkSize(u32),
    /// Drop the partial message on this chunk stream.
    Abort(u32),
    /// The peer received this many bytes.
    Acknowledgement(u32),
    /// The peer wants an acknowledgement every this many bytes.
    WindowAckSize(u32),
    /// The peer limits our output bandwidth (advisory; prism ignores it).
    SetPeerBandwidth {
        /// Window size in bytes.
        size: u32,
        /// 0 hard, 1 soft, 2 dynamic.
        limit: u8,
    },
    /// A stream event.
    UserControl(UserControl),
    /// A command, whichever AMF flavour it came in.
    Command(Command),
    /// A data message: its decoded values, and its original AMF0 body so that it can
    /// be forwarded unchanged.
    Data {
        /// The decoded values (`@setDataFrame`, `onMetaData`, {...}).
        values: Vec<Amf0Value>,
        /// The body as received (AMF0 only; AMF3 bodies are re-encoded as AMF0).
        payload: Bytes,
    },
    /// An FLV audio tag body.
    Audio(Bytes),
    /// An FLV video tag body.
    Video(Bytes),
    /// FLV tags packed into one message.
    Aggregate(Bytes),
    /// Any other type (shared objects...), kept so that callers can ignore it knowingly.
    Other {
        /// The message type id.
        type_id: u8,
        /// The message body.
        payload: Bytes,
    },
}

fn be_u32(type_id: u8, payload: &[u8]) -> Result<u32, MessageError> {
    match payload.get(..4) {
        Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
        _ => Err(MessageError::TooShort {
            type_id,
            needed: 4,
            got: payload.len(),
        }),
    }
}

impl Message {
    /// Interprets a complete message body of the given type.
    pub fn decode(type_id: u8, payload: Bytes) -> Result<Self, MessageError> {
        use self::type_id as t;
        Ok(match type_id {
            t::SET_CHUNK_SIZE => Message::SetChunkSize(be_u32(type_id, &payload)? & 0x7FFF_FFFF),
            t::ABORT => Message::Abort(be_u32(type_id, &payload)?),
            t::ACKNOWLEDGEMENT => Message::Acknowledgement(be_u32(type_id, &payload)?),
            t::WINDOW_ACK_SIZE => Message::WindowAckSize(be_u32(type_id, &payload)?),
            t::SET_PEER_BANDWIDTH => Message::SetPeerBandwidth {
                size: be_u32(type_id, &payload)?,
                limit: payload.get(4).copied().unwrap_or(2),
            },
            t::USER_CONTROL => Message::UserControl(decode_user_control(payload)?),
            t::COMMAND_AMF0 => Message::Command(Command::from_values(
                amf0::decode_all(&payload)
                    .map_err(|source| MessageError::Amf { type_id, source })?,
            )?),
            t::COMMAND_AMF3 => Message::Command(Command::from_values(
                amf0::decode_amf3_message(&payload)
                    .map_err(|source| MessageError::Amf { type_id, source })?,
            )?),
            t::DATA_AMF0 => Message::Data {
                values: amf0::decode_all(&payload)
                    .map_err(|source| MessageError::Amf { type_id, source })?,
                payload,
            },
            t::DATA_AMF3 => {
                let values = amf0::decode_amf3_message(&payload)
                    .map_err(|source| MessageError::Amf { type_id, source })?;
                let mut body = BytesMut::new();
                amf0::encode_all(&values, &mut body);
                Message::Data {
                    values,
                    payload: body.freeze(),
                }
            }
            t::AUDIO => Message::Audio(payload),
            t::VIDEO => Message::Video(payload),
            t::AGGREGATE => Message::Aggregate(payload),
            _ => Message::Other { type_id, payload },
        })
    }

    /// The message's type id and body, ready for the chunk encoder.
    pub fn encode(&self) -> (u8, Bytes) {
        use self::type_id as t;
        let u32_body = |v: u32| Bytes::copy_from_slice(&v.to_be_bytes());
        match self {
            Message::SetChunkSize(size) => (t::SET_CHUNK_SIZE, u32_body(*size & 0x7FFF_FFFF)),
            Message::Abort(csid) => (t::ABORT, u32_body(*csid)),
            Message::Acknowledgement(n) => (t::ACKNOWLEDGEMENT, u32_body(*n)),
            Message::WindowAckSize(n) => (t::WINDOW_ACK_SIZE, u32_body(*n)),
            Message::SetPeerBandwidth { size, limit } => {
                let mut body = BytesMut::with_capacity(5);
                body.put_u32(*size);
                body.put_u8(*limit);
                (t::SET_PEER_BANDWIDTH, body.freeze())
            }
            Message::UserControl(event) => (t::USER_CONTROL, encode_user_control(event)),
            Message::Command(command) => (t::COMMAND_AMF0, command.encode()),
            Message::Data { payload, .. } => (t::DATA_AMF0, payload.clone()),
            Message::Audio(payload) => (t::AUDIO, payload.clone()),
            Message::Video(payload) => (t::VIDEO, payload.clone()),
            Message::Aggregate(payload) => (t::AGGREGATE, payload.clone()),
            Message::Other { type_id, payload } => (*type_id, payload.clone()),
        }
    }

    /// A data message built from values (e.g. `onMetaData`, `|RtmpSampleAccess`).
    pub fn data(values: Vec<Amf0Value>) -> Self {
        let mut body = BytesMut::with_capacity(64);
        amf0::encode_all(&values, &mut body);
        Message::Data {
            values,
            payload: body.freeze(),
        }
    }
}

fn decode_user_control(payload: Bytes) -> Result<UserControl, MessageError> {
    let too_short = |needed| MessageError::TooShort {
        type_id: type_id::USER_CONTROL,
        needed,
        got: payload.len(),
    };
    let event = match payload.get(..2) {
        Some(&[a, b]) => u16::from_be_bytes([a, b]),
        _ => return Err(too_short(2)),
    };
    let word = |at: usize| -> Result<u32, MessageError> {
        match payload.get(at..at + 4) {
            Some(&[a, b, c, d]) => Ok(u32::from_be_bytes([a, b, c, d])),
            _ => Err(too_short(at + 4)),
        }
    };
    Ok(match event {
        0 => UserControl::StreamBegin(word(2)?),
        1 => UserControl::StreamEof(word(2)?),
        2 => UserControl::StreamDry(word(2)?),
        3 => UserControl::SetBufferLength {
            stream_id: word(2)?,
            millis: word(6)?,
        },
        4 => UserControl::StreamIsRecorded(word(2)?),
        6 => UserControl::PingRequest(word(2)?),
        7 => UserControl::PingResponse(word(2)?),
        _ => UserControl::Other {
            event,
            data: payload.slice(2..),
        },
    })
}

fn encode_user_control(event: &UserControl) -> Bytes {
    let mut body = BytesMut::with_capacity(10);
    let mut put = |event: u16, words: &[u32]| {
        body.put_u16(event);
        for word in words {
            body.put_u32(*word);
        }
    };
    match event {
        UserControl::StreamBegin(id) => put(0, &[*id]),
        UserControl::StreamEof(id) => put(1, &[*id]),
        UserControl::StreamDry(id) => put(2, &[*id]),
        UserControl::SetBufferLength { stream_id, millis } => put(3, &[*stream_id, *millis]),
        UserControl::StreamIsRecorded(id) => put(4, &[*id]),
        UserControl::PingRequest(ts) => put(6, &[*ts]),
        UserControl::PingResponse(ts) => put(7, &[*ts]),
        UserControl::Other { event, data } => {
            put(*event, &[]);
            body.put_slice(data);
        }
    }
    body.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_decode_from_known_bytes() {
        let m = Message::decode(1, Bytes::from_static(&[0, 0, 0x10, 0])).unwrap();
        assert_eq!(m, Message::SetChunkSize(4096));
        // The top bit of Set Chunk Size is reserved and must be ignored.
        let m = Message::decode(1, Bytes::from_static(&[0x80, 0, 0x10, 0])).unwrap();
        assert_eq!(m, Message::SetChunkSize(4096));
        let m = Message::decode(5, Bytes::from_static(&[0, 0x26, 0x25, 0xA0])).unwrap();
        assert_eq!(m, Message::WindowAckSize(2_500_000));
        let m = Message::decode(6, Bytes::from_static(&[0, 0x4C, 0x4B, 0x40, 2])).unwrap();
        assert_eq!(
            m,
            Message::SetPeerBandwidth {
                size: 5_000_000,
                limit: 2
            }
        );
    }

    #[test]
    fn user_control_events_decode_from_known_bytes() {
        let ping = Message::decode(4, Bytes::from_static(&[0, 6, 0, 0, 1, 0])).unwrap();
        assert_eq!(ping, Message::UserControl(UserControl::PingRequest(256)));
        let buffer =
            Message::decode(4, Bytes::from_static(&[0, 3, 0, 0, 0, 1, 0, 0, 0x0B, 0xB8])).unwrap();
        assert_eq!(
            buffer,
            Message::UserControl(UserControl::SetBufferLength {
                stream_id: 1,
                millis: 3000
            })
        );
        let begin = Message::UserControl(UserControl::StreamBegin(1)).encode();
        assert_eq!(begin, (4, Bytes::from_static(&[0, 0, 0, 0, 0, 1])));
    }

    #[test]
    fn short_control_messages_are_errors_not_panics() {
        for type_id in [1u8, 2, 3, 4, 5, 6] {
            for len in 0..4 {
                let body = Bytes::from(vec![0u8; len]);
                assert!(
                    Message::decode(type_id, body).is_err(),
                    "type {type_id} len {len}"
                );
            }
        }
        assert!(Message::decode(4, Bytes::from_static(&[0, 3, 0, 0, 0, 1])).is_err());
    }

    #[test]
    fn commands_round_trip() {
        let command = Command::new(
            "publish",
            5.0,
            Amf0Value::Null,
            vec!["key".into(), "live".into()],
        );
        let (type_id, body) = Message::Command(command.clone()).encode();
        assert_eq!(type_id, 20);
        assert_eq!(
            Message::decode(type_id, body).unwrap(),
            Message::Command(command)
        );
    }

    #[test]
    fn command_bytes_decode() {
        // "createStream", 2.0, null — as ffmpeg sends it.
        let mut body = vec![0x02, 0x00, 0x0C];
        body.extend_from_slice(b"createStream");
        body.extend_from_slice(&[0x00, 0x40, 0, 0, 0, 0, 0, 0, 0, 0x05]);
        let m = Message::decode(20, Bytes::from(body)).unwrap();
        let Message::Command(command) = m else {
            panic!("not a command: {m:?}")
        };
        assert_eq!(command.name, "createStream");
        assert_eq!(command.transaction_id, 2.0);
        assert_eq!(command.object, Amf0Value::Null);
        assert!(command.args.is_empty());
    }

    #[test]
    fn amf3_commands_skip_the_format_byte() {
        let mut body = vec![0x00, 0x02, 0x00, 0x04];
        body.extend_from_slice(b"play");
        body.extend_from_slice(&[0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0x05, 0x02, 0x00, 0x01, b'k']);
        let m = Message::decode(17, Bytes::from(body)).unwrap();
        let Message::Command(command) = m else {
            panic!("not a command: {m:?}")
        };
        assert_eq!(command.name, "play");
        assert_eq!(command.first_string_arg(), Some("k"));
    }

    #[test]
    fn a_command_must_start_with_a_name() {
        let body = Bytes::from_static(&[0x00, 0x40, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            Message::decode(20, body),
            Err(MessageError::CommandWithoutName)
        ));
    }
}
