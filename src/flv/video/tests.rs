use super::*;
use proptest::prelude::*;

fn parse(bytes: &[u8]) -> VideoTag {
    match parse_video(bytes) {
        Ok(tag) => tag,
        Err(err) => panic!("{bytes:02x?} should parse: {err}"),
    }
}

/// A legacy, single-track tag as most tests expect it.
fn legacy(codec: VideoCodec, kind: VideoPacketKind, frame_type: VideoFrameType) -> VideoTag {
    VideoTag {
        codec,
        kind,
        keyframe: false,
        frame_type,
        enhanced: false,
        multitrack: false,
        track_id: 0,
        composition_time: 0,
    }
}

fn enhanced(codec: VideoCodec, kind: VideoPacketKind, frame_type: VideoFrameType) -> VideoTag {
    VideoTag {
        enhanced: true,
        ..legacy(codec, kind, frame_type)
    }
}

#[test]
fn avc_sequence_header_is_not_a_keyframe() {
    let tag = parse(&[0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64]);
    use VideoPacketKind::SequenceHeader;
    assert_eq!(
        tag,
        legacy(VideoCodec::Avc, SequenceHeader, VideoFrameType::Key)
    );
    assert!(is_video_sequence_header(&[0x17, 0x00, 0x00, 0x00, 0x00]));
    assert!(!is_video_keyframe(&[0x17, 0x00, 0x00, 0x00, 0x00]));
}

#[test]
fn avc_keyframe_with_negative_composition_time() {
    let tag = parse(&[
        0x17, 0x01, 0xFF, 0xFF, 0xD8, 0x00, 0x00, 0x00, 0x02, 0x65, 0x88,
    ]);
    assert_eq!(tag.kind, VideoPacketKind::Frame);
    assert!(tag.keyframe);
    assert_eq!(tag.composition_time, -40);
    assert!(is_video_keyframe(&[0x17, 0x01, 0x00, 0x00, 0x00]));
}

#[test]
fn avc_inter_frame() {
    let tag = parse(&[0x27, 0x01, 0x00, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01, 0x41]);
    assert_eq!(
        tag,
        VideoTag {
            composition_time: 80,
            ..legacy(
                VideoCodec::Avc,
                VideoPacketKind::Frame,
                VideoFrameType::Inter
            )
        }
    );
    assert!(!is_video_keyframe(&[0x27, 0x01, 0x00, 0x00, 0x50]));
}

#[test]
fn avc_end_of_sequence_is_neither_header_nor_keyframe() {
    for bytes in [&[0x17, 0x02][..], &[0x17, 0x02, 0x00, 0x00, 0x00]] {
        let tag = parse(bytes);
        assert_eq!(tag.kind, VideoPacketKind::EndOfSequence);
        assert!(!tag.keyframe);
        assert!(!is_video_sequence_header(bytes));
    }
}

#[test]
fn avc_unknown_packet_type_is_other() {
    assert_eq!(parse(&[0x17, 0x03]).kind, VideoPacketKind::Other);
    assert!(!is_video_keyframe(&[0x17, 0x03, 0, 0, 0]));
}

#[test]
fn legacy_command_frame() {
    for bytes in [&[0x57][..], &[0x57, 0x00], &[0x57, 0x01]] {
        let tag = parse(bytes);
        assert_eq!(
            tag,
            legacy(
                VideoCodec::Avc,
                VideoPacketKind::Command,
                VideoFrameType::Command
            )
        );
    }
}

#[test]
fn legacy_pre_avc_codecs_are_frames_without_packet_type() {
    let vp6 = parse(&[0x14, 0x00, 0x12]);
    assert_eq!(
        (vp6.codec, vp6.kind, vp6.keyframe),
        (VideoCodec::Vp6, VideoPacketKind::Frame, true)
    );
    let h263 = parse(&[0x22]);
    assert_eq!((h263.codec, h263.keyframe), (VideoCodec::H263, false));
    let disposable = parse(&[0x32, 0x00]);
    assert_eq!(disposable.frame_type, VideoFrameType::DisposableInter);
    assert_eq!(parse(&[0x13]).codec, VideoCodec::ScreenVideo);
    assert_eq!(parse(&[0x15]).codec, VideoCodec::Vp6Alpha);
    assert_eq!(parse(&[0x16]).codec, VideoCodec::ScreenVideo2);
    assert_eq!(parse(&[0x11]).codec, VideoCodec::Other(1));
    assert_eq!(parse(&[0x0F]).frame_type, VideoFrameType::Reserved(0));
}

#[test]
fn legacy_hevc_codec_id_12_uses_avc_packet_types() {
    let tag = parse(&[0x1C, 0x00, 0x00, 0x00, 0x00]);
    assert_eq!(
        (tag.codec, tag.kind),
        (VideoCodec::Hevc, VideoPacketKind::SequenceHeader)
    );
    let frame = parse(&[0x2C, 0x01, 0x00, 0x00, 0x21]);
    assert_eq!(frame.composition_time, 33);
}

#[test]
fn legacy_truncations_are_errors() {
    assert_eq!(parse_video(&[]), Err(FlvError::EmptyPayload));
    assert_eq!(
        parse_video(&[0x17]),
        Err(FlvError::Truncated("AVCPacketType"))
    );
    assert_eq!(
        parse_video(&[0x27, 0x01, 0x00, 0x00]),
        Err(FlvError::Truncated("AVC composition time"))
    );
    assert!(!is_video_keyframe(&[]));
    assert!(!is_video_sequence_header(&[0x17]));
}

#[test]
fn enhanced_hevc_sequence_start() {
    let tag = parse(&[0x90, b'h', b'v', b'c', b'1', 0x01, 0x01, 0x60]);
    assert_eq!(
        tag,
        enhanced(
            VideoCodec::Hevc,
            VideoPacketKind::SequenceHeader,
            VideoFrameType::Key
        )
    );
    assert!(is_video_sequence_header(&[0x90, b'h', b'v', b'c', b'1']));
}

#[test]
fn enhanced_hevc_coded_frames_keyframe_reads_composition_time() {
    let tag = parse(&[
        0x91, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x21, 0x00, 0x00, 0x00, 0x05,
    ]);
    assert_eq!(
        tag,
        VideoTag {
            keyframe: true,
            composition_time: 33,
            ..enhanced(
                VideoCodec::Hevc,
                VideoPacketKind::Frame,
                VideoFrameType::Key
            )
        }
    );
}

#[test]
fn enhanced_av1_coded_frames_x_inter() {
    let tag = parse(&[0xA3, b'a', b'v', b'0', b'1', 0x12, 0x00, 0x0A]);
    assert_eq!(
        tag,
        enhanced(
            VideoCodec::Av1,
            VideoPacketKind::Frame,
            VideoFrameType::Inter
        )
    );
}

#[test]
fn enhanced_av1_coded_frames_have_no_composition_time() {
    // 0x12 0x00 0x0A is the start of an OBU, not an SI24.
    let tag = parse(&[0x91, b'a', b'v', b'0', b'1', 0x12, 0x00, 0x0A]);
    assert_eq!((tag.keyframe, tag.composition_time), (true, 0));
    let vp9 = parse(&[0x91, b'v', b'p', b'0', b'9']);
    assert_eq!((vp9.codec, vp9.keyframe), (VideoCodec::Vp9, true));
}

#[test]
fn enhanced_coded_frames_needing_composition_time_can_be_truncated() {
    assert_eq!(
        parse_video(&[0x91, b'a', b'v', b'c', b'1', 0x00]),
        Err(FlvError::Truncated("E-RTMP composition time"))
    );
}

#[test]
fn enhanced_fourccs() {
    let codec = |code: &[u8; 4]| {
        let [a, b, c, d] = *code;
        parse(&[0x93, a, b, c, d]).codec
    };
    assert_eq!(codec(b"avc1"), VideoCodec::Avc);
    assert_eq!(codec(b"vp08"), VideoCodec::Vp8);
    assert_eq!(codec(b"vvc1"), VideoCodec::Vvc);
    assert_eq!(codec(b"xyzw"), VideoCodec::Other(0x7879_7A77));
    assert_eq!(VideoCodec::from_fourcc(1_635_135_537), VideoCodec::Av1);
}

#[test]
fn enhanced_sequence_end_metadata_and_ts_sequence_start() {
    let end = parse(&[0x92, b'h', b'v', b'c', b'1']);
    assert_eq!(
        (end.kind, end.keyframe),
        (VideoPacketKind::EndOfSequence, false)
    );
    let meta = parse(&[0x94, b'a', b'v', b'0', b'1', 0x02, 0x00, 0x09]);
    assert_eq!(
        (meta.kind, meta.keyframe),
        (VideoPacketKind::Metadata, false)
    );
    let ts = parse(&[0x95, b'a', b'v', b'0', b'1']);
    assert_eq!(ts.kind, VideoPacketKind::SequenceHeader);
    assert_eq!(
        parse(&[0x98, b'a', b'v', b'0', b'1']).kind,
        VideoPacketKind::Other
    );
}

#[test]
fn enhanced_command_frame_has_no_fourcc() {
    let tag = parse(&[0xD1, 0x00]);
    assert_eq!(
        tag,
        enhanced(
            VideoCodec::Unspecified,
            VideoPacketKind::Command,
            VideoFrameType::Command
        )
    );
    // Metadata sent with the command frame type still has its FourCC.
    let meta = parse(&[0xD4, b'h', b'v', b'c', b'1']);
    assert_eq!(
        (meta.codec, meta.kind),
        (VideoCodec::Hevc, VideoPacketKind::Metadata)
    );
}

#[test]
fn mod_ex_block_is_skipped_then_real_packet_type_used() {
    // ModEx: size byte 2 => 3 data bytes (TimestampOffsetNano), then
    // ModEx type 0 | packet type 1 (CodedFrames), FourCC, SI24.
    let tag = parse(&[
        0x97, 0x02, 0x00, 0x01, 0xF4, 0x01, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x10,
    ]);
    assert_eq!(
        (tag.codec, tag.kind, tag.keyframe, tag.composition_time),
        (VideoCodec::Hevc, VideoPacketKind::Frame, true, 16)
    );
}

#[test]
fn mod_ex_blocks_chain() {
    let tag = parse(&[
        0xA7, 0x00, 0xAA, 0x07, 0x01, 0xBB, 0xCC, 0x03, b'a', b'v', b'0', b'1',
    ]);
    assert_eq!(
        (tag.codec, tag.kind, tag.frame_type),
        (
            VideoCodec::Av1,
            VideoPacketKind::Frame,
            VideoFrameType::Inter
        )
    );
}

#[test]
fn mod_ex_escaped_size_uses_the_following_u16() {
    // 0xFF escapes; UI16 0x0100 + 1 = 257 data bytes.
    let mut bytes = vec![0x97, 0xFF, 0x01, 0x00];
    bytes.extend(std::iter::repeat_n(0x55, 257));
    bytes.extend([0x00, b'h', b'v', b'c', b'1']);
    assert_eq!(parse(&bytes).kind, VideoPacketKind::SequenceHeader);
    // One data byte short: the type byte is swallowed as data (so the
    // 257-byte size really was used) and the type byte is then missing.
    let short = [&bytes[..4], &[0x55; 256], &[0x00]].concat();
    assert_eq!(
        parse_video(&short),
        Err(FlvError::Truncated("ModEx type and packet type"))
    );
}

#[test]
fn mod_ex_truncations() {
    assert_eq!(
        parse_video(&[0x97]),
        Err(FlvError::Truncated("ModEx data size"))
    );
    assert_eq!(
        parse_video(&[0x97, 0xFF, 0x01]),
        Err(FlvError::Truncated("ModEx extended data size"))
    );
    assert_eq!(
        parse_video(&[0x97, 0x05, 0, 0]),
        Err(FlvError::Truncated("ModEx data"))
    );
    assert_eq!(
        parse_video(&[0x97, 0x00, 0x00]),
        Err(FlvError::Truncated("ModEx type and packet type"))
    );
}

#[test]
fn multitrack_one_track() {
    // Multitrack | OneTrack(0) << 4 | SequenceStart(0), avc1, track 1.
    let tag = parse(&[0x96, 0x00, b'a', b'v', b'c', b'1', 0x01, 0x01, 0x64]);
    assert_eq!(
        tag,
        VideoTag {
            multitrack: true,
            track_id: 1,
            ..enhanced(
                VideoCodec::Avc,
                VideoPacketKind::SequenceHeader,
                VideoFrameType::Key
            )
        }
    );
}

#[test]
fn multitrack_many_tracks_reads_size_then_composition_time() {
    // ManyTracks(1) | CodedFrames(1), avc1, track 0, UI24 size 16, SI24 5.
    let tag = parse(&[
        0x96, 0x11, b'a', b'v', b'c', b'1', 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x05,
    ]);
    assert_eq!(
        (tag.kind, tag.keyframe, tag.track_id, tag.composition_time),
        (VideoPacketKind::Frame, true, 0, 5)
    );
}

#[test]
fn multitrack_many_codecs_has_fourcc_per_track() {
    // ManyTracksManyCodecs(2) | CodedFrames(1), then per track: FourCC,
    // track id 2, UI24 size, SI24 -1.
    let tag = parse(&[
        0xA6, 0x21, b'h', b'v', b'c', b'1', 0x02, 0x00, 0x00, 0x08, 0xFF, 0xFF, 0xFF,
    ]);
    assert_eq!(
        (tag.codec, tag.track_id, tag.composition_time, tag.keyframe),
        (VideoCodec::Hevc, 2, -1, false)
    );
}

#[test]
fn multitrack_errors() {
    assert_eq!(
        parse_video(&[0x96, 0x30]),
        Err(FlvError::UnknownMultitrackType(3))
    );
    assert_eq!(
        parse_video(&[0x96]),
        Err(FlvError::Truncated("multitrack type and packet type"))
    );
    assert_eq!(
        parse_video(&[0x96, 0x00, b'a', b'v', b'c', b'1']),
        Err(FlvError::Truncated("multitrack track id"))
    );
    assert_eq!(
        parse_video(&[0x96, 0x10, b'a', b'v', b'c', b'1', 0x00, 0x00]),
        Err(FlvError::Truncated("multitrack track size"))
    );
    // A nested Multitrack packet type is not defined: forwarded as Other.
    let nested = parse(&[0x96, 0x06, b'a', b'v', b'c', b'1', 0x00]);
    assert_eq!(nested.kind, VideoPacketKind::Other);
}

#[test]
fn enhanced_truncated_fourcc() {
    assert_eq!(
        parse_video(&[0x90, b'h', b'v']),
        Err(FlvError::Truncated("FourCC"))
    );
    assert_eq!(parse_video(&[0x90]), Err(FlvError::Truncated("FourCC")));
}

/// Valid payloads covering every branch, used as mutation seeds.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        vec![0x17, 0x00, 0x00, 0x00, 0x00, 0x01],
        vec![0x27, 0x01, 0x00, 0x00, 0x50, 0x00],
        vec![0x57, 0x00],
        vec![0x91, b'h', b'v', b'c', b'1', 0x00, 0x00, 0x21],
        vec![
            0x97, 0x02, 0x00, 0x01, 0xF4, 0x01, b'h', b'v', b'c', b'1', 0, 0, 1,
        ],
        vec![0x97, 0xFF, 0x00, 0x01, 0, 0, 0x00, b'a', b'v', b'0', b'1'],
        vec![
            0xA6, 0x21, b'h', b'v', b'c', b'1', 0x02, 0, 0, 8, 0xFF, 0xFF, 0xFF,
        ],
        vec![0xD1, 0x00],
    ]
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_video(&bytes);
        let _ = is_video_keyframe(&bytes);
        let _ = is_video_sequence_header(&bytes);
    }

    #[test]
    fn mutated_seeds_never_panic(
        seed in 0..8usize,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = seeds().swap_remove(seed);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = parse_video(&bytes);
    }

    /// A strict prefix of a valid payload is either still classifiable
    /// or a truncation/empty error, never some other failure.
    #[test]
    fn prefixes_fail_only_as_truncated(seed in 0..8usize, cut in any::<prop::sample::Index>()) {
        let bytes = seeds().swap_remove(seed);
        let prefix = &bytes[..cut.index(bytes.len())];
        match parse_video(prefix) {
            Ok(_) | Err(FlvError::Truncated(_) | FlvError::EmptyPayload) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    /// ModEx blocks of any size (encoded per spec) are skipped exactly.
    #[test]
    fn mod_ex_any_size_is_skipped(len in 1usize..=600, fill in any::<u8>()) {
        let mut bytes = vec![0x97];
        if len >= 256 {
            bytes.push(0xFF);
            bytes.extend(u16::try_from(len - 1).unwrap_or(u16::MAX).to_be_bytes());
        } else {
            bytes.push(u8::try_from(len - 1).unwrap_or(0));
        }
        bytes.extend(std::iter::repeat_n(fill, len));
        bytes.extend([0x02, b'v', b'p', b'0', b'9']);
        let tag = parse_video(&bytes);
        prop_assert_eq!(tag.map(|t| (t.codec, t.kind)), Ok((VideoCodec::Vp9, VideoPacketKind::EndOfSequence)));
    }
}

#[test]
fn the_configuration_record_is_found_behind_every_header_layout() {
    let record = [0x01, 0x64, 0x00, 0x1F];
    // Legacy AVC: FrameType|CodecID, AVCPacketType 0, composition time.
    let legacy = [&[0x17, 0x00, 0, 0, 0][..], &record].concat();
    assert_eq!(
        video_configuration(&legacy),
        Ok(Some((VideoCodec::Avc, &record[..])))
    );
    // Enhanced SequenceStart with the FourCC.
    let enhanced = [&[0x90][..], b"hvc1", &record].concat();
    assert_eq!(
        video_configuration(&enhanced),
        Ok(Some((VideoCodec::Hevc, &record[..])))
    );
    // Through a ModEx block (packet type 7, one data byte, then SequenceStart).
    let mod_ex = [&[0x97, 0x00, 0xAA, 0x00][..], b"av01", &record].concat();
    assert_eq!(
        video_configuration(&mod_ex),
        Ok(Some((VideoCodec::Av1, &record[..])))
    );
    // Multitrack, one track (id 0): OneTrack | SequenceStart, FourCC, track id.
    let one_track = [&[0x96, 0x00][..], b"avc1", &[0x00], &record].concat();
    assert_eq!(
        video_configuration(&one_track),
        Ok(Some((VideoCodec::Avc, &record[..])))
    );
    // Not a sequence header, another track, a codec without one, cut short.
    assert_eq!(video_configuration(&[0x17, 0x01, 0, 0, 0, 9]), Ok(None));
    let track_one = [&[0x96, 0x00][..], b"avc1", &[0x01], &record].concat();
    assert_eq!(video_configuration(&track_one), Ok(None));
    assert_eq!(video_configuration(&[0x14, 0x00]), Ok(None));
    assert!(video_configuration(&[0x17, 0x00, 0]).is_err());
    assert!(video_configuration(&[]).is_err());
}
