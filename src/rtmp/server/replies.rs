//! The application's answers (accept or reject a publish or a play, end a play, media for a
//! player) and the status replies the session sends for them.

use bytes::Bytes;

use super::super::amf0::Amf0Value;
use super::super::chunk::MessageHeader;
use super::super::message::{Command, Message, UserControl};
use super::super::message_layer::{CSID_COMMAND, CSID_STREAM, media_csid};
use super::{ServerSession, StreamRole};

impl ServerSession {
    /// Tells the encoder it may start sending media.
    pub fn accept_publish(&mut self, stream_id: u32) {
        self.set_role(stream_id, StreamRole::Publishing);
        self.messages
            .send_user_control(UserControl::StreamBegin(stream_id));
        self.send_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            "Publishing started.",
        );
    }

    /// Refuses a publish with a status code such as `NetStream.Publish.BadName`.
    pub fn reject_publish(&mut self, stream_id: u32, code: &str, description: &str) {
        self.set_role(stream_id, StreamRole::Created);
        self.send_status(stream_id, "error", code, description);
    }

    /// Starts playback: the replies a player waits for before it reads media.
    pub fn accept_play(&mut self, stream_id: u32) {
        self.set_role(stream_id, StreamRole::Playing);
        self.messages
            .send_user_control(UserControl::StreamBegin(stream_id));
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Reset",
            "Playing and resetting.",
        );
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.Start",
            "Started playing.",
        );
        let access = Message::data(vec!["|RtmpSampleAccess".into(), false.into(), false.into()]);
        self.messages.send(CSID_STREAM, 0, stream_id, &access);
    }

    /// Refuses a play request, e.g. with `NetStream.Play.StreamNotFound`.
    pub fn reject_play(&mut self, stream_id: u32, code: &str, description: &str) {
        self.set_role(stream_id, StreamRole::Created);
        self.send_status(stream_id, "error", code, description);
    }

    /// Tells a player its stream has ended (the publisher left), as nginx-rtmp does:
    /// ffmpeg treats `NetStream.Play.UnpublishNotify` as a clean end of stream.
    pub fn end_play(&mut self, stream_id: u32) {
        self.send_status(
            stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            "The stream was unpublished.",
        );
        self.messages
            .send_user_control(UserControl::StreamEof(stream_id));
        self.set_role(stream_id, StreamRole::Created);
    }

    /// Queues one media or data message for a player; the payload is shared, not copied.
    pub fn send_media(&mut self, stream_id: u32, type_id: u8, timestamp: u32, payload: &Bytes) {
        let header = MessageHeader {
            csid: media_csid(type_id),
            timestamp,
            type_id,
            stream_id,
        };
        self.messages.send_raw(&header, payload);
    }

    pub(super) fn send_status(
        &mut self,
        stream_id: u32,
        level: &str,
        code: &str,
        description: &str,
    ) {
        let info = status_object(level, code, description, None);
        let command = Command::new("onStatus", 0.0, Amf0Value::Null, vec![info]);
        self.messages
            .send(CSID_STREAM, 0, stream_id, &Message::Command(command));
    }

    pub(super) fn send_command(
        &mut self,
        stream_id: u32,
        name: &str,
        transaction_id: f64,
        object: Amf0Value,
        args: Vec<Amf0Value>,
    ) {
        let command = Command::new(name, transaction_id, object, args);
        self.messages
            .send(CSID_COMMAND, 0, stream_id, &Message::Command(command));
    }
}

/// The `{level, code, description}` object of `onStatus` and `_result` replies.
pub fn status_object(
    level: &str,
    code: &str,
    description: &str,
    object_encoding: Option<f64>,
) -> Amf0Value {
    let mut fields = vec![
        ("level".to_owned(), Amf0Value::from(level)),
        ("code".to_owned(), Amf0Value::from(code)),
        ("description".to_owned(), Amf0Value::from(description)),
    ];
    if let Some(encoding) = object_encoding {
        fields.push(("objectEncoding".to_owned(), encoding.into()));
    }
    Amf0Value::Object(fields)
}
