//! The command sequences: connect, the courtesy calls, publish and play, and the commands
//! that end a stream.

use super::*;

#[test]
fn release_stream_gets_no_answer_and_no_reply_carries_undefined() {
    let mut client = Client::new();
    client.command(0, "connect", 1.0, vec![]);
    let connect = client.commands();
    assert_eq!(
        connect
            .iter()
            .map(|(id, name, txn, _)| (*id, name.as_str(), *txn))
            .collect::<Vec<_>>(),
        [(0, "_result", 1.0)]
    );
    // xiu's relay sends these with connect's transaction id: a `_result` for 1
    // would look like connect's answer again.
    client.command(0, "releaseStream", 1.0, vec!["key".into()]);
    assert_eq!(client.commands(), [], "nginx-rtmp answers nothing either");
    client.command(0, "FCPublish", 1.0, vec!["key".into()]);
    let fc_publish = client.commands();
    assert_eq!(
        fc_publish
            .iter()
            .map(|(id, name, txn, _)| (*id, name.as_str(), *txn))
            .collect::<Vec<_>>(),
        [(0, "onFCPublish", 0.0)],
        "a notification, never a `_result` for the client's transaction"
    );
    client.command(0, "createStream", 2.0, vec![]);
    assert_eq!(
        client.commands(),
        [(0, "_result".to_owned(), 2.0, vec![1.0.into()])]
    );
    client.command(0, "getStreamLength", 3.0, vec!["key".into()]);
    assert_eq!(
        client.commands(),
        [(0, "_result".to_owned(), 3.0, vec![0.0.into()])]
    );
}

/// The command object and the info object of a reply, e.g. connect's `_result`.
fn reply_objects(client: &mut Client, name: &str) -> Vec<(Amf0Value, Vec<Amf0Value>)> {
    client
        .replies()
        .into_iter()
        .filter_map(|(_, message)| match message {
            Message::Command(c) if c.name == name => Some((c.object, c.args)),
            _ => None,
        })
        .collect()
}

fn field<'a>(value: &'a Amf0Value, key: &str) -> Option<&'a Amf0Value> {
    value.get(key)
}

/// The user control events among the replies.
fn stream_events(replies: &[(u32, Message)]) -> Vec<UserControl> {
    replies
        .iter()
        .filter_map(|(_, message)| match message {
            Message::UserControl(event) => Some(event.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn connect_is_answered_like_fms_with_the_clients_object_encoding() {
    let mut client = Client::new();
    assert!(!client.pair.server.is_connected());
    client.command(0, "connect", 1.0, vec![]);
    assert!(client.pair.server.is_connected());
    let replies = reply_objects(&mut client, "_result");
    let [(properties, info)] = replies.as_slice() else {
        panic!("{replies:?}")
    };
    assert_eq!(
        field(properties, "fmsVer").and_then(Amf0Value::as_str),
        Some("FMS/3,0,1,123")
    );
    assert_eq!(
        field(properties, "capabilities").and_then(Amf0Value::as_f64),
        Some(31.0)
    );
    let [info] = info.as_slice() else {
        panic!("{info:?}")
    };
    for (key, value) in [
        ("level", "status"),
        ("code", "NetConnection.Connect.Success"),
    ] {
        assert_eq!(field(info, key).and_then(Amf0Value::as_str), Some(value));
    }
    assert_eq!(
        field(info, "objectEncoding").and_then(Amf0Value::as_f64),
        Some(0.0)
    );

    // An AMF3 client (type 17 commands, objectEncoding 3) is answered in AMF0, with its
    // encoding echoed.
    let mut client = Client::new();
    let object = Amf0Value::object([
        ("app", "live".into()),
        ("tcUrl", crate::rtmp::pair::TC_URL.into()),
        ("objectEncoding", 3.0.into()),
    ]);
    let mut body = vec![0x00];
    let mut amf = bytes::BytesMut::new();
    crate::rtmp::amf0::encode_all(&["connect".into(), 1.0.into(), object], &mut amf);
    body.extend_from_slice(&amf);
    let amf3_connect = Message::Other {
        type_id: crate::rtmp::message::type_id::COMMAND_AMF3,
        payload: Bytes::from(body),
    };
    client.send(3, 0, 0, &amf3_connect);
    let replies = reply_objects(&mut client, "_result");
    let info = &replies[0].1[0];
    assert_eq!(
        field(info, "objectEncoding").and_then(Amf0Value::as_f64),
        Some(3.0)
    );
}

#[test]
fn an_encoder_publishes_as_obs_and_ffmpeg_do() {
    let mut client = Client::connected();
    assert_eq!(
        client.command(0, "releaseStream", 2.0, vec!["key".into()]),
        []
    );
    assert_eq!(client.command(0, "FCPublish", 3.0, vec!["key".into()]), []);
    assert_eq!(client.command(0, "createStream", 4.0, vec![]), []);
    let events = client.command(1, "publish", 5.0, vec!["key?a=1".into(), "live".into()]);
    let [ServerEvent::Publish { stream_id: 1, name }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (name.app.as_str(), name.name.as_str(), name.query.as_str()),
        ("live", "key", "a=1")
    );
    // The pair accepted it: Stream Begin, then Publish.Start on the stream.
    let replies = client.replies();
    assert_eq!(stream_events(&replies), [UserControl::StreamBegin(1)]);
    let names: Vec<(u32, String)> = replies
        .into_iter()
        .filter_map(|(id, message)| match message {
            Message::Command(c) => Some((id, c.name)),
            _ => None,
        })
        .collect();
    assert_eq!(
        names,
        [
            (0, "onFCPublish".to_owned()),
            (0, "_result".to_owned()),
            (1, "onStatus".to_owned())
        ]
    );
    client.command(1, "publish", 6.0, vec!["key".into(), "live".into()]);
    assert_eq!(
        client.statuses(),
        [(1, "NetStream.Publish.BadName".to_owned())],
        "publishing twice on one stream is refused; the first publish goes on"
    );
    let video = Bytes::from_static(&[0x17, 1, 0, 0, 0, 9]);
    assert_eq!(
        client.send(7, 1, 40, &Message::Video(video.clone())),
        [ServerEvent::Video {
            stream_id: 1,
            timestamp: 40,
            payload: video
        }]
    );
    // FCUnpublish then deleteStream, as ffmpeg ends: one Unpublish.
    assert_eq!(
        client.command(0, "FCUnpublish", 7.0, vec!["key".into()]),
        [ServerEvent::Unpublish { stream_id: 1 }]
    );
    assert_eq!(
        client.statuses(),
        [(1, "NetStream.Unpublish.Success".to_owned())]
    );
    assert_eq!(client.command(0, "deleteStream", 8.0, vec![1.0.into()]), []);
    assert_eq!(client.commands(), [], "deleteStream gets no answer");
}

#[test]
fn a_player_plays_and_is_told_when_the_stream_ends() {
    let mut client = Client::connected();
    client.command(0, "createStream", 2.0, vec![]);
    client.command(0, "getStreamLength", 3.0, vec!["key".into()]);
    let events = client.command(1, "play", 4.0, vec!["key".into(), (-2.0).into()]);
    let [ServerEvent::Play { stream_id: 1, name }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!((name.app.as_str(), name.name.as_str()), ("live", "key"));
    let replies = client.replies();
    assert_eq!(stream_events(&replies), [UserControl::StreamBegin(1)]);
    let data: Vec<Vec<Amf0Value>> = replies
        .iter()
        .filter_map(|(_, message)| match message {
            Message::Data { values, .. } => Some(values.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        data,
        [vec!["|RtmpSampleAccess".into(), false.into(), false.into()]]
    );
    client
        .replies
        .extend(replies.into_iter().map(|(stream_id, message)| Incoming {
            stream_id,
            timestamp: 0,
            message,
        }));
    assert_eq!(
        client.statuses(),
        [
            (1, "NetStream.Play.Reset".to_owned()),
            (1, "NetStream.Play.Start".to_owned())
        ]
    );

    // A 10 KB keyframe in chunks of the size announced at connect, which the client applies.
    let keyframe = Bytes::from(vec![0x17; 10_000]);
    client
        .pair
        .server
        .send_media(1, crate::rtmp::message::type_id::VIDEO, 40, &keyframe);
    client.pump().unwrap();
    let replies = client.replies();
    assert_eq!(replies, [(1, Message::Video(keyframe))]);

    client.pair.server.end_play(1);
    client.pump().unwrap();
    let replies = client.replies();
    assert_eq!(stream_events(&replies), [UserControl::StreamEof(1)]);
    client
        .replies
        .extend(replies.into_iter().map(|(stream_id, message)| Incoming {
            stream_id,
            timestamp: 0,
            message,
        }));
    assert_eq!(
        client.statuses(),
        [(1, "NetStream.Play.UnpublishNotify".to_owned())]
    );
    // The stream can be played again, and deleteStream stops that play.
    assert!(matches!(
        client.command(1, "play", 5.0, vec!["key".into()])[..],
        [ServerEvent::Play { stream_id: 1, .. }]
    ));
    assert_eq!(
        client.command(0, "deleteStream", 6.0, vec![1.0.into()]),
        [ServerEvent::StopPlay { stream_id: 1 }]
    );
}

#[test]
fn delete_stream_and_close_stream_end_whatever_the_stream_does() {
    // deleteStream of a publishing stream: Unpublish, and Unpublish.Success.
    let mut client = Client::publishing();
    assert_eq!(
        client.command(0, "deleteStream", 4.0, vec![1.0.into()]),
        [ServerEvent::Unpublish { stream_id: 1 }]
    );
    assert_eq!(
        client.statuses(),
        [(1, "NetStream.Unpublish.Success".to_owned())]
    );
    // The stream is gone: media on it is dropped, publishing on it refused.
    assert_eq!(
        client.send(6, 1, 0, &Message::Audio(Bytes::from_static(&[0xAF, 1]))),
        []
    );
    client.command(1, "publish", 5.0, vec!["key".into(), "live".into()]);
    assert_eq!(
        client.statuses(),
        [(1, "NetStream.Publish.BadName".to_owned())]
    );

    // closeStream on the stream itself does the same.
    let mut client = Client::publishing();
    assert_eq!(
        client.command(1, "closeStream", 4.0, vec![]),
        [ServerEvent::Unpublish { stream_id: 1 }]
    );

    // A player's deleteStream and closeStream stop its play.
    let mut client = Client::playing();
    assert_eq!(
        client.command(1, "closeStream", 4.0, vec![]),
        [ServerEvent::StopPlay { stream_id: 1 }]
    );
    let mut client = Client::playing();
    assert_eq!(
        client.command(0, "deleteStream", 4.0, vec![1.0.into()]),
        [ServerEvent::StopPlay { stream_id: 1 }]
    );

    // A publish the application has not answered yet ends without an Unpublish: nothing
    // was published.
    let mut client = Client::connected();
    client.pair.answer = Answer::Leave;
    client.command(0, "createStream", 2.0, vec![]);
    client.command(1, "publish", 3.0, vec!["key".into(), "live".into()]);
    assert_eq!(client.command(0, "deleteStream", 4.0, vec![1.0.into()]), []);

    // Nothing to end: no event, no answer, no error.
    let mut client = Client::connected();
    client.command(0, "createStream", 2.0, vec![]);
    client.replies();
    assert_eq!(
        client.command(0, "FCUnpublish", 3.0, vec!["key".into()]),
        []
    );
    assert_eq!(client.command(0, "deleteStream", 4.0, vec![9.0.into()]), []);
    assert_eq!(client.command(7, "closeStream", 5.0, vec![]), []);
    assert_eq!(client.command(0, "deleteStream", 6.0, vec![1.0.into()]), []);
    assert_eq!(client.commands(), []);
}

#[test]
fn publish_or_play_on_a_stream_that_was_never_created_is_refused() {
    let mut client = Client::connected();
    assert_eq!(
        client.command(1, "publish", 2.0, vec!["key".into(), "live".into()]),
        []
    );
    assert_eq!(
        client.statuses(),
        [(1, "NetStream.Publish.BadName".to_owned())]
    );
    assert_eq!(client.command(5, "play", 3.0, vec!["key".into()]), []);
    assert_eq!(client.statuses(), [(5, "NetStream.Play.Failed".to_owned())]);
    // A created stream that publishes cannot play too.
    let mut client = Client::publishing();
    assert_eq!(client.command(1, "play", 4.0, vec!["key".into()]), []);
    assert_eq!(client.statuses(), [(1, "NetStream.Play.Failed".to_owned())]);
}

#[test]
fn invalid_stream_names_are_refused_and_the_stream_stays_usable() {
    let mut client = Client::connected();
    client.command(0, "createStream", 2.0, vec![]);
    for name in [Amf0Value::from(""), Amf0Value::from("a\nb"), 7.0.into()] {
        assert_eq!(
            client.command(1, "publish", 3.0, vec![name.clone(), "live".into()]),
            []
        );
        assert_eq!(
            client.statuses(),
            [(1, "NetStream.Publish.BadName".to_owned())]
        );
        assert_eq!(client.command(1, "play", 4.0, vec![name]), []);
        assert_eq!(
            client.statuses(),
            [(1, "NetStream.Play.StreamNotFound".to_owned())]
        );
    }
    assert!(matches!(
        client.command(1, "publish", 5.0, vec!["key".into(), "live".into()])[..],
        [ServerEvent::Publish { stream_id: 1, .. }]
    ));
}

#[test]
fn a_refused_publish_or_play_leaves_the_stream_free_for_another_try() {
    let mut client = Client::connected();
    client.command(0, "createStream", 2.0, vec![]);
    client.pair.answer = Answer::Reject("NetStream.Publish.BadName", "taken");
    let events = client.command(1, "publish", 3.0, vec!["key".into(), "live".into()]);
    assert!(matches!(events[..], [ServerEvent::Publish { .. }]));
    assert_eq!(
        client.statuses(),
        [(1, "NetStream.Publish.BadName".to_owned())]
    );
    client.pair.answer = Answer::Reject("NetStream.Play.StreamNotFound", "none");
    let events = client.command(1, "play", 4.0, vec!["key".into()]);
    assert!(matches!(events[..], [ServerEvent::Play { .. }]));
    assert_eq!(
        client.statuses(),
        [(1, "NetStream.Play.StreamNotFound".to_owned())]
    );
    client.pair.answer = Answer::Accept;
    assert!(matches!(
        client.command(1, "publish", 5.0, vec!["key".into(), "live".into()])[..],
        [ServerEvent::Publish { stream_id: 1, .. }]
    ));
}

#[test]
fn commands_before_connect_end_the_connection() {
    for name in [
        "createStream",
        "publish",
        "play",
        "FCPublish",
        "deleteStream",
    ] {
        let mut client = Client::new();
        let error = client.try_command(0, name, 1.0, vec![]).unwrap_err();
        assert!(
            matches!(
                error,
                SessionError::Protocol("a command arrived before connect")
            ),
            "{name}: {error}"
        );
        assert_eq!(
            error.to_string(),
            "protocol violation: a command arrived before connect"
        );
    }
    // Media and pings before connect are no commands: dropped or answered.
    let mut client = Client::new();
    client.send(6, 1, 0, &Message::Audio(Bytes::from_static(&[0xAF, 1])));
    client.send(2, 0, 0, &Message::UserControl(UserControl::PingRequest(3)));
    assert_eq!(
        stream_events(&client.replies()),
        [UserControl::PingResponse(3)]
    );
}

#[test]
fn connect_twice_ends_the_connection() {
    let mut client = Client::connected();
    let error = client.try_command(0, "connect", 2.0, vec![]).unwrap_err();
    assert!(matches!(
        error,
        SessionError::Protocol("connect sent twice")
    ));
}

#[test]
fn unknown_commands_are_ignored() {
    let mut client = Client::connected();
    for name in ["_checkbw", "someNewCommand", "pause", "seek"] {
        assert_eq!(client.command(0, name, 5.0, vec![]), []);
    }
    assert_eq!(client.replies(), []);
    assert!(matches!(
        client.command(0, "createStream", 6.0, vec![])[..],
        []
    ));
    assert_eq!(
        client.commands(),
        [(0, "_result".to_owned(), 6.0, vec![1.0.into()])]
    );
}
