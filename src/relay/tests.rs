use super::*;
use crate::mask::Masked;
use crate::stream_name::StreamName;

/// Two stream keys with the same mask (`****` plus a 16-bit fingerprint):
/// the collision the issue reported, found offline by brute force.
const VICTIM: &str = "VICTIM-key-8842";
const EVIL: &str = "evil46109";

fn relay() -> Arc<Relay> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = Config::defaults();
    let hub = Hub::new(config.hub_limits());
    Arc::new(
        Relay::new(&config, hub, TaskTracker::new(), CancellationToken::new())
            .expect("the default relay starts"),
    )
}

fn go_live(relay: &Arc<Relay>, key: &str) -> (RelayHandle, CancellationToken) {
    let name = StreamName::parse("live", "", key).expect("a valid name");
    let kick = CancellationToken::new();
    (relay.start(&name, &Grant::default(), kick.clone()), kick)
}

#[test]
fn stream_ids_are_128_random_bits_in_hex() {
    let mut rng = rand::rng();
    let a = StreamId::random(&mut rng);
    let b = StreamId::random(&mut rng);
    assert_eq!(a.as_str().len(), 32);
    assert!(
        a.as_str()
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_ne!(a, b);
}

#[test]
fn colliding_masks_are_refused_by_name_and_told_apart_by_id() {
    assert_eq!(
        Masked(VICTIM).to_string(),
        Masked(EVIL).to_string(),
        "the two keys share a mask"
    );
    let relay = relay();
    let (victim, victim_kick) = go_live(&relay, VICTIM);
    let shown = Masked(VICTIM).to_string();
    let found = relay.find("live", &shown).expect("one stream: found");
    assert_eq!(found.id(), victim.stream_id());

    let (evil, evil_kick) = go_live(&relay, EVIL);
    assert_ne!(victim.stream_id(), evil.stream_id());
    match relay.find("live", &shown) {
        Err(ControlError::Ambiguous(message)) => {
            assert!(message.contains("id"), "{message}");
            assert!(!message.contains(VICTIM) && !message.contains(EVIL));
        }
        Err(other) => panic!("expected ambiguous, got {other}"),
        Ok(_) => panic!("expected ambiguous, got a stream"),
    }
    for (handle, key) in [(&victim, VICTIM), (&evil, EVIL)] {
        let stream = relay.find_by_id(handle.stream_id().as_str()).unwrap();
        assert_eq!(stream.key(), key, "the id names exactly one stream");
    }

    // Kicking by id cancels exactly that publisher.
    relay.kick(&relay.find_by_id(evil.stream_id().as_str()).unwrap(), None);
    assert!(evil_kick.is_cancelled());
    assert!(!victim_kick.is_cancelled());

    // Once the other has gone, the name is unambiguous again; its id is gone.
    let evil_id = evil.stream_id().clone();
    drop(evil);
    assert!(matches!(
        relay.find_by_id(evil_id.as_str()),
        Err(ControlError::NotFound(_))
    ));
    assert_eq!(relay.find("live", &shown).unwrap().key(), VICTIM);
    drop(victim);
    assert!(matches!(
        relay.find("live", &shown),
        Err(ControlError::NotFound(_))
    ));
}

#[test]
fn a_publishs_refused_destinations_stay_in_its_warnings_while_it_lives() {
    let relay = relay();
    let name = StreamName::parse(
        "live",
        "",
        "warn-key?youtube=yt-secret%0A&twitch=..%2Ftw-secret&colour=blue",
    )
    .expect("a valid name");
    let handle = relay.start(&name, &Grant::default(), CancellationToken::new());
    let stream = relay.find_by_id(handle.stream_id().as_str()).unwrap();
    assert!(stream.snapshots().is_empty(), "no destination started");
    let warnings = relay.warnings(&stream, None, None);
    assert_eq!(
        warnings,
        [
            "ignored 1 unknown query parameter (`colour`): it names no preset, \
             no destination started for it",
            "youtube: the key contains a control character (such as a newline or NUL); \
             destination not started",
            "twitch: the key contains a path separator ('/' or '\\'); destination not started",
        ]
    );
    // Still there on the next look, and while the publisher's grace period runs.
    handle.orphan();
    assert_eq!(relay.warnings(&stream, None, None), warnings);
    drop(handle);
    assert!(relay.find_by_id(stream.id().as_str()).is_err());
}

#[test]
fn a_publisher_back_within_its_grace_period_keeps_the_stream_id() {
    let relay = relay();
    let (first, _) = go_live(&relay, "grace-key");
    let id = first.stream_id().clone();
    first.orphan();
    let (second, _) = go_live(&relay, "grace-key");
    assert_eq!(second.stream_id(), &id, "the same stream, the same id");
    drop(first);
    assert!(relay.find_by_id(id.as_str()).is_ok(), "still live");
    drop(second);
    assert!(relay.find_by_id(id.as_str()).is_err());
}
