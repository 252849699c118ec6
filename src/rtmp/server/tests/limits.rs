//! Limits and deadlines: stream count, command rate, the shared budget for partial
//! messages, and the session's timers.

use super::*;

#[test]
fn commands_and_other_non_media_messages_are_counted_but_media_is_not() {
    let config = ServerConfig {
        max_commands_per_sec: 5,
        ..ServerConfig::default()
    };
    let mut client = Client::with_config(config);
    let audio = Message::Audio(Bytes::from_static(&[0xAF, 1, 9]));
    let video = Message::Video(Bytes::from_static(&[0x27, 1, 0, 0, 0, 5]));
    // Media before publishing is dropped, not counted.
    for _ in 0..10 {
        client.send(6, 1, 0, &audio);
        client.send(7, 0, 0, &video);
    }
    // Commands, pings and protocol control messages count: five within the second.
    client.command(0, "connect", 1.0, vec![]);
    client.command(0, "createStream", 2.0, vec![]);
    client.send(2, 0, 0, &Message::UserControl(UserControl::PingRequest(7)));
    client.send(2, 0, 0, &Message::WindowAckSize(1000));
    client.command(1, "publish", 3.0, vec!["key".into(), "live".into()]);
    // The published stream's media and metadata are not commands.
    for timestamp in 0..100 {
        client.send(6, 1, timestamp, &audio);
        client.send(7, 1, timestamp, &video);
    }
    client.send(4, 1, 0, &set_data_frame());
    // The sixth command within the second is one too many.
    let ping = Message::UserControl(UserControl::PingRequest(8));
    let error = client.try_send(2, 0, 0, &ping).unwrap_err();
    assert!(
        matches!(error, SessionError::CommandFlood { count: 6, limit: 5 }),
        "{error}"
    );
}

#[test]
fn a_session_with_a_shared_budget_fails_once_evicted() {
    use crate::rtmp::chunk::PendingBudget;
    let budget = PendingBudget::new(512 * 1024, 32 << 20);
    let config = ServerConfig {
        pending_budget: Some(budget.clone()),
        ..ServerConfig::default()
    };
    let mut hog = Client::with_config(config.clone());
    let mut honest = Client::with_config(config);
    let eviction = hog.pair.server.budget_eviction().expect("a budget account");
    // The hog starts two 1 MiB messages (256 KiB reserved for each), filling the budget;
    // the honest session then needs 256 KiB for a frame: the hog holds more and goes.
    let start = |csid: u8| {
        let mut bytes = vec![csid, 0, 0, 0, 0x10, 0, 0, 9, 1, 0, 0, 0];
        bytes.extend_from_slice(&[0; 128]);
        bytes
    };
    hog.pair.send_raw(&start(4)).unwrap();
    hog.pair.send_raw(&start(5)).unwrap();
    assert!(!eviction.is_cancelled());
    honest.pair.send_raw(&start(6)).unwrap();
    assert!(eviction.is_cancelled());
    let now = hog.pair.now;
    let error = hog
        .pair
        .server
        .poll(&mut bytes::BytesMut::new(), now)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("closed to make room in the shared budget"),
        "{error}"
    );
    drop(hog);
    assert_eq!(budget.used(), 256 * 1024);
}

// ---------------------------------------------------------------------------------
// Deadlines, on the pair's clock: the session reads no clock of its own.

const SECOND: Duration = Duration::from_secs(1);

fn ping(client: &mut Client) {
    let ping = Message::UserControl(UserControl::PingRequest(1));
    client.send(2, 0, 0, &ping);
}

/// The session's deadline, as an offset from `base`.
fn deadline_after(client: &Client, base: Instant) -> Option<Duration> {
    client.pair.server.poll_timeout().map(|at| at - base)
}

#[test]
fn a_session_that_never_hears_a_byte_ends_at_the_handshake_timeout() {
    let accepted = Instant::now();
    let mut session = ServerSession::new(ServerConfig::default(), accepted);
    assert_eq!(session.poll_timeout(), Some(accepted + 10 * SECOND));
    assert!(
        session
            .handle_timeout(accepted + 10 * SECOND - Duration::from_millis(1))
            .is_ok()
    );
    let error = session.handle_timeout(accepted + 10 * SECOND).unwrap_err();
    assert!(matches!(error, SessionError::HandshakeTimeout(d) if d == 10 * SECOND));
    assert_eq!(error.to_string(), "no handshake and connect within 10s");
}

#[test]
fn the_handshake_and_connect_must_be_done_within_the_handshake_timeout_of_the_accept() {
    let mut client = Client::new();
    let accepted = client.pair.now;
    // Handshake done, no connect: keepalives do not move the deadline.
    for _ in 0..9 {
        client.pair.advance(SECOND);
        ping(&mut client);
        assert_eq!(deadline_after(&client, accepted), Some(10 * SECOND));
    }
    client.pair.advance(SECOND);
    assert!(matches!(
        client.pair.server_timeout(),
        Err(SessionError::HandshakeTimeout(_))
    ));

    // connect in time: from then on the idle rule applies, counted from connect.
    let mut client = Client::new();
    let accepted = client.pair.now;
    client.pair.advance(9 * SECOND);
    client.command(0, "connect", 1.0, vec![]);
    assert_eq!(deadline_after(&client, accepted), Some(39 * SECOND));
    client.pair.advance(SECOND);
    assert!(client.pair.server_timeout().is_ok());
}

#[test]
fn a_connection_that_neither_publishes_nor_plays_is_closed_after_the_idle_timeout_whatever_it_sends()
 {
    let mut client = Client::connected();
    let connected = client.pair.now;
    client.command(0, "createStream", 2.0, vec![]);
    for _ in 0..29 {
        client.pair.advance(SECOND);
        ping(&mut client);
        client.command(0, "getStreamLength", 3.0, vec!["key".into()]);
        assert!(client.pair.server_timeout().is_ok());
        assert_eq!(deadline_after(&client, connected), Some(30 * SECOND));
    }
    client.pair.advance(SECOND);
    let error = client.pair.server_timeout().unwrap_err();
    assert!(matches!(error, SessionError::NotStreaming(d) if d == 30 * SECOND));
    assert_eq!(error.to_string(), "neither published nor played for 30s");
}

#[test]
fn a_publishers_silence_is_bounded_and_every_read_moves_the_deadline() {
    let mut client = Client::publishing();
    let start = client.pair.now;
    assert_eq!(deadline_after(&client, start), Some(30 * SECOND));
    // Audio 20 s in: silence counts from there.
    client.pair.advance(20 * SECOND);
    client.send(
        6,
        1,
        20_000,
        &Message::Audio(Bytes::from_static(&[0xAF, 1])),
    );
    assert_eq!(deadline_after(&client, start), Some(50 * SECOND));
    // The timer set for the old deadline fires: nothing to do yet.
    client.pair.advance(10 * SECOND);
    assert!(client.pair.server_timeout().is_ok());
    // Any bytes count, even a chunk that is not complete yet.
    client.pair.advance(10 * SECOND);
    client.pair.send_raw(&[0x06]).unwrap();
    assert_eq!(deadline_after(&client, start), Some(70 * SECOND));
    client.pair.advance(30 * SECOND - Duration::from_millis(1));
    assert!(client.pair.server_timeout().is_ok());
    client.pair.advance(Duration::from_millis(1));
    let error = client.pair.server_timeout().unwrap_err();
    assert!(matches!(error, SessionError::Idle(d) if d == 30 * SECOND));
    assert_eq!(error.to_string(), "idle for 30s");
}

#[test]
fn after_a_publish_ends_the_idle_clock_starts_from_its_end() {
    let mut client = Client::publishing();
    let start = client.pair.now;
    for _ in 0..10 {
        client.pair.advance(10 * SECOND);
        client.send(6, 1, 0, &Message::Audio(Bytes::from_static(&[0xAF, 1])));
    }
    client.command(0, "FCUnpublish", 4.0, vec!["key".into()]);
    assert_eq!(deadline_after(&client, start), Some(130 * SECOND));
    // Keepalives and media on the stream that no longer publishes do not move it.
    client.pair.advance(10 * SECOND);
    ping(&mut client);
    client.send(6, 1, 0, &Message::Audio(Bytes::from_static(&[0xAF, 1])));
    assert_eq!(deadline_after(&client, start), Some(130 * SECOND));
    client.pair.advance(20 * SECOND);
    assert!(matches!(
        client.pair.server_timeout(),
        Err(SessionError::NotStreaming(_))
    ));
}

#[test]
fn a_player_has_no_deadline_until_its_play_ends() {
    let mut client = Client::playing();
    assert_eq!(client.pair.server.poll_timeout(), None);
    client.pair.advance(3600 * SECOND);
    assert!(client.pair.server_timeout().is_ok());
    // The stream ends (the application says so): idle from the player's last read on.
    let last_read = client.pair.now;
    client.pair.advance(SECOND);
    ping(&mut client);
    client.pair.server.end_play(1);
    assert_eq!(
        deadline_after(&client, last_read),
        Some(31 * SECOND),
        "30 s after the last read"
    );
    // deleteStream, as players send it: idle from that read on.
    client.pair.advance(5 * SECOND);
    client.command(0, "deleteStream", 4.0, vec![1.0.into()]);
    assert_eq!(deadline_after(&client, last_read), Some(31 * SECOND));
}

#[test]
fn a_refused_or_undecided_publish_does_not_stop_the_idle_clock() {
    let mut client = Client::connected();
    let connected = client.pair.now;
    client.command(0, "createStream", 2.0, vec![]);
    client.pair.answer = Answer::Reject("NetStream.Publish.BadName", "no");
    client.pair.advance(10 * SECOND);
    client.command(1, "publish", 3.0, vec!["key".into(), "live".into()]);
    assert_eq!(
        client.statuses(),
        [(1, "NetStream.Publish.BadName".to_owned())]
    );
    assert_eq!(deadline_after(&client, connected), Some(30 * SECOND));

    // While the application decides (an authorization callback), the clock runs on; an
    // accepted publish then follows the publisher's rule from its last read.
    client.pair.answer = Answer::Leave;
    client.pair.advance(10 * SECOND);
    let events = client.command(1, "publish", 4.0, vec!["key".into(), "live".into()]);
    assert!(matches!(
        events[..],
        [ServerEvent::Publish { stream_id: 1, .. }]
    ));
    assert_eq!(deadline_after(&client, connected), Some(30 * SECOND));
    client.pair.server.accept_publish(1);
    assert_eq!(deadline_after(&client, connected), Some(50 * SECOND));
}

#[test]
fn a_connection_creates_at_most_16_streams_at_once_and_ids_are_never_reused() {
    let mut client = Client::connected();
    for id in 1..=MAX_STREAMS_PER_CONNECTION {
        client.command(0, "createStream", f64::from(id), vec![]);
        assert_eq!(
            client.commands(),
            [(
                0,
                "_result".to_owned(),
                f64::from(id),
                vec![f64::from(id).into()]
            )]
        );
    }
    client.command(0, "createStream", 100.0, vec![]);
    let refused = client.commands();
    let [(0, name, txn, args)] = refused.as_slice() else {
        panic!("{refused:?}")
    };
    assert_eq!((name.as_str(), *txn), ("_error", 100.0));
    assert_eq!(
        args[0].get("code").and_then(Amf0Value::as_str),
        Some("NetConnection.Call.Failed")
    );
    // The connection goes on; deleting a stream makes room for one more, with a new id.
    client.command(0, "deleteStream", 101.0, vec![3.0.into()]);
    client.command(0, "createStream", 102.0, vec![]);
    assert_eq!(
        client.commands(),
        [(0, "_result".to_owned(), 102.0, vec![17.0.into()])]
    );
}
