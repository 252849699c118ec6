use super::*;
use proptest::prelude::*;

/// A small FLV file assembled by hand from the spec: header (audio +
/// video), onMetaData script tag, AVC sequence header, AAC sequence
/// header with an extended timestamp, AVC inter frame.
#[rustfmt::skip]
const FILE: &[u8] = &[
    // "FLV", version 1, flags audio|video, DataOffset 9, PreviousTagSize0.
    0x46, 0x4C, 0x56, 0x01, 0x05, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00, 0x00,
    // Script tag: 13 bytes, ts 0, stream 0; AMF0 string "onMetaData".
    0x12, 0x00, 0x00, 0x0D, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x02, 0x00, 0x0A, b'o', b'n', b'M', b'e', b't', b'a', b'D', b'a', b't', b'a',
    0x00, 0x00, 0x00, 0x18,
    // Video tag: 5 bytes, ts 0: AVC sequence header (empty record).
    0x09, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x17, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x10,
    // Audio tag: 4 bytes, ts 0x000017 with extension 0x01: AAC SH.
    0x08, 0x00, 0x00, 0x04, 0x00, 0x00, 0x17, 0x01, 0x00, 0x00, 0x00,
    0xAF, 0x00, 0x12, 0x10,
    0x00, 0x00, 0x00, 0x0F,
    // Video tag: 7 bytes, ts 0x123456: AVC inter frame.
    0x09, 0x00, 0x00, 0x07, 0x12, 0x34, 0x56, 0x00, 0x00, 0x00, 0x00,
    0x27, 0x01, 0x00, 0x00, 0x00, 0xAA, 0xBB,
    0x00, 0x00, 0x00, 0x12,
];

fn expected_tags() -> Vec<FlvTag> {
    let tag = |tag_type, timestamp, data: &'static [u8]| FlvTag {
        tag_type,
        timestamp,
        stream_id: 0,
        data: Bytes::from_static(data),
    };
    vec![
        tag(TagType::Script, 0, b"\x02\x00\x0AonMetaData"),
        tag(TagType::Video, 0, &[0x17, 0x00, 0x00, 0x00, 0x00]),
        tag(TagType::Audio, 0x0100_0017, &[0xAF, 0x00, 0x12, 0x10]),
        tag(
            TagType::Video,
            0x12_3456,
            &[0x27, 0x01, 0x00, 0x00, 0x00, 0xAA, 0xBB],
        ),
    ]
}

/// Reads a header then all tags from `buf`, stopping at `Ok(None)`.
fn read_all(reader: &mut FlvReader, buf: &mut BytesMut) -> Result<Vec<FlvTag>, FlvError> {
    let mut tags = Vec::new();
    while let Some(tag) = reader.read_tag(buf)? {
        tags.push(tag);
    }
    Ok(tags)
}

/// Feeds `input` in chunks of `chunk` bytes, collecting everything read.
fn read_chunked(
    input: &[u8],
    chunk: usize,
) -> Result<(FlvHeader, Vec<FlvTag>, FlvReader, BytesMut), FlvError> {
    let mut reader = FlvReader::new();
    let mut buf = BytesMut::new();
    let mut header = None;
    let mut tags = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        if header.is_none() {
            header = reader.read_header(&mut buf)?;
            if header.is_none() {
                continue;
            }
        }
        tags.extend(read_all(&mut reader, &mut buf)?);
    }
    let header = header.ok_or(FlvError::Truncated("test input: no header"))?;
    Ok((header, tags, reader, buf))
}

#[test]
fn hand_made_file_reads_back() {
    let (header, tags, reader, rest) = read_chunked(FILE, FILE.len()).unwrap();
    assert_eq!(
        header,
        FlvHeader {
            has_audio: true,
            has_video: true
        }
    );
    assert_eq!(tags, expected_tags());
    assert!(rest.is_empty());
    assert_eq!(reader.prev_tag_size_mismatches(), 0);
}

#[test]
fn byte_at_a_time_gives_the_same_tags() {
    let (header, tags, reader, rest) = read_chunked(FILE, 1).unwrap();
    assert_eq!(
        header,
        FlvHeader {
            has_audio: true,
            has_video: true
        }
    );
    assert_eq!(tags, expected_tags());
    assert!(rest.is_empty());
    assert_eq!(reader.prev_tag_size_mismatches(), 0);
}

#[test]
fn nothing_is_returned_before_a_unit_is_complete() {
    let mut reader = FlvReader::new();
    let mut buf = BytesMut::from(&FILE[..12]);
    assert_eq!(reader.read_header(&mut buf), Ok(None));
    assert_eq!(buf.len(), 12, "a partial header must not be consumed");
    buf.extend_from_slice(&FILE[12..13 + 11 + 12]);
    assert!(reader.read_header(&mut buf).unwrap().is_some());
    assert_eq!(reader.read_tag(&mut buf), Ok(None));
    assert_eq!(buf.len(), 11 + 12, "a partial tag must not be consumed");
}

#[test]
fn tag_payload_is_split_off_without_copying() {
    let mut reader = FlvReader::new();
    let mut buf = BytesMut::from(FILE);
    let start = buf.as_ptr() as usize;
    let range = start..start + FILE.len();
    reader.read_header(&mut buf).unwrap();
    let tags = read_all(&mut reader, &mut buf).unwrap();
    for tag in tags {
        assert!(
            range.contains(&(tag.data.as_ptr() as usize)),
            "payload was copied"
        );
    }
}

#[test]
fn writer_produces_the_hand_made_bytes() {
    let header = FlvWriter::header(&FlvHeader {
        has_audio: true,
        has_video: true,
    });
    assert_eq!(header[..], FILE[..13]);
    assert_eq!(
        FlvWriter::header(&FlvHeader {
            has_audio: false,
            has_video: true
        })[4],
        0x01
    );
    let audio = FlvWriter::tag_header(TagType::Audio, 0x0100_0017, 4).unwrap();
    assert_eq!(audio[..], FILE[61..72]);
    let video = FlvWriter::tag_header(TagType::Video, 0x12_3456, 7).unwrap();
    assert_eq!(video[..], FILE[80..91]);
    assert_eq!(FlvWriter::prev_tag_size(7), [0x00, 0x00, 0x00, 0x12]);
    assert_eq!(FlvWriter::prev_tag_size(0), [0x00, 0x00, 0x00, 0x0B]);
}

#[test]
fn writer_refuses_oversized_tags() {
    assert!(FlvWriter::tag_header(TagType::Video, 0, MAX_TAG_DATA_LEN).is_ok());
    assert_eq!(
        FlvWriter::tag_header(TagType::Video, 0, MAX_TAG_DATA_LEN + 1),
        Err(FlvError::TagTooLarge {
            size: MAX_TAG_DATA_LEN + 1,
            max: MAX_TAG_DATA_LEN
        })
    );
    assert_eq!(FlvWriter::prev_tag_size(usize::MAX), [0xFF; 4]);
}

#[test]
fn wrong_previous_tag_sizes_are_tolerated_and_counted() {
    let mut file = FILE.to_vec();
    file[12] = 0x07; // PreviousTagSize0 should be 0.
    file[40] = 0x99; // After the script tag.
    let (_, tags, reader, rest) = read_chunked(&file, 3).unwrap();
    assert_eq!(tags, expected_tags());
    assert!(rest.is_empty());
    assert_eq!(reader.prev_tag_size_mismatches(), 2);
}

#[test]
fn data_offset_beyond_nine_is_skipped() {
    let mut file = FILE[..9].to_vec();
    file[8] = 12;
    file.extend([0xEE, 0xEE, 0xEE]);
    file.extend(&FILE[9..]);
    let (_, tags, _, rest) = read_chunked(&file, 1).unwrap();
    assert_eq!(tags, expected_tags());
    assert!(rest.is_empty());
}

#[test]
fn garbage_header_is_rejected_early() {
    let mut reader = FlvReader::new();
    assert_eq!(
        reader.read_header(&mut BytesMut::from(&b"G"[..])),
        Err(FlvError::BadSignature)
    );
    assert_eq!(
        reader.read_header(&mut BytesMut::from(&b"FLX"[..])),
        Err(FlvError::BadSignature)
    );
    assert_eq!(
        reader.read_header(&mut BytesMut::from(&b"FL"[..])),
        Ok(None)
    );
    assert_eq!(
        reader.read_header(&mut BytesMut::from(&b"<html><head>"[..])),
        Err(FlvError::BadSignature)
    );
    let mut offset_8 = BytesMut::from(&FILE[..13]);
    offset_8[8] = 8;
    assert_eq!(
        reader.read_header(&mut offset_8),
        Err(FlvError::BadDataOffset(8))
    );
    let mut offset_huge = BytesMut::from(&FILE[..9]);
    offset_huge[5..9].copy_from_slice(&[0xFF; 4]);
    assert_eq!(
        reader.read_header(&mut offset_huge),
        Err(FlvError::BadDataOffset(u32::MAX))
    );
}

#[test]
fn reader_calls_out_of_order_are_errors() {
    let mut reader = FlvReader::new();
    assert_eq!(
        reader.read_tag(&mut BytesMut::from(&FILE[13..])),
        Err(FlvError::HeaderNotRead)
    );
    let mut buf = BytesMut::from(FILE);
    reader.read_header(&mut buf).unwrap();
    assert_eq!(
        reader.read_header(&mut buf),
        Err(FlvError::HeaderAlreadyRead)
    );
}

#[test]
fn unsupported_tag_types_are_errors_and_consume_nothing() {
    for kind in [0x00, 0x0A, 0x29, 0x48, 0x89] {
        let mut reader = FlvReader::new();
        let mut buf = BytesMut::from(&FILE[..13]);
        reader.read_header(&mut buf).unwrap();
        buf.extend_from_slice(&[kind, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0xAA]);
        assert_eq!(
            reader.read_tag(&mut buf),
            Err(FlvError::UnsupportedTagType(kind))
        );
        assert_eq!(buf.len(), 12);
    }
}

#[test]
fn oversized_tag_is_refused_before_its_payload_arrives() {
    let mut reader = FlvReader::with_max_tag_data_len(100);
    let mut buf = BytesMut::from(&FILE[..13]);
    reader.read_header(&mut buf).unwrap();
    buf.extend_from_slice(&[0x09, 0x00, 0x00, 101, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        reader.read_tag(&mut buf),
        Err(FlvError::TagTooLarge {
            size: 101,
            max: 100
        })
    );
    // At the format maximum the default reader just waits.
    let mut reader = FlvReader::new();
    let mut buf = BytesMut::from(&FILE[..13]);
    reader.read_header(&mut buf).unwrap();
    buf.extend_from_slice(&[0x09, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(reader.read_tag(&mut buf), Ok(None));
    // A limit above the format maximum is clamped to it.
    assert_eq!(
        FlvReader::with_max_tag_data_len(usize::MAX).max_tag_data_len,
        MAX_TAG_DATA_LEN
    );
}

#[test]
fn truncated_file_leaves_the_partial_tag_buffered() {
    let cut = FILE.len() - 6; // Inside the last tag's payload.
    let (_, tags, _, rest) = read_chunked(&FILE[..cut], 5).unwrap();
    assert_eq!(tags, expected_tags()[..3]);
    assert_eq!(rest.len(), 11 + 5);
    // Missing only the last PreviousTagSize: every tag is delivered.
    let (_, tags, _, rest) = read_chunked(&FILE[..FILE.len() - 4], 5).unwrap();
    assert_eq!(tags, expected_tags());
    assert!(rest.is_empty());
}

#[test]
fn tag_type_numbers_match_rtmp_message_types() {
    assert_eq!(TagType::from_u8(8), Some(TagType::Audio));
    assert_eq!(TagType::from_u8(9), Some(TagType::Video));
    assert_eq!(TagType::from_u8(18), Some(TagType::Script));
    assert_eq!(TagType::from_u8(20), None);
    assert_eq!(TagType::Script as u8, 18);
}

/// Serialises with the writer's framing, as a vectored writer would.
fn write_file(header: &FlvHeader, tags: &[FlvTag]) -> Vec<u8> {
    let mut out = FlvWriter::header(header).to_vec();
    for tag in tags {
        let framing = FlvWriter::tag_header(tag.tag_type, tag.timestamp, tag.data.len());
        out.extend(framing.unwrap());
        out.extend(&tag.data[..]);
        out.extend(FlvWriter::prev_tag_size(tag.data.len()));
    }
    out
}

fn arb_tag() -> impl Strategy<Value = FlvTag> {
    (
        prop_oneof![
            Just(TagType::Audio),
            Just(TagType::Video),
            Just(TagType::Script)
        ],
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(tag_type, timestamp, data)| FlvTag {
            tag_type,
            timestamp,
            stream_id: 0,
            data: Bytes::from(data),
        })
}

proptest! {
    #[test]
    fn writer_reader_round_trip(
        has_audio in any::<bool>(),
        has_video in any::<bool>(),
        tags in proptest::collection::vec(arb_tag(), 0..12),
        chunk in 1usize..64,
    ) {
        let header = FlvHeader { has_audio, has_video };
        let file = write_file(&header, &tags);
        let (read_header, read_tags, reader, rest) = read_chunked(&file, chunk).unwrap();
        prop_assert_eq!(read_header, header);
        prop_assert_eq!(read_tags, tags);
        prop_assert!(rest.is_empty());
        prop_assert_eq!(reader.prev_tag_size_mismatches(), 0);
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        with_header in any::<bool>(),
        chunk in 1usize..32,
    ) {
        let input = if with_header { [&FILE[..13], &bytes[..]].concat() } else { bytes };
        let _ = read_chunked(&input, chunk);
    }

    #[test]
    fn mutated_file_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        chunk in 1usize..32,
    ) {
        let mut file = FILE.to_vec();
        for (at, value) in flips {
            let i = at.index(file.len());
            file[i] = value;
        }
        let _ = read_chunked(&file, chunk);
    }
}
