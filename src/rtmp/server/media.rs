//! Media, data and aggregate messages from a publisher: which stream they belong to, and the
//! events they become.

use bytes::Bytes;

use super::super::amf0::{self, Amf0Value};
use super::super::message::{Message, type_id};
use super::{ServerEvent, ServerSession, StreamRole};

impl ServerSession {
    /// The publishing stream a media, data or aggregate message belongs to, if any.
    ///
    /// Normally that is the message stream it came on. Some relays (Node-Media-Server
    /// 4's push) publish on stream 1 and then send `@setDataFrame`, audio and video on
    /// message stream 0, the NetConnection's; nginx-rtmp and Node-Media-Server 2
    /// accept that, so prism does too when the connection has exactly one publishing
    /// stream: there is then only one stream the media can mean. With none or several,
    /// it is ignored, with one warning per connection.
    pub(super) fn media_owner(&mut self, stream_id: u32, message: &Message) -> Option<u32> {
        if self.streams.role(stream_id) == Some(StreamRole::Publishing) {
            return Some(stream_id);
        }
        if stream_id != 0 {
            tracing::debug!(
                stream_id,
                "media on a stream that is not publishing; ignored"
            );
            return None;
        }
        let mut publishing = self.streams.publishing();
        match (publishing.next(), publishing.next()) {
            (Some(owner), None) => {
                if !self.noted_stream_0_media {
                    self.noted_stream_0_media = true;
                    tracing::debug!(
                        stream_id = owner,
                        "media on message stream 0: taken as the publishing stream's"
                    );
                }
                Some(owner)
            }
            (first, _) => {
                if !self.warned_unowned_media {
                    self.warned_unowned_media = true;
                    let kind = match message {
                        Message::Audio(_) => "audio",
                        Message::Video(_) => "video",
                        Message::Aggregate(_) => "aggregate",
                        _ => "data",
                    };
                    let publishing = if first.is_some() { "several" } else { "no" };
                    tracing::warn!(
                        "{kind} on message stream 0 while {publishing} streams publish: \
                         ignored, and so is any more (warned once per connection)"
                    );
                }
                None
            }
        }
    }

    pub(super) fn handle_data(
        &mut self,
        stream_id: u32,
        timestamp: u32,
        values: Vec<Amf0Value>,
        payload: Bytes,
    ) -> Option<ServerEvent> {
        let mut values = values.into_iter();
        let mut first = values.next();
        let set_data_frame = first.as_ref().and_then(Amf0Value::as_str) == Some("@setDataFrame");
        if set_data_frame {
            first = values.next();
        }
        match first.as_ref().and_then(Amf0Value::as_str) {
            Some("onMetaData") => values.next().map(|metadata| ServerEvent::Metadata {
                stream_id,
                metadata,
            }),
            // `@setDataFrame` asks the server to hand the data to its subscribers:
            // they get it without the directive, as a player expects a handler
            // name first (`onTextData`, `onCuePoint`).
            _ if set_data_frame => {
                let mut body = bytes::BytesMut::with_capacity(payload.len());
                for value in first.iter().chain(values.as_slice()) {
                    amf0::encode(value, &mut body);
                }
                Some(ServerEvent::Data {
                    stream_id,
                    timestamp,
                    payload: body.freeze(),
                })
            }
            _ => Some(ServerEvent::Data {
                stream_id,
                timestamp,
                payload,
            }),
        }
    }

    pub(super) fn expand_aggregate(&mut self, stream_id: u32, timestamp: u32, payload: &Bytes) {
        let mut base = None;
        for tag in super::super::aggregate::tags(payload) {
            let first = *base.get_or_insert(tag.timestamp);
            let timestamp = timestamp.wrapping_add(tag.timestamp.wrapping_sub(first));
            let event = match tag.type_id {
                type_id::AUDIO => ServerEvent::Audio {
                    stream_id,
                    timestamp,
                    payload: tag.data,
                },
                type_id::VIDEO => ServerEvent::Video {
                    stream_id,
                    timestamp,
                    payload: tag.data,
                },
                _ => continue,
            };
            self.pending.push_back(event);
        }
    }
}
