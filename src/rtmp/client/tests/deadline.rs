//! The handshake and the publish deadline, on the pair's clock.

use std::time::{Duration, Instant};

use super::with_server::run;
use super::*;
use crate::rtmp::pair::{Answer, Pair, drain};
use crate::rtmp::server::ServerConfig;

const SECOND: Duration = Duration::from_secs(1);

/// A config whose publish is due 10 s after the start.
fn timed_config() -> ClientConfig {
    ClientConfig {
        publish_timeout: Some(10 * SECOND),
        ..config()
    }
}

#[test]
fn the_handshake_comes_first_and_connect_follows_it() {
    let start = Instant::now();
    let mut client = ClientSession::new(config(), start);
    assert!(client.is_handshaking());
    let c0c1 = drain(client.out());
    assert_eq!((c0c1.len(), c0c1[0]), (1537, 3), "C0+C1, plain RTMP");
    assert_eq!(&c0c1[5..9], &[0; 4], "the plain form, as OBS sends");
    // S0+S1+S2 in one read: C2 (an echo of S1), then Set Chunk Size and connect.
    let s1 = [0x42u8; 1536];
    let mut answer = BytesMut::from(&[&[3u8][..], &s1, &c0c1[1..]].concat()[..]);
    assert_eq!(client.poll(&mut answer).unwrap(), None);
    assert!(answer.is_empty() && !client.is_handshaking());
    let sent = drain(client.out());
    assert_eq!(&sent[..1536], &s1[..], "C2 echoes S1");
    let mut after = ClientSession::after_handshake(config(), start);
    assert_eq!(
        &sent[1536..],
        &drain(after.out())[..],
        "then what follows a handshake"
    );
}

#[test]
fn a_server_that_does_not_speak_rtmp_fails_the_handshake() {
    let mut client = ClientSession::new(config(), Instant::now());
    // A TLS alert where S0 belongs: an rtmps:// ingest reached with rtmp://.
    let mut buf = BytesMut::from(&[0x15, 3, 3, 0, 2][..]);
    let error = client.poll(&mut buf).unwrap_err();
    assert!(matches!(error, ClientError::Handshake(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        "handshake: unsupported RTMP version byte 21 in S0 (expected 3)"
    );
    assert!(!error.is_permanent());
}

#[test]
fn the_publish_is_due_a_publish_timeout_after_the_start() {
    let start = Instant::now();
    let mut client = ClientSession::new(timed_config(), start);
    assert_eq!(client.poll_timeout(), Some(start + 10 * SECOND));
    let just_before = start + 10 * SECOND - Duration::from_millis(1);
    assert!(client.handle_timeout(just_before).is_ok());
    let error = client.handle_timeout(start + 10 * SECOND).unwrap_err();
    assert!(matches!(error, ClientError::Timeout(d) if d == 10 * SECOND));
    assert_eq!(error.to_string(), "not publishing after 10s");
    assert!(!error.is_permanent(), "a silent ingest is retried");
    // Without a publish_timeout the wait is the caller's.
    let client = ClientSession::new(config(), start);
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn an_accepted_publish_has_no_deadline_and_an_undecided_one_runs_out() {
    let mut wire = Pair::publisher(timed_config(), ServerConfig::default());
    wire.advance(3 * SECOND);
    assert_eq!(
        run(&mut wire).unwrap(),
        [
            ClientEvent::Connected,
            ClientEvent::Publishing { stream_id: 1 }
        ]
    );
    assert_eq!(wire.client.poll_timeout(), None);
    wire.advance(3600 * SECOND);
    assert!(wire.client_timeout().is_ok());

    // A server that never decides (an ingest whose authorization hangs).
    let mut wire = Pair::publisher(timed_config(), ServerConfig::default());
    let start = wire.now;
    wire.answer = Answer::Leave;
    assert_eq!(run(&mut wire).unwrap(), [ClientEvent::Connected]);
    assert_eq!(wire.client.poll_timeout(), Some(start + 10 * SECOND));
    wire.advance(10 * SECOND);
    assert!(matches!(
        wire.client_timeout(),
        Err(ClientError::Timeout(_))
    ));
}

#[test]
fn unpublish_during_the_handshake_ends_it_without_a_connect() {
    let mut client = ClientSession::new(timed_config(), Instant::now());
    let c0c1 = drain(client.out());
    client.unpublish();
    assert_eq!(
        client.poll(&mut BytesMut::new()).unwrap(),
        Some(ClientEvent::Unpublished)
    );
    assert_eq!(client.poll_timeout(), None, "nothing is awaited any more");
    let mut answer = BytesMut::from(&[&[3u8][..], &[7u8; 1536], &c0c1[1..]].concat()[..]);
    assert_eq!(client.poll(&mut answer).unwrap(), None);
    assert_eq!(drain(client.out()).len(), 1536, "C2 only: no connect");
}
