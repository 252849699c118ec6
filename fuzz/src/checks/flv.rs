//! Proves that the FLV parsers never panic on any input: the video/audio tag classifiers
//! (legacy and Enhanced RTMP, multitrack), the AAC AudioSpecificConfig parser, and `FlvReader`
//! reading a file split into arbitrary reads (header, then tags; every tag body is classified
//! too, script tags as AMF0). Also checks that the reader never hands out a tag above its size limit.
//!
//! Input: [mode, split seed, bytes...]. Mode bit 0 prepends a valid FLV header so the tag loop
//! is reached at once; bit 1 picks a small tag size limit.

use super::Splitter;
use bytes::BytesMut;
use prism::flv::{FlvReader, TagType, aac_config, parse_audio, parse_video};

const HEADER: [u8; 13] = [b'F', b'L', b'V', 1, 5, 0, 0, 0, 9, 0, 0, 0, 0];

fn classify(tag_type: TagType, data: &[u8]) {
    match tag_type {
        TagType::Video => drop(parse_video(data)),
        TagType::Audio => {
            if parse_audio(data).is_ok() && data.len() > 2 {
                let _ = aac_config(&data[2..]);
            }
        }
        TagType::Script => drop(prism::rtmp::amf0::decode_all(data)),
    }
}

/// Runs one input; panics when a property does not hold.
pub fn check(data: &[u8]) {
    let _ = parse_video(data);
    let _ = parse_audio(data);
    let _ = aac_config(data);

    let [mode, seed, rest @ ..] = data else {
        return;
    };
    let input = if mode & 1 != 0 {
        [&HEADER[..], rest].concat()
    } else {
        rest.to_vec()
    };
    let max = if mode & 2 != 0 { 64 } else { usize::MAX };
    let mut reader = FlvReader::with_max_tag_data_len(max);
    let mut buf = BytesMut::new();
    let mut header_done = false;
    'feed: for piece in Splitter::new(&input, *seed, 200) {
        buf.extend_from_slice(piece);
        if !header_done {
            match reader.read_header(&mut buf) {
                Ok(Some(_)) => header_done = true,
                Ok(None) => continue,
                Err(_) => break 'feed,
            }
        }
        loop {
            match reader.read_tag(&mut buf) {
                Ok(Some(tag)) => {
                    assert!(tag.data.len() <= max);
                    classify(tag.tag_type, &tag.data);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
}
