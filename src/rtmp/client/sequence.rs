//! The publish sequence: the server's answers (`_result`, `_error`, `onStatus`, `onBWDone`),
//! matched to our requests by transaction id, and the commands each one triggers.

use super::super::amf0::Amf0Value;
use super::super::message::{Command, Message};
use super::super::message_layer::CSID_STREAM;
use super::status::StatusInfo;
use super::{CONNECT_TXN, ClientError, ClientEvent, ClientSession, State};

impl ClientSession {
    pub(super) fn handle_command(
        &mut self,
        command: &Command,
    ) -> Result<Option<ClientEvent>, ClientError> {
        if self.state == State::Closed {
            return Ok(None);
        }
        match command.name.as_str() {
            "_result" => self.on_result(command),
            "_error" => self.on_error(command),
            "onStatus" => self.on_status(command),
            "onBWDone" => {
                self.on_bw_done();
                Ok(None)
            }
            // onFCPublish (SRS puts NetStream.Publish.Start in it *before* publish, so
            // it must not count as the answer), close, and anything new.
            other => {
                tracing::debug!(command = other, "command from the server ignored");
                Ok(None)
            }
        }
    }

    /// Answers are matched to requests by transaction id, as ffmpeg does; `_result`s
    /// to releaseStream, FCPublish and `_checkbw` need nothing.
    pub(super) fn on_result(
        &mut self,
        command: &Command,
    ) -> Result<Option<ClientEvent>, ClientError> {
        match self.state {
            State::Connecting if is_answer_to(command, CONNECT_TXN) => {
                self.on_connected();
                Ok(Some(ClientEvent::Connected))
            }
            State::CreatingStream { txn } if is_answer_to(command, txn) => {
                let stream_id = stream_id_of(command).ok_or(ClientError::Protocol(
                    "createStream result without a stream id",
                ))?;
                if self.config.play {
                    self.play(stream_id);
                } else {
                    self.publish(stream_id);
                }
                Ok(None)
            }
            // OBS also takes a `_result` to publish as success.
            State::PublishSent { stream_id, txn } if is_answer_to(command, txn) => {
                Ok(Some(self.start_publishing(stream_id)))
            }
            _ => Ok(None),
        }
    }

    /// `_error`s to connect, createStream and publish end the push; those to
    /// releaseStream, FCPublish and `_checkbw` are ignored like ffmpeg does (nginx
    /// does not know those commands at all).
    pub(super) fn on_error(
        &mut self,
        command: &Command,
    ) -> Result<Option<ClientEvent>, ClientError> {
        let awaited = match self.state {
            State::Connecting => CONNECT_TXN,
            State::CreatingStream { txn }
            | State::PublishSent { txn, .. }
            | State::PlaySent { txn, .. } => txn,
            State::Publishing { .. } | State::Playing { .. } | State::Closed => return Ok(None),
        };
        if !is_answer_to(command, awaited) {
            tracing::debug!(
                txn = command.transaction_id,
                "_error to a courtesy command ignored"
            );
            return Ok(None);
        }
        Err(self.rejection(&StatusInfo::of(command)))
    }

    pub(super) fn on_status(
        &mut self,
        command: &Command,
    ) -> Result<Option<ClientEvent>, ClientError> {
        let info = StatusInfo::of(command);
        if info.is_failure() {
            return Err(self.rejection(&info));
        }
        if info.code == "NetStream.Play.Start"
            && let State::PlaySent { stream_id, .. } = self.state
        {
            self.state = State::Playing { stream_id };
            return Ok(Some(ClientEvent::Playing { stream_id }));
        }
        if info.code == "NetStream.Publish.Start" {
            return Ok(match self.state {
                State::PublishSent { stream_id, .. } => Some(self.start_publishing(stream_id)),
                // A repeat, or out of order: nothing new.
                _ => None,
            });
        }
        Ok(Some(ClientEvent::Status {
            level: self.mask(&info.level),
            code: self.mask_code(&info.code),
            description: self.mask(&info.description),
        }))
    }

    /// ffmpeg and OBS answer onBWDone (sent by FMS/Wowza-style servers) with
    /// `_checkbw`; some servers wait for it before they go on.
    pub(super) fn on_bw_done(&mut self) {
        if self.bw_checked {
            return;
        }
        self.bw_checked = true;
        let txn = self.take_txn();
        self.send_command(0, "_checkbw", txn, Amf0Value::Null, Vec::new());
    }

    /// Sends the three calls that follow connect, without waiting in between.
    /// releaseStream and FCPublish are courtesy calls (Adobe FMLE's) that ffmpeg and
    /// OBS send; nginx ignores them, some CDNs want them.
    pub(super) fn on_connected(&mut self) {
        // A player sends none of the publisher's courtesy calls.
        let courtesy: &[&str] = if self.config.play {
            &[]
        } else {
            &["releaseStream", "FCPublish"]
        };
        for &name in courtesy {
            let txn = self.take_txn();
            let arg = self.name_arg();
            self.send_command(0, name, txn, Amf0Value::Null, vec![arg]);
        }
        let txn = self.take_txn();
        self.send_command(0, "createStream", txn, Amf0Value::Null, Vec::new());
        self.state = State::CreatingStream { txn };
    }

    /// Sends publish on the new stream. It goes on the chunk stream our server uses
    /// for per-stream messages (5), not the NetConnection's (3): any csid is valid
    /// (ffmpeg uses 8, OBS 4) and keeping message stream ids apart per csid keeps
    /// the headers short.
    pub(super) fn publish(&mut self, stream_id: u32) {
        let txn = self.take_txn();
        let command = Command::new(
            "publish",
            f64::from(txn),
            Amf0Value::Null,
            vec![self.name_arg(), "live".into()],
        );
        self.messages
            .send(CSID_STREAM, 0, stream_id, &Message::Command(command));
        self.state = State::PublishSent { stream_id, txn };
    }

    /// Sends play on the new stream, live only (`start = -1`, as a player of a live
    /// stream asks; no recorded fallback).
    pub(super) fn play(&mut self, stream_id: u32) {
        let txn = self.take_txn();
        let command = Command::new(
            "play",
            f64::from(txn),
            Amf0Value::Null,
            vec![self.name_arg(), Amf0Value::Number(-1.0)],
        );
        self.messages
            .send(CSID_STREAM, 0, stream_id, &Message::Command(command));
        self.state = State::PlaySent { stream_id, txn };
    }

    pub(super) fn start_publishing(&mut self, stream_id: u32) -> ClientEvent {
        self.state = State::Publishing { stream_id };
        ClientEvent::Publishing { stream_id }
    }

    /// The error for a failure status: a NetConnection.Connect code, or any failure
    /// before connect succeeded, is a connect rejection; the rest concern the stream.
    pub(super) fn rejection(&self, info: &StatusInfo) -> ClientError {
        let code = self.mask_code(&info.code);
        let description = self.mask(&info.description);
        if self.state == State::Connecting || info.code.starts_with("NetConnection.Connect.") {
            ClientError::ConnectRejected { code, description }
        } else if self.config.play {
            ClientError::PlayRejected { code, description }
        } else {
            ClientError::PublishRejected { code, description }
        }
    }
}

fn is_answer_to(command: &Command, txn: u32) -> bool {
    command.transaction_id == f64::from(txn)
}

/// The stream id in a createStream `_result`: the first number after the
/// transaction id. ffmpeg insists on `_result, txn, null, id`; servers that put the
/// id where the null belongs, or add values before it, exist, so any position will
/// do.
fn stream_id_of(command: &Command) -> Option<u32> {
    std::iter::once(&command.object)
        .chain(&command.args)
        .find_map(Amf0Value::as_f64)
        .filter(|id| id.is_finite() && *id >= 0.0 && *id <= f64::from(u32::MAX))
        .map(|id| id as u32)
}
