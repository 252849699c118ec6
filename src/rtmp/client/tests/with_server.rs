//! Against prism's own ServerSession, in the in-memory pair.

use std::io::IoSlice;

use super::*;
use crate::rtmp::pair::{Answer, Pair, PairError};
use crate::rtmp::server::{ServerConfig, ServerEvent};

/// prism's client and prism's server, back to back; publishes are accepted.
fn wire() -> Pair<ClientSession> {
    Pair::publisher(config(), ServerConfig::default())
}

/// A wire whose server refuses publishes with this code and description.
fn refusing_wire(code: &'static str, description: &'static str) -> Pair<ClientSession> {
    let mut wire = wire();
    wire.answer = Answer::Reject(code, description);
    wire
}

/// Moves bytes both ways until neither side has anything more to say; returns the
/// client's events, or its error. The server accepts whatever prism's client sends.
pub(super) fn run(wire: &mut Pair<ClientSession>) -> Result<Vec<ClientEvent>, ClientError> {
    wire.pump().map_err(|error| match error {
        PairError::Client(error) => error,
        PairError::Server(error) => panic!("the server refused the client: {error}"),
    })
}

#[test]
fn publishes_to_prisms_own_server() {
    let mut wire = wire();
    let events = run(&mut wire).unwrap();
    assert_eq!(
        events,
        [
            ClientEvent::Connected,
            ClientEvent::Publishing { stream_id: 1 }
        ]
    );
    assert!(wire.client.is_publishing());
    let [ServerEvent::Publish { stream_id: 1, name }] = wire.server_events.as_slice() else {
        panic!("server events: {:?}", wire.server_events);
    };
    assert_eq!(
        (name.app.as_str(), name.name.as_str(), name.query.as_str()),
        ("live", "live_8c1d2e3f", "token=s3cr3t")
    );
    wire.server_events.clear();

    let metadata = Amf0Value::ecma_array([("width", 1280.0.into()), ("videocodecid", 7.0.into())]);
    let video = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2, 3]);
    let audio = Bytes::from_static(&[0xAF, 1, 9, 9]);
    wire.client.send_metadata(0, &on_metadata_body(&metadata));
    wire.client.send_media(type_id::VIDEO, 40, &video);
    wire.client.send_media(type_id::AUDIO, 41, &audio);
    assert_eq!(run(&mut wire).unwrap(), []);
    assert_eq!(
        wire.server_events,
        [
            ServerEvent::Metadata {
                stream_id: 1,
                metadata
            },
            ServerEvent::Video {
                stream_id: 1,
                timestamp: 40,
                payload: video
            },
            ServerEvent::Audio {
                stream_id: 1,
                timestamp: 41,
                payload: audio
            },
        ]
    );
    wire.server_events.clear();

    wire.client.unpublish();
    assert!(!wire.client.is_publishing());
    assert_eq!(run(&mut wire).unwrap(), [ClientEvent::Unpublished]);
    assert_eq!(
        wire.server_events,
        [ServerEvent::Unpublish { stream_id: 1 }]
    );
    assert!(wire.client.bytes_in() > 0);
}

#[test]
fn bad_name_is_a_permanent_publish_rejection_without_the_key() {
    let mut wire = refusing_wire(
        "NetStream.Publish.BadName",
        "stream key live_8c1d2e3f?token=s3cr3t is invalid (live_8c1d2e3f, token=s3cr3t)",
    );
    let err = run(&mut wire).unwrap_err();
    let ClientError::PublishRejected { code, .. } = &err else {
        panic!("not a publish rejection: {err:?}");
    };
    assert_eq!(code, "NetStream.Publish.BadName");
    assert!(err.is_permanent());
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("live_8c1d2e3f"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert!(
            text.contains("stream key **** is invalid (****, ****)"),
            "{text}"
        );
    }
}

#[test]
fn a_name_still_in_use_is_worth_a_retry() {
    // nginx-rtmp's answer while our previous, dropped connection still holds the key.
    let mut wire = refusing_wire("NetStream.Publish.BadName", "Already publishing");
    let err = run(&mut wire).unwrap_err();
    assert!(matches!(err, ClientError::PublishRejected { .. }));
    assert!(!err.is_permanent());
}

#[test]
fn media_payloads_are_shared_not_copied() {
    let mut wire = wire();
    run(&mut wire).unwrap();
    let video = Bytes::from(vec![0x27; 1000]);
    wire.client.send_media(type_id::VIDEO, 0, &video);
    let out = wire.client.out();
    let mut slices = [IoSlice::new(&[]); 8];
    let n = out.io_slices(&mut slices);
    assert!(
        slices[..n]
            .iter()
            .any(|slice| slice.as_ptr() == video.as_ptr() && slice.len() == video.len()),
        "the payload was copied"
    );
}

/// A client that plays: what a node sends the node that holds a stream.
fn player_wire() -> Pair<ClientSession> {
    let mut config = config();
    config.play = true;
    Pair::publisher(config, ServerConfig::default())
}

#[test]
fn plays_from_prisms_own_server_and_hands_out_its_media() {
    let mut wire = player_wire();
    let events = run(&mut wire).unwrap();
    let [
        ClientEvent::Connected,
        ClientEvent::Status { code, .. },
        ClientEvent::Playing { stream_id: 1 },
    ] = events.as_slice()
    else {
        panic!("connected, reset, started; |RtmpSampleAccess is not the stream's: {events:?}");
    };
    assert_eq!(code, "NetStream.Play.Reset");
    assert!(!wire.client.is_publishing());
    let [ServerEvent::Play { stream_id: 1, name }] = wire.server_events.as_slice() else {
        panic!(
            "a player sends no courtesy calls, then play: {:?}",
            wire.server_events
        );
    };
    assert_eq!(name.name, "live_8c1d2e3f");

    let metadata = Amf0Value::ecma_array([("width", 1280.0.into())]);
    let video = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2, 3]);
    let audio = Bytes::from_static(&[0xAF, 1, 9, 9]);
    let cue = {
        let mut body = BytesMut::new();
        amf0::encode(&"onCuePoint".into(), &mut body);
        body.freeze()
    };
    let body = on_metadata_body(&metadata);
    wire.server.send_media(1, type_id::DATA_AMF0, 0, &body);
    wire.server.send_media(1, type_id::VIDEO, 40, &video);
    wire.server.send_media(1, type_id::AUDIO, 41, &audio);
    wire.server.send_media(1, type_id::DATA_AMF0, 42, &cue);
    assert_eq!(
        run(&mut wire).unwrap(),
        [
            ClientEvent::Metadata { metadata },
            ClientEvent::Media {
                type_id: type_id::VIDEO,
                timestamp: 40,
                payload: video
            },
            ClientEvent::Media {
                type_id: type_id::AUDIO,
                timestamp: 41,
                payload: audio
            },
            ClientEvent::Data {
                timestamp: 42,
                payload: cue
            },
        ]
    );
}

#[test]
fn a_refused_play_is_a_play_rejection() {
    let mut wire = player_wire();
    wire.answer = Answer::Reject("NetStream.Play.StreamNotFound", "no such stream");
    match run(&mut wire) {
        Err(ClientError::PlayRejected { code, .. }) => {
            assert_eq!(code, "NetStream.Play.StreamNotFound");
        }
        other => panic!("{other:?}"),
    }
}
