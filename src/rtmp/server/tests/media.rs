//! Media, data and aggregate messages from publishers, and media on message stream 0.

use bytes::Bytes;

use super::*;

#[test]
fn media_on_stream_0_belongs_to_the_only_publishing_stream() {
    // Node-Media-Server 4's relay: publish on stream 1, everything else on stream 0.
    let mut client = Client::publishing();
    let metadata = client.send(4, 0, 0, &set_data_frame());
    assert_eq!(
        metadata,
        [ServerEvent::Metadata {
            stream_id: 1,
            metadata: Amf0Value::ecma_array([("width", 320.0.into())]),
        }]
    );
    let video = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2]);
    let audio = Bytes::from_static(&[0xAF, 1, 9]);
    assert_eq!(
        client.send(6, 0, 40, &Message::Video(video.clone())),
        [ServerEvent::Video {
            stream_id: 1,
            timestamp: 40,
            payload: video.clone(),
        }]
    );
    assert_eq!(
        client.send(4, 0, 41, &Message::Audio(audio.clone())),
        [ServerEvent::Audio {
            stream_id: 1,
            timestamp: 41,
            payload: audio.clone(),
        }]
    );
    let cue = Message::data(vec!["onCuePoint".into(), "x".into()]);
    let Message::Data {
        payload: cue_body, ..
    } = &cue
    else {
        unreachable!()
    };
    assert_eq!(
        client.send(4, 0, 42, &cue),
        [ServerEvent::Data {
            stream_id: 1,
            timestamp: 42,
            payload: cue_body.clone(),
        }]
    );
    let mut body = aggregate_tag(9, 1000, &video);
    body.extend(aggregate_tag(8, 1010, &audio));
    assert_eq!(
        client.send(4, 0, 80, &Message::Aggregate(Bytes::from(body))),
        [
            ServerEvent::Video {
                stream_id: 1,
                timestamp: 80,
                payload: video,
            },
            ServerEvent::Audio {
                stream_id: 1,
                timestamp: 90,
                payload: audio,
            },
        ]
    );
    // The stream's own id still works alongside.
    let events = client.send(6, 1, 120, &Message::Video(Bytes::from_static(&[0x27, 1])));
    assert!(matches!(
        events[..],
        [ServerEvent::Video { stream_id: 1, .. }]
    ));
}

#[test]
fn set_data_frame_before_other_data_is_a_directive_subscribers_do_not_see() {
    let mut client = Client::publishing();
    let text = Amf0Value::object([("text", Amf0Value::from("hello"))]);
    let wrapped = Message::data(vec![
        "@setDataFrame".into(),
        "onTextData".into(),
        text.clone(),
    ]);
    let plain = Message::data(vec!["onTextData".into(), text]);
    let Message::Data {
        payload: plain_body,
        ..
    } = &plain
    else {
        unreachable!()
    };
    assert_eq!(
        client.send(4, 1, 7, &wrapped),
        [ServerEvent::Data {
            stream_id: 1,
            timestamp: 7,
            payload: plain_body.clone(),
        }]
    );
}

#[test]
fn media_on_stream_0_without_exactly_one_publishing_stream_is_ignored_with_one_warning() {
    let video = Message::Video(Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2]));
    let audio = Message::Audio(Bytes::from_static(&[0xAF, 1, 9]));

    // No stream publishes yet: a connected peer (created stream, no publish).
    let logs = logs_of(|| {
        let mut client = Client::new();
        client.command(0, "connect", 1.0, vec![]);
        client.command(0, "createStream", 2.0, vec![]);
        for _ in 0..50 {
            assert_eq!(client.send(6, 0, 0, &video), []);
            assert_eq!(client.send(4, 0, 0, &audio), []);
        }
        assert_eq!(client.send(4, 0, 0, &set_data_frame()), []);
    });
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning per connection: {logs}");
    assert!(
        warnings[0].contains("video on message stream 0 while no streams publish"),
        "{logs}"
    );

    // Two streams publish on one connection: stream 0 could mean either.
    let logs = logs_of(|| {
        let mut client = Client::publishing();
        client.command(0, "createStream", 4.0, vec![]);
        let events = client.command(2, "publish", 5.0, vec!["other".into(), "live".into()]);
        assert!(matches!(
            events[..],
            [ServerEvent::Publish { stream_id: 2, .. }]
        ));
        for _ in 0..50 {
            assert_eq!(client.send(4, 0, 0, &audio), []);
        }
        // Each stream's own media is still its own.
        let events = client.send(6, 2, 0, &video);
        assert!(matches!(
            events[..],
            [ServerEvent::Video { stream_id: 2, .. }]
        ));
    });
    let warnings: Vec<&str> = logs.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "one warning per connection: {logs}");
    assert!(
        warnings[0].contains("audio on message stream 0 while several streams publish"),
        "{logs}"
    );

    // Media on a created stream that does not publish is not stream 0's case: no
    // warning, only a debug line.
    let logs = logs_of(|| {
        let mut client = Client::publishing();
        client.command(0, "createStream", 4.0, vec![]);
        assert_eq!(client.send(6, 2, 0, &video), []);
    });
    assert!(!logs.contains("WARN"), "{logs}");
}

#[test]
fn after_unpublish_stream_0_media_is_ignored_again() {
    let mut client = Client::publishing();
    let events = client.command(0, "FCUnpublish", 4.0, vec!["key".into()]);
    assert_eq!(events, [ServerEvent::Unpublish { stream_id: 1 }]);
    let video = Message::Video(Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 2]));
    assert_eq!(client.send(6, 0, 0, &video), []);
}
