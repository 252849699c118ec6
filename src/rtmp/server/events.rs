//! What a server session reports to the application: requests it must decide on (publish,
//! play) and what a publisher sends.

use bytes::Bytes;

use super::super::amf0::Amf0Value;
use crate::stream_name::StreamName;

/// What the application must act on.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The peer wants to publish; answer with `accept_publish` or `reject_publish`.
    Publish {
        /// The NetStream it publishes on.
        stream_id: u32,
        /// App, bare name and query string.
        name: StreamName,
    },
    /// The peer wants to play; answer with `accept_play` or `reject_play`.
    Play {
        /// The NetStream it plays on.
        stream_id: u32,
        /// App, bare name and query string.
        name: StreamName,
    },
    /// Stream metadata (`onMetaData` object), already unwrapped from `@setDataFrame`.
    Metadata {
        /// The publishing NetStream.
        stream_id: u32,
        /// The metadata object (an ECMA array or object).
        metadata: Amf0Value,
    },
    /// An audio message from the publisher.
    Audio {
        /// The publishing NetStream.
        stream_id: u32,
        /// Its timestamp in ms.
        timestamp: u32,
        /// The FLV audio tag body.
        payload: Bytes,
    },
    /// A video message from the publisher.
    Video {
        /// The publishing NetStream.
        stream_id: u32,
        /// Its timestamp in ms.
        timestamp: u32,
        /// The FLV video tag body.
        payload: Bytes,
    },
    /// Another data message from the publisher (cue points, text), passed on as is.
    Data {
        /// The publishing NetStream.
        stream_id: u32,
        /// Its timestamp in ms.
        timestamp: u32,
        /// The AMF0 body.
        payload: Bytes,
    },
    /// The publisher ended its stream (FCUnpublish, deleteStream or closeStream).
    Unpublish {
        /// The NetStream that stops publishing.
        stream_id: u32,
    },
    /// The player stopped playing (deleteStream or closeStream).
    StopPlay {
        /// The NetStream that stops playing.
        stream_id: u32,
    },
}
