use bytes::Bytes;
use mp4_atom::{Any, Decode, TrunSamples};
use proptest::prelude::*;

use super::*;

/// The sequence headers of a 320x240 H.264 and a 44.1 kHz mono AAC stream, as
/// ffmpeg's FLV carries them.
fn avc_header() -> Packet {
    config(
        PacketKind::Video,
        "17000000000142c00dffe100166742c00dda0507ec0440000003004000000f03c50aa801000468ce0fc8",
    )
}

fn aac_header() -> Packet {
    config(PacketKind::Audio, "af00120856e500")
}

fn config(kind: PacketKind, hex: &str) -> Packet {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    Packet {
        kind,
        timestamp: 0,
        payload: Bytes::from(bytes),
        keyframe: false,
        sequence_header: true,
    }
}

/// A video frame whose NAL bytes carry its index, so the tests can tell frames apart.
fn frame(keyframe: bool, index: u32) -> Packet {
    let mut payload = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    payload.extend_from_slice(&index.to_be_bytes());
    Packet {
        kind: PacketKind::Video,
        timestamp: 0,
        payload: Bytes::from(payload),
        keyframe,
        sequence_header: false,
    }
}

fn sound(index: u32) -> Packet {
    let mut payload = vec![0xaf, 1];
    payload.extend_from_slice(&index.to_be_bytes());
    Packet {
        kind: PacketKind::Audio,
        timestamp: 0,
        payload: Bytes::from(payload),
        keyframe: false,
        sequence_header: false,
    }
}

const TIMING: Timing = Timing {
    segment_ms: 2000,
    part_ms: 500,
    window: 1000,
};

/// What a part holds: each track's samples as (decode time, sync, first bytes).
#[derive(Debug)]
struct Samples {
    video: Vec<(u64, bool, u32)>,
    audio: Vec<u64>,
}

fn samples(part: &Part) -> Samples {
    let mut buf = &part.data[..];
    let Any::Moof(moof) = Any::decode(&mut buf).unwrap() else {
        panic!("a part starts with moof")
    };
    let Any::Mdat(mdat) = Any::decode(&mut buf).unwrap() else {
        panic!("then mdat")
    };
    let mut out = Samples {
        video: Vec::new(),
        audio: Vec::new(),
    };
    let mut at = 0usize;
    for traf in &moof.traf {
        let mut dts = traf.tfdt.as_ref().unwrap().base_media_decode_time;
        let TrunSamples::Explicit(entries) = &traf.trun[0].samples else {
            panic!("explicit samples")
        };
        for entry in entries {
            let size = entry.size.unwrap() as usize;
            let body = &mdat.data[at..at + size];
            at += size;
            let index = u32::from_be_bytes(body[..4].try_into().unwrap());
            if traf.tfhd.track_id == 1 {
                out.video
                    .push((dts, entry.flags.unwrap() == 0x0200_0000, index));
            } else {
                out.audio.push(dts);
            }
            dts += u64::from(entry.duration.unwrap());
        }
    }
    out
}

/// Feeds a stream of `frames` video frames `interval` ms apart (keyframes where
/// `key(i)`), with AAC every 23 ms, and returns the packager.
fn feed(frames: &[(u64, bool)], audio: bool) -> Packager {
    let mut packager = Packager::new(TIMING);
    packager.push(&avc_header(), 0).unwrap();
    packager.push(&aac_header(), 0).unwrap();
    let mut next_audio = 0u64;
    for (i, &(dts, key)) in frames.iter().enumerate() {
        while audio && next_audio <= dts {
            packager
                .push(&sound(next_audio as u32), next_audio)
                .unwrap();
            next_audio += 23;
        }
        packager.push(&frame(key, i as u32), dts).unwrap();
    }
    packager
}

fn every_part(packager: &Packager) -> impl Iterator<Item = (&Segment, usize, &Part)> {
    packager
        .segments()
        .iter()
        .flat_map(|s| s.parts.iter().enumerate().map(move |(i, p)| (s, i, p)))
}

#[test]
fn a_steady_stream_gets_two_second_segments_of_four_parts() {
    // 30 fps in whole milliseconds (33, 33, 34), a keyframe every 60 frames.
    let frames: Vec<(u64, bool)> = (0..600u64).map(|i| (i * 1000 / 30, i % 60 == 0)).collect();
    let packager = feed(&frames, true);
    let complete: Vec<&Segment> = packager
        .segments()
        .iter()
        .take(packager.complete())
        .collect();
    assert_eq!(complete.len(), 9);
    for segment in &complete {
        assert_eq!(segment.duration_ms(), 2000, "{}", segment.msn);
        assert_eq!(segment.parts.len(), 4, "{}", segment.msn);
        assert!(segment.parts[0].independent);
        assert!(segment.parts[1..].iter().all(|p| !p.independent));
        assert!(segment.parts.iter().all(|p| p.duration_ms <= 500));
    }
    assert_eq!(packager.edge(), (9, 3));
}

#[test]
fn frames_before_the_first_keyframe_wait_and_audio_only_streams_are_cut_too() {
    let mut packager = Packager::new(TIMING);
    packager.push(&avc_header(), 0).unwrap();
    assert!(!packager.push(&frame(false, 0), 0).unwrap());
    assert!(packager.segments().is_empty());
    let mut audio_only = Packager::new(TIMING);
    audio_only.push(&aac_header(), 0).unwrap();
    for i in 0..200u64 {
        audio_only.push(&sound(i as u32), i * 23).unwrap();
    }
    assert!(audio_only.complete() >= 2);
    for (_, _, part) in every_part(&audio_only) {
        assert!(part.duration_ms <= 500);
        assert!(part.independent);
    }
}

#[test]
fn a_new_configuration_starts_a_discontinuity_with_its_own_init() {
    let frames: Vec<(u64, bool)> = (0..90u64).map(|i| (i * 33, i % 30 == 0)).collect();
    let mut packager = feed(&frames, false);
    let mut other = avc_header();
    let mut bytes = other.payload.to_vec();
    *bytes.last_mut().unwrap() ^= 1;
    other.payload = Bytes::from(bytes);
    packager.push(&other, 3000).unwrap();
    packager.push(&frame(true, 1000), 3000).unwrap();
    packager.push(&frame(false, 1001), 3033).unwrap();
    let last = packager.segments().back().unwrap();
    assert!(last.discontinuity);
    assert_eq!(last.init, 1);
    assert!(packager.init(1).is_some());
    let before = &packager.segments()[packager.segments().len() - 2];
    assert_eq!(before.init, 0);
    assert!(packager.end().unwrap());
    assert_eq!(packager.complete(), packager.segments().len());
}

#[test]
fn the_window_drops_old_segments_and_their_initialization() {
    let timing = Timing {
        window: 3,
        ..TIMING
    };
    let mut packager = Packager::new(timing);
    packager.push(&avc_header(), 0).unwrap();
    for i in 0..600u64 {
        packager
            .push(&frame(i % 60 == 0, i as u32), i * 33)
            .unwrap();
    }
    assert_eq!(packager.segments().len(), 4);
    assert_eq!(
        packager.segments().front().unwrap().msn,
        packager.edge().0 - 3
    );
    assert!(packager.segment(0).is_none());
}

/// A stream: frame intervals (ms) and which frames are keyframes.
fn stream() -> impl Strategy<Value = Vec<(u64, bool)>> {
    (
        prop::collection::vec((10u64..=120, 0u32..100), 50..500),
        1u32..200,
    )
        .prop_map(|(steps, gop)| {
            let mut dts = 0;
            steps
                .iter()
                .enumerate()
                .map(|(i, &(step, chance))| {
                    let at = dts;
                    dts += step;
                    // Mostly regular GOPs, sometimes an extra keyframe.
                    (at, i == 0 || (i as u32).is_multiple_of(gop) || chance == 0)
                })
                .collect()
        })
}

proptest! {
    /// The playlist invariants, over any frame timing and GOP structure: every
    /// frame in exactly one part, in order; no part longer than the part target;
    /// a part marked independent starts with a keyframe; segments within the
    /// target duration (rounded), each a whole number of parts.
    #[test]
    fn parts_and_segments_keep_their_promises(frames in stream(), audio in any::<bool>()) {
        let mut packager = feed(&frames, audio);
        packager.end().unwrap();
        let mut seen = Vec::new();
        let mut audio_seen = Vec::new();
        for (segment, index, part) in every_part(&packager) {
            let got = samples(part);
            prop_assert!(part.duration_ms <= TIMING.part_ms || frames.windows(2).any(|w| w[1].0 - w[0].0 > TIMING.part_ms / 2),
                "part {}.{index} lasts {} ms", segment.msn, part.duration_ms);
            if part.independent {
                prop_assert!(got.video.first().is_some_and(|v| v.1), "independent part {}.{index} starts without a keyframe", segment.msn);
            }
            if index == 0 {
                prop_assert_eq!(got.video.first().map(|v| v.0), Some(segment.start_ms));
            }
            seen.extend(got.video.iter().map(|v| v.2));
            audio_seen.extend(got.audio);
        }
        prop_assert_eq!(seen, (0..frames.len() as u32).collect::<Vec<_>>());
        prop_assert!(audio_seen.windows(2).all(|w| w[0] < w[1]));
        let target = TIMING.target_duration_secs() * 1000;
        for segment in packager.segments() {
            prop_assert!(segment.duration_ms() < target + 500 || frames.windows(2).any(|w| w[1].0 - w[0].0 > TIMING.part_ms / 2),
                "segment {} lasts {} ms", segment.msn, segment.duration_ms());
        }
    }
}
