use bytes::Bytes;
use m3u8_rs::{MediaPlaylist, Playlist};
use proptest::prelude::*;

use super::*;
use crate::hls::packager::Timing;
use crate::hub::{Packet, PacketKind};

const TIMING: Timing = Timing {
    segment_ms: 2000,
    part_ms: 500,
    window: 6,
};

fn packet(kind: PacketKind, payload: Vec<u8>, keyframe: bool, sequence_header: bool) -> Packet {
    Packet {
        kind,
        timestamp: 0,
        payload: Bytes::from(payload),
        keyframe,
        sequence_header,
    }
}

fn headers() -> [Packet; 2] {
    let hex = |text: &str| -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    };
    [
        packet(
            PacketKind::Video,
            hex(
                "17000000000142c00dffe100166742c00dda0507ec0440000003004000000f03c50aa801000468ce0fc8",
            ),
            true,
            true,
        ),
        packet(PacketKind::Audio, hex("af00120856e500"), false, true),
    ]
}

fn frame(keyframe: bool) -> Packet {
    let first = if keyframe { 0x17 } else { 0x27 };
    packet(
        PacketKind::Video,
        vec![first, 1, 0, 0, 0, 9, 9],
        keyframe,
        false,
    )
}

fn parse(text: &str) -> MediaPlaylist {
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MediaPlaylist(playlist)) => playlist,
        other => panic!("{other:?}\n{text}"),
    }
}

/// The value of `NAME=` in the first line starting with `tag`.
fn attribute(text: &str, tag: &str, name: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with(tag))?;
    let value = line.split_once(&format!("{name}="))?.1;
    Some(value.split(',').next()?.trim_matches('"').to_owned())
}

fn names() -> Names<'static> {
    Names {
        rendition: "src",
        query: "",
    }
}

#[test]
fn a_live_playlist_has_parts_a_hint_and_server_control() {
    let mut packager = Packager::new(TIMING);
    for header in headers() {
        packager.push(&header, 0).unwrap();
    }
    for i in 0..400u64 {
        packager.push(&frame(i % 60 == 0), i * 1000 / 30).unwrap();
    }
    let anchor = std::time::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let text = media(&packager, names(), Some(anchor));
    let playlist = parse(&text);
    assert_eq!(playlist.version, Some(9));
    assert_eq!(playlist.target_duration, 3);
    assert_eq!(playlist.segments.len(), 6);
    assert_eq!(playlist.media_sequence, 0);
    assert_eq!(playlist.segments[0].uri, "src.0.m4s");
    assert_eq!(playlist.segments[0].duration, 2.0);
    assert_eq!(
        playlist.segments[0].map.as_ref().map(|m| m.uri.as_str()),
        Some("src.init0.mp4")
    );
    assert_eq!(
        playlist.segments[1]
            .program_date_time
            .map(|t| t.to_rfc3339()),
        Some("2027-01-15T08:00:02+00:00".to_owned())
    );
    assert_eq!(
        attribute(&text, "#EXT-X-PART-INF", "PART-TARGET").as_deref(),
        Some("0.500")
    );
    assert_eq!(
        attribute(&text, "#EXT-X-SERVER-CONTROL", "CAN-BLOCK-RELOAD").as_deref(),
        Some("YES")
    );
    assert_eq!(
        attribute(&text, "#EXT-X-SERVER-CONTROL", "PART-HOLD-BACK").as_deref(),
        Some("1.500")
    );
    // Segment 6 is being made: 13.333 s in, its parts so far are listed, and
    // the hint names the next.
    assert_eq!(
        attribute(&text, "#EXT-X-PRELOAD-HINT", "URI").as_deref(),
        Some("src.6.2.m4s")
    );
    assert!(text.contains("#EXT-X-PART:DURATION=0.500,URI=\"src.6.0.m4s\",INDEPENDENT=YES\n"));
    assert!(text.contains("#EXT-X-PART:DURATION=0.500,URI=\"src.6.1.m4s\"\n"));
    // Parts only near the live edge.
    assert!(!text.contains("src.1.0.m4s"));
    assert!(text.contains("src.3.0.m4s"));
}

#[test]
fn a_token_is_carried_by_every_uri_and_an_ended_stream_says_so() {
    let mut packager = Packager::new(TIMING);
    for header in headers() {
        packager.push(&header, 0).unwrap();
    }
    for i in 0..100u64 {
        packager.push(&frame(i % 30 == 0), i * 40).unwrap();
    }
    packager.end().unwrap();
    let text = media(
        &packager,
        Names {
            rendition: "src",
            query: "?token=1.ab",
        },
        None,
    );
    let playlist = parse(&text);
    assert!(playlist.end_list);
    assert!(!text.contains("PRELOAD-HINT"));
    for line in text.lines().filter(|l| l.contains("src.")) {
        assert!(line.contains("?token=1.ab"), "{line}");
    }
    assert_eq!(
        playlist.segments.iter().map(|s| s.duration).sum::<f32>(),
        4.0,
        "every frame, the last with the interval before it"
    );
}

#[test]
fn a_master_playlist_lists_its_variants() {
    let text = master(
        &[
            Variant {
                rendition: "src".into(),
                bandwidth: 6_000_000,
                resolution: Some((1920, 1080)),
                codecs: Some("avc1.64002a,mp4a.40.2".into()),
            },
            Variant {
                rendition: "480p30".into(),
                bandwidth: 1_200_000,
                resolution: None,
                codecs: None,
            },
        ],
        "?token=x",
    );
    let Ok(Playlist::MasterPlaylist(playlist)) = m3u8_rs::parse_playlist_res(text.as_bytes())
    else {
        panic!("{text}")
    };
    assert_eq!(playlist.variants.len(), 2);
    assert_eq!(playlist.variants[0].uri, "src.m3u8?token=x");
    assert_eq!(playlist.variants[0].bandwidth, 6_000_000);
    assert_eq!(playlist.variants[1].uri, "480p30.m3u8?token=x");
}

proptest! {
    /// Whatever the stream does, every playlist along the way parses, keeps
    /// its target duration and part target, lists segments no longer than the
    /// target duration (rounded), counts media sequence numbers up without
    /// gaps, and keeps PART-HOLD-BACK at three part targets.
    #[test]
    fn every_playlist_version_parses_and_keeps_its_targets(
        steps in prop::collection::vec((10u64..=100, 0u32..40), 20..400),
    ) {
        let mut packager = Packager::new(TIMING);
        for header in headers() {
            packager.push(&header, 0).unwrap();
        }
        let mut dts = 0;
        let mut last_sequence = 0;
        for (i, (step, chance)) in steps.into_iter().enumerate() {
            if !packager.push(&frame(i == 0 || chance == 0), dts).unwrap() {
                dts += step;
                continue;
            }
            dts += step;
            let text = media(&packager, names(), None);
            let playlist = parse(&text);
            prop_assert_eq!(playlist.target_duration, 3);
            prop_assert_eq!(attribute(&text, "#EXT-X-PART-INF", "PART-TARGET"), Some("0.500".to_owned()));
            prop_assert_eq!(attribute(&text, "#EXT-X-SERVER-CONTROL", "PART-HOLD-BACK"), Some("1.500".to_owned()));
            prop_assert!(playlist.media_sequence >= last_sequence);
            last_sequence = playlist.media_sequence;
            for (n, segment) in playlist.segments.iter().enumerate() {
                prop_assert!(segment.duration.round() <= 3.0, "{}", text);
                prop_assert_eq!(&segment.uri, &format!("src.{}.m4s", playlist.media_sequence + n as u64));
            }
            for line in text.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
                let duration: f64 = attribute(line, "#EXT-X-PART:", "DURATION").unwrap().parse().unwrap();
                prop_assert!(duration <= 0.5, "{}", line);
            }
        }
    }
}

#[test]
fn rendition_reports_name_the_other_renditions_last_parts() {
    let mut out = String::new();
    rendition_reports(
        &mut out,
        &[
            RenditionReport {
                rendition: "720p30".into(),
                last: (12, 3),
            },
            RenditionReport {
                rendition: "src".into(),
                last: (12, 2),
            },
        ],
        "?token=t",
    );
    assert_eq!(
        out,
        "#EXT-X-RENDITION-REPORT:URI=\"720p30.m3u8?token=t\",LAST-MSN=12,LAST-PART=3\n\
         #EXT-X-RENDITION-REPORT:URI=\"src.m3u8?token=t\",LAST-MSN=12,LAST-PART=2\n"
    );
}
