//! The commands a client sends (connect, createStream, publish, play, the courtesy calls
//! around them, and the ones that end a stream), and what the session answers by itself.

use super::super::amf0::Amf0Value;
use super::super::message::Command;
use super::replies::status_object;
use super::{ServerEvent, ServerSession, SessionError, StreamRole};
use crate::stream_name::StreamName;

impl ServerSession {
    pub(super) fn handle_command(
        &mut self,
        stream_id: u32,
        command: Command,
    ) -> Result<Option<ServerEvent>, SessionError> {
        if self.connection.is_none() && command.name != "connect" {
            return Err(SessionError::Protocol("a command arrived before connect"));
        }
        match command.name.as_str() {
            "connect" => self.on_connect(&command).map(|()| None),
            "createStream" => {
                self.on_create_stream(&command);
                Ok(None)
            }
            "releaseStream" | "FCPublish" | "getStreamLength" => {
                self.on_preparation(&command);
                Ok(None)
            }
            "publish" => Ok(self.on_publish(stream_id, &command)),
            "play" => Ok(self.on_play(stream_id, &command)),
            "FCUnpublish" => Ok(self.on_fc_unpublish()),
            "deleteStream" => {
                let id = command
                    .args
                    .first()
                    .and_then(Amf0Value::as_f64)
                    .unwrap_or(0.0);
                Ok(self.on_close_stream(id as u32))
            }
            "closeStream" => Ok(self.on_close_stream(stream_id)),
            other => {
                tracing::debug!(command = other, "command ignored");
                Ok(None)
            }
        }
    }

    pub(super) fn on_connect(&mut self, command: &Command) -> Result<(), SessionError> {
        if self.connection.is_some() {
            return Err(SessionError::Protocol("connect sent twice"));
        }
        let field = |key: &str| command.object.get(key).and_then(Amf0Value::as_str);
        let app = field("app").unwrap_or_default();
        let tc_url = field("tcUrl").unwrap_or_default();
        let (app, query) = StreamName::split_app(app, tc_url);
        let object_encoding = command
            .object
            .get("objectEncoding")
            .and_then(Amf0Value::as_f64)
            .unwrap_or(0.0);
        self.connection = Some((app, query));

        self.messages
            .send_window_ack_size(self.config.window_ack_size);
        self.messages
            .send_peer_bandwidth(self.config.window_ack_size);
        self.messages.set_chunk_size(self.config.chunk_size);
        let properties = Amf0Value::Object(vec![
            ("fmsVer".into(), "FMS/3,0,1,123".into()),
            ("capabilities".into(), 31.0.into()),
        ]);
        let info = status_object(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
            Some(object_encoding),
        );
        self.send_command(0, "_result", command.transaction_id, properties, vec![info]);
        Ok(())
    }

    pub(super) fn on_create_stream(&mut self, command: &Command) {
        let Some(id) = self.streams.create() else {
            let info = status_object(
                "error",
                "NetConnection.Call.Failed",
                "Too many streams on one connection.",
                None,
            );
            self.send_command(
                0,
                "_error",
                command.transaction_id,
                Amf0Value::Null,
                vec![info],
            );
            return;
        };
        self.send_command(
            0,
            "_result",
            command.transaction_id,
            Amf0Value::Null,
            vec![f64::from(id).into()],
        );
    }

    /// releaseStream, FCPublish and getStreamLength are courtesy calls around publish
    /// and play. Clients send them and carry on without waiting, so the answers only
    /// have to be harmless to the strictest client:
    ///
    /// - releaseStream gets no answer, as from nginx-rtmp. A `_result` is worse than
    ///   silence: xiu's relay sends releaseStream and FCPublish with transaction id 1,
    ///   connect's, and takes any `_result` for 1 as connect's answer, starting over;
    ///   and SRS's `_result(txn, null, undefined)` (what prism used to send) carries an
    ///   AMF0 `undefined` that xiu's decoder refuses.
    /// - FCPublish gets `onFCPublish` (a notification, transaction 0), as from
    ///   FFmpeg's own server (SRS sends it at publish).
    /// - getStreamLength gets `_result(txn, null, 0)`: ffmpeg reads the number as the
    ///   duration, 0 meaning live. Never an `_error`: old ffmpeg aborted on those.
    pub(super) fn on_preparation(&mut self, command: &Command) {
        match command.name.as_str() {
            "FCPublish" => {
                let info = status_object("status", "NetStream.Publish.Start", "FCPublish", None);
                self.send_command(0, "onFCPublish", 0.0, Amf0Value::Null, vec![info]);
            }
            "getStreamLength" => self.send_command(
                0,
                "_result",
                command.transaction_id,
                Amf0Value::Null,
                vec![0.0.into()],
            ),
            _ => {}
        }
    }

    pub(super) fn stream_name(&self, command: &Command) -> Option<StreamName> {
        let (app, query) = self.connection.as_ref()?;
        StreamName::parse(app, query, command.first_string_arg()?)
    }

    pub(super) fn on_publish(&mut self, stream_id: u32, command: &Command) -> Option<ServerEvent> {
        if self.streams.role(stream_id) != Some(StreamRole::Created) {
            self.send_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                "publish on a stream that was not created or is in use",
            );
            return None;
        }
        let Some(name) = self.stream_name(command) else {
            self.send_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                "invalid stream name",
            );
            return None;
        };
        self.set_role(stream_id, StreamRole::PublishPending);
        Some(ServerEvent::Publish { stream_id, name })
    }

    pub(super) fn on_play(&mut self, stream_id: u32, command: &Command) -> Option<ServerEvent> {
        if self.streams.role(stream_id) != Some(StreamRole::Created) {
            self.send_status(
                stream_id,
                "error",
                "NetStream.Play.Failed",
                "play on a stream that was not created or is in use",
            );
            return None;
        }
        let Some(name) = self.stream_name(command) else {
            self.send_status(
                stream_id,
                "error",
                "NetStream.Play.StreamNotFound",
                "invalid stream name",
            );
            return None;
        };
        self.set_role(stream_id, StreamRole::PlayPending);
        Some(ServerEvent::Play { stream_id, name })
    }

    pub(super) fn on_fc_unpublish(&mut self) -> Option<ServerEvent> {
        let stream_id = self.streams.publishing().next()?;
        self.finish_publishing(stream_id)
    }

    pub(super) fn on_close_stream(&mut self, stream_id: u32) -> Option<ServerEvent> {
        match self.streams.role(stream_id)? {
            StreamRole::Publishing | StreamRole::PublishPending => {
                let event = self.finish_publishing(stream_id);
                self.streams.remove(stream_id);
                event
            }
            StreamRole::Playing | StreamRole::PlayPending => {
                self.streams.remove(stream_id);
                Some(ServerEvent::StopPlay { stream_id })
            }
            StreamRole::Created => {
                self.streams.remove(stream_id);
                None
            }
        }
    }

    pub(super) fn finish_publishing(&mut self, stream_id: u32) -> Option<ServerEvent> {
        let was_publishing = self.streams.role(stream_id) == Some(StreamRole::Publishing);
        self.set_role(stream_id, StreamRole::Created);
        if !was_publishing {
            return None;
        }
        self.send_status(
            stream_id,
            "status",
            "NetStream.Unpublish.Success",
            "Stopped publishing.",
        );
        Some(ServerEvent::Unpublish { stream_id })
    }
}
