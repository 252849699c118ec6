use super::*;
use std::collections::BTreeMap;

fn presets() -> Presets {
    Presets::load(&BTreeMap::new()).unwrap()
}

#[test]
fn the_query_string_names_presets_and_passes_parameters_through() {
    let r = resolve(
        "youtube=yt-key&twitch=live_1&facebook=FB-1&facebook_s_bl=1&twitch_profile=720p30",
        None,
        &[],
        &presets(),
        &Profiles::default_set(),
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let ids: Vec<_> = r.destinations.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["youtube", "twitch", "facebook"]);
    assert_eq!(r.destinations[0].target.stream_name, "yt-key");
    assert_eq!(r.destinations[1].profile.as_deref(), Some("720p30"));
    assert_eq!(r.destinations[2].target.stream_name, "FB-1?s_bl=1");
    assert!(r.destinations[2].target.tls);
    assert_eq!(r.destinations[1].constraints.video_codecs, ["h264"]);
}

#[test]
fn unknown_parameters_never_reach_a_host_and_are_reported_without_values() {
    let r = resolve(
        "evil=rtmp://attacker/x&url=rtmp://h/a/b&youtube_=x",
        None,
        &[],
        &presets(),
        &Profiles::default_set(),
    );
    assert!(r.destinations.is_empty());
    assert_eq!(
        r.problems,
        [
            "ignored 3 unknown query parameters (`evil`, `url`, `youtube_`): they name no preset, \
         no destination started for them"
        ]
    );
}

#[test]
fn thousands_of_unknown_parameters_are_one_short_problem() {
    let mut query = String::from("secret=do-not-print&twitch=tw-key");
    for i in 0..1300 {
        query.push_str(&format!("&p{i}=v{i}"));
    }
    let r = resolve(&query, None, &[], &presets(), &Profiles::default_set());
    let ids: Vec<_> = r.destinations.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["twitch"], "the known parameter still counts");
    assert_eq!(
        r.problems,
        [
            "ignored 1301 unknown query parameters (first: `secret`, `p0`, `p1`): they name no \
         preset, no destination started for them"
        ]
    );
    // A name from the network is cut short and made printable.
    let long = format!("a\u{7}b{}=1", "n".repeat(100));
    let r = resolve(&long, None, &[], &presets(), &Profiles::default_set());
    assert_eq!(
        r.problems,
        [format!(
            "ignored 1 unknown query parameter (`a?b{}`): it names no preset, \
             no destination started for it",
            "n".repeat(29)
        )]
    );
    let r = resolve("a=1&b=2", None, &[], &presets(), &Profiles::default_set());
    assert_eq!(
        r.problems,
        [
            "ignored 2 unknown query parameters (`a`, `b`): they name no preset, \
         no destination started for them"
        ]
    );
}

#[test]
fn keys_against_the_key_rules_are_refused_by_destination_without_quoting_them() {
    let long = "k".repeat(3000);
    // Percent-encoded as in a publish URL; the query decoder turns them into
    // the raw bytes the check sees.
    let query = format!(
        "twitch=tw-good-key&youtube=yt-secret%0Anewline&facebook=fb-secret%00nul\
         &kick=..%2F..%2Fkick-secret&trovo={long}"
    );
    let r = resolve(&query, None, &[], &presets(), &Profiles::default_set());
    let ids: Vec<_> = r.destinations.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["twitch"], "only the valid key starts");
    assert_eq!(
        r.problems,
        [
            "youtube: the key contains a control character (such as a newline or NUL); \
             destination not started",
            "facebook: the key contains a control character (such as a newline or NUL); \
             destination not started",
            "kick: the key contains a path separator ('/' or '\\'); destination not started",
            "trovo: the key is 3000 bytes long, over the limit of 512; destination not started",
        ]
    );
    for problem in &r.problems {
        assert!(!problem.contains("secret") && !problem.contains("kkkk"));
    }
}

#[test]
fn passed_through_parameters_are_held_to_the_key_rules() {
    let r = resolve(
        "facebook=FB-1&facebook_s_bl=1%0A&twitch=tw&twitch_a%2Fb=1&youtube=yt&youtube_x=..%2F",
        None,
        &[],
        &presets(),
        &Profiles::default_set(),
    );
    assert!(r.destinations.is_empty(), "{:?}", r.destinations);
    assert_eq!(
        r.problems,
        [
            "facebook: the value of parameter `s_bl` contains a control character \
             (such as a newline or NUL); destination not started",
            "twitch: a parameter name passed through is not 1 to 32 letters, digits, \
             '_' or '-'; destination not started",
            "youtube: the value of parameter `x` contains a path separator ('/' or '\\'); \
             destination not started",
        ]
    );
}

#[test]
fn the_problems_shown_are_bounded() {
    let mut r = Resolution {
        problems: (0..MAX_PROBLEMS_SHOWN).map(|i| format!("p{i}")).collect(),
        ..Resolution::default()
    };
    assert_eq!(r.problems_shown(), r.problems, "up to the limit: all");
    r.problems.push("one more".into());
    let shown = r.problems_shown();
    assert_eq!(shown.len(), MAX_PROBLEMS_SHOWN);
    assert_eq!(shown[MAX_PROBLEMS_SHOWN - 2], "p14");
    assert_eq!(
        shown[MAX_PROBLEMS_SHOWN - 1],
        "and 2 more problems with the destinations (see the log)"
    );
}

#[test]
fn extra_parameters_without_a_key_and_bad_profiles_are_reported() {
    let r = resolve(
        "facebook_s_bl=1&twitch=k&twitch_profile=8k",
        None,
        &[],
        &presets(),
        &Profiles::default_set(),
    );
    assert!(r.destinations.is_empty());
    assert!(r.problems[0].contains("without facebook=KEY"));
    assert!(r.problems[1].contains("unknown profile"));
}

#[test]
fn duplicates_start_once_and_same_preset_twice_gets_distinct_ids() {
    let dir = std::env::temp_dir().join(format!("prism-dest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("u.toml"),
        "stream_key = \"user-key-123\"\n[[destinations]]\npreset = \"youtube\"\nkey = \"a\"\n\
         [[destinations]]\nurl = \"rtmp://10.0.0.1/live/x\"\n",
    )
    .unwrap();
    let users = crate::users::Users::load_dir(&dir, &presets(), &Profiles::default_set()).unwrap();
    let user = users.authenticate("user-key-123");
    let r = resolve(
        "youtube=a&twitch=t",
        user,
        &[],
        &presets(),
        &Profiles::default_set(),
    );
    let ids: Vec<_> = r.destinations.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["youtube", "custom", "twitch"]);
    assert!(r.problems[0].contains("duplicate"));
    let r = resolve("youtube=b", user, &[], &presets(), &Profiles::default_set());
    let ids: Vec<_> = r.destinations.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["youtube", "custom", "youtube-2"]);
}

#[test]
fn callback_destinations_come_between_the_users_and_the_query_strings() {
    let callback = [
        DestinationRequest {
            preset: Some("twitch".into()),
            key: Some("tw-cb".into()),
            url: None,
            profile: None,
            ..DestinationRequest::default()
        },
        DestinationRequest {
            preset: None,
            key: None,
            url: Some("rtmp://10.0.0.2/live/cb".into()),
            profile: Some("720p30".into()),
            ..DestinationRequest::default()
        },
    ];
    let r = resolve(
        "twitch=tw-cb&youtube=yt",
        None,
        &callback,
        &presets(),
        &Profiles::default_set(),
    );
    let ids: Vec<_> = r.destinations.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["twitch", "custom", "youtube"]);
    assert_eq!(r.destinations[1].profile.as_deref(), Some("720p30"));
    assert!(r.problems[0].contains("duplicate"), "{:?}", r.problems);
}

#[test]
fn mistyped_presets_profiles_and_empty_keys_are_refused_without_their_values() {
    let r = resolve(
        "twitch=tw-good&youtube=yt-secret&youtube_profile=360p&youtub=typo-secret\
         &kick=&trovo=tr-secret&trovo_profle=720p30&Facebok_s_bl=fb-secret&zz=zz-secret",
        None,
        &[],
        &presets(),
        &Profiles::default_set(),
    );
    let ids: Vec<_> = r.destinations.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["twitch"], "only the well-typed destination starts");
    assert_eq!(
        r.problems,
        [
            "ignored 3 unknown query parameters (`youtub` (did you mean `youtube`?), \
             `Facebok_s_bl` (did you mean `facebook`?), `zz`): they name no preset, \
             no destination started for them",
            "youtube: unknown profile (known: 1080p30, 480p30, 720p30, h264); destination not started",
            "kick: the key is empty; destination not started",
            "trovo: `trovo_profle` is not a parameter (did you mean `trovo_profile`?); \
             destination not started",
        ]
    );
    for problem in &r.problems {
        assert!(!problem.contains("secret"), "{problem}");
        assert!(
            !problem.contains("360p"),
            "the profile typed is not quoted: {problem}"
        );
    }
}

#[test]
fn passed_through_parameters_unlike_profile_still_pass() {
    let r = resolve(
        "facebook=FB-1&facebook_s_bl=1&facebook_pro=2",
        None,
        &[],
        &presets(),
        &Profiles::default_set(),
    );
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.destinations[0].target.stream_name, "FB-1?s_bl=1&pro=2");
}

#[test]
fn saved_destinations_keep_their_ids_and_switched_off_ones_keep_theirs_free() {
    let dir = std::env::temp_dir().join(format!("prism-resolve-saved-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("alice.toml");
    let text = "stream_key = \"alice-key-1\"\n\
        [[destinations]]\nid = \"main\"\npreset = \"youtube\"\nkey = \"yt-1\"\n\
        [[destinations]]\npreset = \"twitch\"\nkey = \"tw-1\"\nenabled = false\n\
        [[destinations]]\npreset = \"kick\"\nkey = \"kick-1\"\n";
    let user = crate::users::load_text(&file, text, &presets(), &Profiles::default_set()).unwrap();
    let ids: Vec<_> = user
        .destinations
        .iter()
        .map(|d| d.id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["main", "twitch", "kick"]);
    // The query's twitch does not take the switched-off saved twitch's id, so
    // switching that one on while live gives it `twitch`.
    let r = resolve(
        "twitch=tw-query",
        Some(&user),
        &[],
        &presets(),
        &Profiles::default_set(),
    );
    let ids: Vec<_> = r.destinations.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["main", "kick", "twitch-2"]);
    assert_eq!(r.reserved, ["twitch"]);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let _ = std::fs::remove_dir_all(&dir);
}
