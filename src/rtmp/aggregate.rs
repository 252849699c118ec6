//! Aggregate messages (type 22): several FLV tags packed into one RTMP message.
//!
//! Publishers rarely send them, but some servers and relays do, so a server that
//! ingests from anything must unpack them. The tags share the message's payload
//! buffer: each one is a slice of it, nothing is copied.

use bytes::Bytes;

/// FLV tag header: type(1) size(3) timestamp(3) timestamp-extension(1) stream id(3).
const TAG_HEADER_LEN: usize = 11;
/// The back-pointer after each tag.
const PREVIOUS_TAG_SIZE_LEN: usize = 4;

/// One tag of an aggregate message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateTag {
    /// The RTMP message type of the tag (8 audio, 9 video, 18 data).
    pub type_id: u8,
    /// The tag's own timestamp; callers rebase it onto the message timestamp.
    pub timestamp: u32,
    /// The tag body, a slice of the aggregate payload.
    pub data: Bytes,
}

/// Iterates the tags of an aggregate payload, stopping at the first malformed one
/// (a truncated tail is dropped, never read past).
pub fn tags(payload: &Bytes) -> impl Iterator<Item = AggregateTag> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        let header = payload.get(at..at.checked_add(TAG_HEADER_LEN)?)?;
        let size = u32::from_be_bytes([0, header[1], header[2], header[3]]) as usize;
        let timestamp = u32::from_be_bytes([header[7], header[4], header[5], header[6]]);
        let start = at + TAG_HEADER_LEN;
        let end = start.checked_add(size)?;
        if end > payload.len() {
            return None;
        }
        let tag = AggregateTag {
            type_id: header[0] & 0x1F,
            timestamp,
            data: payload.slice(start..end),
        };
        at = end.saturating_add(PREVIOUS_TAG_SIZE_LEN);
        Some(tag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpacks_two_tags_and_stops_at_a_truncated_one() {
        let mut body = vec![
            9, 0, 0, 2, 0, 0, 0x10, 0x01, 0, 0, 0, 0x17, 0x01, 0, 0, 0, 13,
        ];
        body.extend_from_slice(&[8, 0, 0, 1, 0, 0, 0x20, 0, 0, 0, 0, 0xAF, 0, 0, 0, 12]);
        body.extend_from_slice(&[9, 0, 0, 9, 0, 0, 0x30, 0, 0, 0, 0, 1]);
        let payload = Bytes::from(body);
        let tags: Vec<_> = tags(&payload).collect();
        assert_eq!(tags.len(), 2);
        assert_eq!(tags[0].type_id, 9);
        assert_eq!(tags[0].timestamp, 0x0100_0010);
        assert_eq!(&tags[0].data[..], &[0x17, 0x01]);
        assert_eq!(tags[1].type_id, 8);
        assert_eq!(tags[1].timestamp, 0x20);
        assert_eq!(&tags[1].data[..], &[0xAF]);
    }
}
