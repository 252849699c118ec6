use super::*;
use proptest::prelude::*;

fn parse(bytes: &[u8]) -> AudioTag {
    match parse_audio(bytes) {
        Ok(tag) => tag,
        Err(err) => panic!("{bytes:02x?} should parse: {err}"),
    }
}

fn legacy(codec: AudioCodec, kind: AudioPacketKind, rate: u32, channels: u8) -> AudioTag {
    AudioTag {
        codec,
        kind,
        enhanced: false,
        multitrack: false,
        track_id: 0,
        sample_rate: Some(rate),
        channels: Some(channels),
    }
}

fn enhanced(codec: AudioCodec, kind: AudioPacketKind) -> AudioTag {
    AudioTag {
        codec,
        kind,
        enhanced: true,
        multitrack: false,
        track_id: 0,
        sample_rate: None,
        channels: None,
    }
}

#[test]
fn aac_sequence_header_44k_stereo() {
    let bytes = [0xAF, 0x00, 0x12, 0x10];
    assert_eq!(
        parse(&bytes),
        legacy(AudioCodec::Aac, AudioPacketKind::SequenceHeader, 44_100, 2)
    );
    assert!(is_audio_sequence_header(&bytes));
    assert_eq!(aac_config(&bytes[2..]), Some((44_100, 2)));
}

#[test]
fn aac_raw_frame_and_other_packet_types() {
    let raw = [0xAF, 0x01, 0x21, 0x10, 0x04];
    assert_eq!(parse(&raw).kind, AudioPacketKind::Frame);
    assert!(!is_audio_sequence_header(&raw));
    assert_eq!(parse(&[0xAF, 0x05]).kind, AudioPacketKind::Other);
    assert_eq!(
        parse_audio(&[0xAF]),
        Err(FlvError::Truncated("AACPacketType"))
    );
}

#[test]
fn empty_payload_is_the_silence_marker_error() {
    assert_eq!(parse_audio(&[]), Err(FlvError::EmptyPayload));
    assert!(!is_audio_sequence_header(&[]));
}

#[test]
fn legacy_flags_give_rate_and_channels() {
    // MP3, rate 3 (44.1k), 16-bit, mono / stereo.
    assert_eq!(
        parse(&[0x2E]),
        legacy(AudioCodec::Mp3, AudioPacketKind::Frame, 44_100, 1)
    );
    assert_eq!(parse(&[0x2F]).channels, Some(2));
    // PCM rates 0..=2.
    assert_eq!(parse(&[0x02]).sample_rate, Some(5_512));
    assert_eq!(parse(&[0x36]).sample_rate, Some(11_025));
    assert_eq!(parse(&[0x1A]).sample_rate, Some(22_050));
    assert_eq!(parse(&[0x3A]).codec, AudioCodec::PcmLe);
    assert_eq!(parse(&[0x1A]).codec, AudioCodec::Adpcm);
    assert_eq!(parse(&[0x72]).codec, AudioCodec::G711A);
    assert_eq!(parse(&[0x82]).codec, AudioCodec::G711U);
}

#[test]
fn formats_with_fixed_rates_ignore_the_flags() {
    assert_eq!(
        parse(&[0x4F]),
        legacy(AudioCodec::Nellymoser, AudioPacketKind::Frame, 16_000, 1)
    );
    assert_eq!(
        parse(&[0x5F]),
        legacy(AudioCodec::Nellymoser, AudioPacketKind::Frame, 8_000, 1)
    );
    assert_eq!(parse(&[0x6E]).sample_rate, Some(44_100));
    assert_eq!(
        parse(&[0xB2]),
        legacy(AudioCodec::Speex, AudioPacketKind::Frame, 16_000, 1)
    );
    assert_eq!(
        parse(&[0xE3]),
        legacy(AudioCodec::Mp3At8kHz, AudioPacketKind::Frame, 8_000, 2)
    );
    assert_eq!(parse(&[0xC2]).codec, AudioCodec::Other(12));
    assert_eq!(parse(&[0xF2]).codec, AudioCodec::Other(15));
}

#[test]
fn enhanced_opus_sequence_start() {
    let bytes = [
        0x90, b'O', b'p', b'u', b's', b'O', b'p', b'u', b's', b'H', b'e', b'a', b'd',
    ];
    assert_eq!(
        parse(&bytes),
        enhanced(AudioCodec::Opus, AudioPacketKind::SequenceHeader)
    );
    assert!(is_audio_sequence_header(&bytes));
}

#[test]
fn enhanced_packet_types_and_fourccs() {
    assert_eq!(
        parse(&[0x91, b'm', b'p', b'4', b'a', 0x21]),
        enhanced(AudioCodec::Aac, AudioPacketKind::Frame)
    );
    assert_eq!(
        parse(&[0x92, b'f', b'L', b'a', b'C']),
        enhanced(AudioCodec::Flac, AudioPacketKind::EndOfSequence)
    );
    assert_eq!(
        parse(&[0x94, b'a', b'c', b'-', b'3', 0x00, 0x06]),
        enhanced(AudioCodec::Ac3, AudioPacketKind::MultichannelConfig)
    );
    assert_eq!(
        parse(&[0x91, b'e', b'c', b'-', b'3']).codec,
        AudioCodec::Eac3
    );
    assert_eq!(
        parse(&[0x91, b'.', b'm', b'p', b'3']).codec,
        AudioCodec::Mp3
    );
    assert_eq!(
        parse(&[0x91, b'a', b'b', b'c', b'd']).codec,
        AudioCodec::Other(0x6162_6364)
    );
    assert_eq!(
        parse(&[0x93, b'O', b'p', b'u', b's']).kind,
        AudioPacketKind::Other
    );
    assert_eq!(
        parse_audio(&[0x90, b'O']),
        Err(FlvError::Truncated("FourCC"))
    );
}

#[test]
fn enhanced_mod_ex_then_packet_type() {
    let tag = parse(&[0x97, 0x00, 0xAA, 0x01, b'O', b'p', b'u', b's', 0xFC]);
    assert_eq!(tag, enhanced(AudioCodec::Opus, AudioPacketKind::Frame));
}

#[test]
fn enhanced_multitrack() {
    // Multitrack(5) | OneTrack << 4 | SequenceStart, mp4a, track 1, ASC.
    let one = parse(&[0x95, 0x00, b'm', b'p', b'4', b'a', 0x01, 0x12, 0x10]);
    assert_eq!(
        one,
        AudioTag {
            multitrack: true,
            track_id: 1,
            ..enhanced(AudioCodec::Aac, AudioPacketKind::SequenceHeader)
        }
    );
    // ManyTracksManyCodecs | CodedFrames: FourCC, track 0, UI24 size.
    let many = parse(&[
        0x95, 0x21, b'O', b'p', b'u', b's', 0x00, 0x00, 0x00, 0x03, 1, 2, 3,
    ]);
    assert_eq!(
        (many.codec, many.kind, many.multitrack),
        (AudioCodec::Opus, AudioPacketKind::Frame, true)
    );
    assert_eq!(
        parse_audio(&[0x95, 0xF1]),
        Err(FlvError::UnknownMultitrackType(15))
    );
}

#[test]
fn aac_config_vectors() {
    // AAC-LC 48 kHz stereo.
    assert_eq!(aac_config(&[0x11, 0x90]), Some((48_000, 2)));
    // AAC-LC 48 kHz, channel config 7 = 7.1.
    assert_eq!(aac_config(&[0x11, 0xB8]), Some((48_000, 8)));
    // HE-AAC explicit: AOT 5, core 24 kHz stereo, extension 48 kHz.
    assert_eq!(aac_config(&[0x2B, 0x11, 0x88]), Some((48_000, 2)));
    // HE-AACv2 explicit: AOT 29, core 24 kHz mono, extension 48 kHz.
    assert_eq!(aac_config(&[0xEB, 0x09, 0x88]), Some((48_000, 2)));
    // Escaped object type 42, 48 kHz stereo.
    assert_eq!(aac_config(&[0xF9, 0x46, 0x40]), Some((48_000, 2)));
    // Explicit 24-bit frequency 44100.
    assert_eq!(
        aac_config(&[0x17, 0x80, 0x56, 0x22, 0x10]),
        Some((44_100, 2))
    );
}

#[test]
fn aac_config_rejects_what_it_cannot_describe() {
    assert_eq!(aac_config(&[]), None);
    assert_eq!(aac_config(&[0x12]), None);
    // Channel configuration 0: layout in a PCE.
    assert_eq!(aac_config(&[0x12, 0x00]), None);
    // Reserved frequency index 13.
    assert_eq!(aac_config(&[0x16, 0x90]), None);
    // Explicit frequency cut short.
    assert_eq!(aac_config(&[0x17, 0x80, 0x56]), None);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = parse_audio(&bytes);
        let _ = is_audio_sequence_header(&bytes);
        let _ = aac_config(&bytes);
    }

    /// Every legacy non-AAC first byte classifies as a frame; the rate
    /// is always one the FLV spec can express.
    #[test]
    fn legacy_single_byte_always_classifies(first in any::<u8>()) {
        let format = first >> 4;
        prop_assume!(format != 9 && format != 10);
        let tag = parse_audio(&[first]);
        prop_assert!(tag.is_ok_and(|t| t.kind == AudioPacketKind::Frame
            && matches!(t.sample_rate, Some(5_512 | 8_000 | 11_025 | 16_000 | 22_050 | 44_100))));
    }

    #[test]
    fn mutated_enhanced_never_panics(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = vec![0x97, 0x01, 0x00, 0x00, 0x05, 0x21, b'O', b'p', b'u', b's', 0x00, 0x00, 0x00, 0x01, 0xFC];
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        bytes.truncate(cut.index(bytes.len() + 1));
        let _ = parse_audio(&bytes);
    }
}

#[test]
fn the_audio_configuration_is_found_behind_legacy_and_enhanced_headers() {
    assert_eq!(
        audio_configuration(&[0xAF, 0x00, 0x11, 0x90]),
        Ok(Some((AudioCodec::Aac, &[0x11, 0x90][..])))
    );
    let head = b"OpusHead";
    let opus = [&[0x90][..], b"Opus", head].concat();
    assert_eq!(
        audio_configuration(&opus),
        Ok(Some((AudioCodec::Opus, &head[..])))
    );
    // A raw AAC frame, MP3 (no sequence header), a frame of enhanced audio.
    assert_eq!(audio_configuration(&[0xAF, 0x01, 0x21]), Ok(None));
    assert_eq!(audio_configuration(&[0x2F, 0xFF, 0xFB]), Ok(None));
    assert_eq!(
        audio_configuration(&[&[0x91][..], b"Opus", &[1]].concat()),
        Ok(None)
    );
    assert!(audio_configuration(&[0xAF]).is_err());
}
