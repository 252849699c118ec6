use super::*;

fn presets() -> Presets {
    Presets::load(&BTreeMap::new()).unwrap()
}

fn parse(body: &str) -> Result<Vec<DestinationRequest>, CallbackError> {
    parse_answer(body.as_bytes(), &presets(), &Profiles::default_set())
}

#[test]
fn an_empty_answer_or_an_object_without_destinations_allows_with_none() {
    for body in ["", " \r\n", "{}", "{\"destinations\": []}"] {
        assert!(parse(body).unwrap().is_empty(), "{body:?}");
    }
}

#[test]
fn destinations_are_read_in_the_shape_of_a_user_file() {
    let got = parse(
        r#"{"destinations": [
            {"preset": "youtube", "key": "yt-secret-key"},
            {"url": "rtmps://ingest.example.com/app/custom-secret", "profile": "720p30"}
        ]}"#,
    )
    .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].preset.as_deref(), Some("youtube"));
    assert_eq!(got[0].key.as_deref(), Some("yt-secret-key"));
    assert_eq!(
        got[1].url.as_deref(),
        Some("rtmps://ingest.example.com/app/custom-secret")
    );
    assert_eq!(got[1].profile.as_deref(), Some("720p30"));
}

#[test]
fn bad_answers_are_refused_with_a_reason_that_quotes_no_value() {
    let too_many = format!(
        "{{\"destinations\": [{}]}}",
        vec![r#"{"preset": "twitch", "key": "secret-k"}"#; MAX_DESTINATIONS_PER_USER + 1].join(",")
    );
    let cases = [
        ("OK secret-k", "not JSON"),
        ("{\"destinations\": [", "not JSON"),
        ("null", "expected {\"destinations\""),
        ("\"secret-k\"", "expected {\"destinations\""),
        (
            "{\"destinations\": \"secret-k\"}",
            "expected {\"destinations\"",
        ),
        (
            "{\"destinations\": [{\"key\": 5}]}",
            "expected {\"destinations\"",
        ),
        ("{\"destination\": []}", "unknown field `destination`"),
        (
            "{\"destinations\": [{\"preset\": \"youtube\", \"secret\": \"secret-k\"}]}",
            "unknown field `secret`",
        ),
        (
            "{\"destinations\": [{\"preset\": \"nope\", \"key\": \"secret-k\"}]}",
            "destination 1: unknown preset `nope`",
        ),
        (
            "{\"destinations\": [{\"preset\": \"youtube\"}]}",
            "destination 1: a preset needs a key",
        ),
        (
            "{\"destinations\": [{\"url\": \"http://h/app/secret-k\"}]}",
            "destination 1: unsupported scheme",
        ),
        (
            "{\"destinations\": [{\"url\": \"rtmp://h/app/secret-k\", \"profile\": \"8k\"}]}",
            "destination 1: unknown profile",
        ),
        // A key is held to the key rules whoever supplies it.
        (
            "{\"destinations\": [{\"preset\": \"twitch\", \"key\": \"secret-k\\n\"}]}",
            "destination 1: the key contains a control character",
        ),
        (
            "{\"destinations\": [{\"preset\": \"twitch\", \"key\": \"../secret-k\"}]}",
            "destination 1: the key contains a path separator",
        ),
        (too_many.as_str(), "more than 32 destinations"),
    ];
    for (body, expected) in cases {
        let err = parse(body).expect_err(body);
        assert!(
            matches!(err, CallbackError::Malformed(_)),
            "{body}: {err:?}"
        );
        let shown = err.to_string();
        assert!(shown.contains(expected), "{body}: {shown}");
        assert!(!shown.contains("secret-k"), "{body}: {shown}");
        assert_eq!(err.peer_description(), "publish authorization failed");
    }
    assert_eq!(
        CallbackError::Denied(403).peer_description(),
        "publish not authorized"
    );
}

#[test]
fn the_request_carries_app_key_address_and_query_parameters() {
    let name = StreamName::parse("live", "a=1", "the-key?youtube=yt&a=2&t=x%20y").unwrap();
    let request = PublishRequest::new(&name, "192.0.2.7".parse().unwrap(), None);
    let json: serde_json::Value = serde_json::to_value(&request).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "call": "publish",
            "app": "live",
            "name": "the-key",
            "addr": "192.0.2.7",
            "query": {"a": "2", "youtube": "yt", "t": "x y"},
        })
    );
    let request = PublishRequest::new(&name, "::1".parse().unwrap(), Some("alice"));
    let json = serde_json::to_value(&request).unwrap();
    assert_eq!(json["user"], "alice");
    assert_eq!(json["addr"], "::1");
}

#[test]
fn urls_are_checked_and_shown_masked() {
    let url = "https://hook:pass-secret@auth.example.com:8443/rtmp/publish?token=tok-secret&v=2";
    let shown = masked_url(url);
    assert!(
        !shown.contains("tok-secret") && !shown.contains("pass-secret"),
        "{shown}"
    );
    assert!(
        shown.starts_with("https://hook:****@auth.example.com:8443/rtmp/publish?token=****"),
        "{shown}"
    );
    assert_eq!(masked_url("http://h/p"), "http://h/p");
    assert!(!masked_url("not a url tok-secret").contains("tok-secret"));
    assert!(check_url(url).is_ok());
    assert!(check_url("rtmp://h/app").is_err());
    assert!(check_url("/relative?token=x").is_err());
    let config = AuthConfig {
        publish_url: Some(url.to_owned()),
        timeout_ms: 3000,
    };
    assert!(!format!("{config:?}").contains("tok-secret"));
}
