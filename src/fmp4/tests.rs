use bytes::Bytes;
use mp4_atom::{Any, Codec, Decode, Moof, Moov, TrunSamples};

use super::*;

/// The sequence headers of a 320x240 H.264 (Constrained Baseline) and 44.1 kHz
/// mono AAC stream, as an FLV file from ffmpeg carries them.
fn avc_header() -> Vec<u8> {
    hex("17000000000142c00dffe100166742c00dda0507ec0440000003004000000f03c50aa801000468ce0fc8")
}
fn aac_header() -> Vec<u8> {
    hex("af00120856e500")
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// An H.264 frame payload (legacy FLV header) with `body` as its NAL units.
fn video(keyframe: bool, cts: i32, body: &[u8]) -> Bytes {
    let mut out = vec![if keyframe { 0x17 } else { 0x27 }, 1];
    out.extend_from_slice(&cts.to_be_bytes()[1..]);
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn audio(body: &[u8]) -> Bytes {
    let mut out = vec![0xaf, 1];
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn boxes(bytes: &[u8]) -> Vec<Any> {
    let mut buf = bytes;
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(Any::decode(&mut buf).unwrap());
    }
    out
}

#[test]
fn the_init_segment_describes_both_tracks() {
    let (_, init) = Fmp4Muxer::new(Some(&avc_header()), Some(&aac_header())).unwrap();
    let parsed = boxes(&init);
    let Any::Moov(moov) = &parsed[1] else {
        panic!("{parsed:?}")
    };
    let moov: &Moov = moov;
    assert_eq!(moov.trak.len(), 2);
    assert_eq!(moov.mvex.as_ref().unwrap().trex.len(), 2);
    let video = &moov.trak[0];
    assert_eq!((video.tkhd.track_id, video.mdia.mdhd.timescale), (1, 1000));
    match &video.mdia.minf.stbl.stsd.codecs[0] {
        Codec::Avc1(avc1) => {
            assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
            assert_eq!(avc1.avcc.sequence_parameter_sets.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    match &moov.trak[1].mdia.minf.stbl.stsd.codecs[0] {
        Codec::Mp4a(mp4a) => {
            assert_eq!(mp4a.audio.channel_count, 1);
            let specific = mp4a.esds.es_desc.dec_config.dec_specific.as_ref().unwrap();
            assert_eq!(
                specific.raw,
                hex("120856e500"),
                "the AudioSpecificConfig as sent"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fragments_end_before_each_keyframe_with_durations_and_offsets_that_add_up() {
    let (mut muxer, _) = Fmp4Muxer::new(Some(&avc_header()), Some(&aac_header())).unwrap();
    assert!(muxer.push_video(0, &video(true, 0, b"KEY0")));
    muxer.push_audio(0, &audio(b"a0"));
    assert!(!muxer.push_video(33, &video(false, 33, b"P1")));
    muxer.push_audio(23, &audio(b"a1"));
    assert!(!muxer.push_video(66, &video(false, 0, b"P2")));
    // The next keyframe: the fragment holds the three frames before it.
    assert!(muxer.push_video(100, &video(true, 0, b"KEY3")));
    let fragment = muxer.fragment().unwrap().unwrap();
    let parsed = boxes(&fragment);
    let Any::Moof(moof) = &parsed[0] else {
        panic!("{parsed:?}")
    };
    let moof: &Moof = moof;
    let Any::Mdat(mdat) = &parsed[1] else {
        panic!("{parsed:?}")
    };
    assert_eq!(mdat.data, b"KEY0P1P2a0");
    let video_run = &moof.traf[0];
    assert_eq!(video_run.tfdt.as_ref().unwrap().base_media_decode_time, 0);
    let TrunSamples::Explicit(samples) = &video_run.trun[0].samples else {
        panic!()
    };
    let durations: Vec<_> = samples.iter().map(|s| s.duration.unwrap()).collect();
    assert_eq!(durations, [33, 33, 34]);
    assert_eq!(samples[1].cts, Some(33));
    assert_eq!(samples[0].flags, Some(SYNC));
    assert_eq!(samples[1].flags, Some(NON_SYNC));
    // The data offsets point into the mdat, from the moof's first byte.
    let moof_len = fragment.len() - 8 - mdat.data.len();
    assert_eq!(video_run.trun[0].data_offset, Some((moof_len + 8) as i32));
    assert_eq!(
        moof.traf[1].trun[0].data_offset,
        Some((moof_len + 8 + 8) as i32)
    );
    // Audio: the first frame (its duration known), the second still waits.
    let TrunSamples::Explicit(audio_samples) = &moof.traf[1].trun[0].samples else {
        panic!()
    };
    assert_eq!(audio_samples.len(), 1);
    assert_eq!(audio_samples[0].duration, Some(23));
    // The end: the keyframe and the last audio frame, with the durations before them.
    let last = muxer.finish().unwrap().unwrap();
    let parsed = boxes(&last);
    let Any::Moof(moof) = &parsed[0] else {
        panic!()
    };
    assert_eq!(moof.mfhd.sequence_number, 2);
    let TrunSamples::Explicit(samples) = &moof.traf[0].trun[0].samples else {
        panic!()
    };
    assert_eq!(samples[0].duration, Some(34));
    assert_eq!(
        moof.traf[0].tfdt.as_ref().unwrap().base_media_decode_time,
        100
    );
    assert!(muxer.finish().unwrap().is_none());
}

#[test]
fn other_codecs_and_no_configuration_are_refused() {
    // Speex (SoundFormat 11) sequence: not AAC.
    assert!(matches!(
        Fmp4Muxer::new(None, Some(&[0xb2, 0x00, 0x01])),
        Err(Fmp4Error::Config(_) | Fmp4Error::Codec(_))
    ));
    assert_eq!(Fmp4Muxer::new(None, None).unwrap_err(), Fmp4Error::NoTracks);
    // A truncated AVC configuration.
    assert!(Fmp4Muxer::new(Some(&avc_header()[..8]), None).is_err());
}

mod hostile {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever a publisher sends as sequence headers and frames, the muxer
        /// answers with an error or with boxes, never a panic: its input comes
        /// from the network.
        #[test]
        fn any_bytes_make_an_error_or_boxes(
            video_header in proptest::collection::vec(any::<u8>(), 0..64),
            audio_header in proptest::collection::vec(any::<u8>(), 0..16),
            frames in proptest::collection::vec(
                (any::<bool>(), 0u64..10_000, proptest::collection::vec(any::<u8>(), 0..32)),
                0..40,
            ),
        ) {
            let mut video_header = video_header;
            // Half the time, a header that gets past the FLV layer.
            if video_header.len() > 5 && video_header[0] & 1 == 0 {
                video_header[..5].copy_from_slice(&[0x17, 0, 0, 0, 0]);
            }
            let headers = [
                (Some(&video_header[..]), Some(&audio_header[..])),
                (Some(&avc_header()[..]), Some(&audio_header[..])),
                (Some(&video_header[..]), Some(&aac_header()[..])),
            ];
            for (video_header, audio_header) in headers {
                let Ok((mut muxer, _)) = Fmp4Muxer::new(video_header, audio_header) else {
                    continue;
                };
                for (is_video, dts, body) in &frames {
                    let payload = Bytes::from(body.clone());
                    if *is_video {
                        muxer.push_video(*dts, &payload);
                    } else {
                        muxer.push_audio(*dts, &payload);
                    }
                    let _ = muxer.fragment();
                }
                let _ = muxer.finish();
            }
        }
    }
}

#[test]
fn an_opus_head_becomes_a_dops_box_and_enhanced_frames_become_samples() {
    // Enhanced audio sequence start (SoundFormat 9, PacketType 0, FourCC Opus)
    // carrying OpusHead: stereo, pre-skip 312, 48 kHz, gain 0, family 0.
    let mut header = vec![0x90];
    header.extend_from_slice(b"Opus");
    header.extend_from_slice(b"OpusHead");
    header.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
    let (mut muxer, init) = Fmp4Muxer::new(None, Some(&header)).unwrap();
    let Any::Moov(moov) = &boxes(&init)[1] else {
        panic!()
    };
    let Codec::Opus(opus) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("{:?}", moov.trak[0].mdia.minf.stbl.stsd.codecs)
    };
    assert_eq!(opus.dops.output_channel_count, 2);
    assert_eq!(opus.dops.pre_skip, 312);
    assert_eq!(opus.dops.input_sample_rate, 48000);
    assert!(opus.dops.channel_mapping.is_none());
    // Coded frames (PacketType 1): the Opus packet after the 5-byte header.
    for (i, dts) in [0u64, 20, 40].into_iter().enumerate() {
        let mut frame = vec![0x91];
        frame.extend_from_slice(b"Opus");
        frame.extend_from_slice(&[0xfc, i as u8]);
        muxer.push_audio(dts, &Bytes::from(frame));
    }
    let fragment = muxer.finish().unwrap().unwrap();
    let Any::Mdat(mdat) = &boxes(&fragment)[1] else {
        panic!()
    };
    assert_eq!(mdat.data, [0xfc, 0, 0xfc, 1, 0xfc, 2]);
    // A truncated head is refused, not guessed.
    assert_eq!(
        Fmp4Muxer::new(None, Some(&header[..20])).unwrap_err(),
        Fmp4Error::Config("Opus")
    );
}
