//! Which destinations a publish starts: the user's file, then the authorization
//! callback's answer, then the publish URL's query string
//! (`?youtube=KEY&twitch=KEY&facebook_s_bl=1&twitch_profile=720p30`). They add up;
//! the same target with the same profile starts once.
//!
//! Only presets can be named in the query string, so a publisher cannot point
//! prism at an arbitrary host; custom URLs come only from the operator (user files
//! and the callback's answer).

use crate::presets::{Constraints, Presets};
use crate::target::Target;
use crate::transcode::Profiles;
use crate::users::{DestinationRequest, User};

/// The query-string suffix that names a destination's re-encode profile.
pub const PROFILE_SUFFIX: &str = "profile";

/// One destination of a live stream.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationSpec {
    /// Unique within the stream: the preset id (`youtube`, `youtube-2`) or `custom`.
    pub id: String,
    /// The preset it came from, if any.
    pub preset: Option<String>,
    /// Where it publishes.
    pub target: Target,
    /// A re-encode profile name.
    pub profile: Option<String>,
    /// What the platform accepts (empty for custom URLs).
    pub constraints: Constraints,
}

/// The destinations of a publish, and what was wrong with the request (messages
/// that name parameters and presets, never keys).
#[derive(Debug, Default)]
pub struct Resolution {
    /// Destinations to start, without duplicates.
    pub destinations: Vec<DestinationSpec>,
    /// Refused destinations, ignored parameters and similar notes, safe to log
    /// and to show.
    pub problems: Vec<String>,
}

/// The most problems of one publish that the status API shows. A publish's
/// problems are already few (one per preset named, one for all unknown
/// parameters, one per listed destination), but what is shown for as long as a
/// stream lives stays bounded whatever changes upstream.
pub const MAX_PROBLEMS_SHOWN: usize = 16;

impl Resolution {
    /// The problems to show with the stream: all of them, or the first
    /// [`MAX_PROBLEMS_SHOWN`] - 1 and a last line that counts the rest.
    pub fn problems_shown(&self) -> Vec<String> {
        if self.problems.len() <= MAX_PROBLEMS_SHOWN {
            return self.problems.clone();
        }
        let kept = MAX_PROBLEMS_SHOWN - 1;
        let mut shown = self.problems[..kept].to_vec();
        shown.push(format!(
            "and {} more problems with the destinations (see the log)",
            self.problems.len() - kept
        ));
        shown
    }
}

#[derive(Default)]
struct QueryDestination {
    key: Option<String>,
    extra: Vec<(String, String)>,
    profile: Option<String>,
}

/// Resolves a publish's destinations: `user`'s, then `callback`'s (the
/// authorization callback's answer), then the query string's.
pub fn resolve(
    query: &str,
    user: Option<&User>,
    callback: &[DestinationRequest],
    presets: &Presets,
    profiles: &Profiles,
) -> Resolution {
    let mut resolution = Resolution::default();
    if let Some(user) = user {
        let source = format!("user {}", user.name);
        add_listed(&mut resolution, &user.destinations, &source, presets);
    }
    add_listed(
        &mut resolution,
        callback,
        "the authorization callback",
        presets,
    );
    for (preset, wanted) in parse_query(query, presets, &mut resolution.problems) {
        let Some(key) = wanted.key else {
            resolution.problems.push(format!(
                "parameters for {preset} given without {preset}=KEY"
            ));
            continue;
        };
        if let Some(profile) = &wanted.profile
            && !profiles.contains(profile)
        {
            resolution.problems.push(format!(
                "unknown profile for {preset} (known: {}); destination not started",
                profiles.names()
            ));
            continue;
        }
        match presets.target(&preset, &key, &wanted.extra) {
            Ok(target) => add(
                &mut resolution,
                Some(&preset),
                target,
                wanted.profile,
                presets,
            ),
            // Names the destination and what is wrong, never the key.
            Err(err) => resolution
                .problems
                .push(format!("{preset}: {err}; destination not started")),
        }
    }
    resolution
}

/// Adds destinations listed by the operator (a user file, a callback answer), which
/// were validated when read; one made invalid since (a preset removed by a reload)
/// is reported with the reason.
fn add_listed(
    resolution: &mut Resolution,
    destinations: &[DestinationRequest],
    source: &str,
    presets: &Presets,
) {
    for (index, destination) in destinations.iter().enumerate() {
        let target = match destination.target(presets) {
            Ok(target) => target,
            Err(err) => {
                resolution.problems.push(format!(
                    "{source}: destination {}: {err}; not started",
                    index + 1
                ));
                continue;
            }
        };
        add(
            resolution,
            destination.preset.as_deref(),
            target,
            destination.profile.clone(),
            presets,
        );
    }
}

/// Unknown parameters named in the one problem that reports them all: enough to
/// recognise a typo, and a bounded line however many a publisher sends.
const UNKNOWN_NAMED: usize = 3;

/// The query's unknown parameters, counted, with the first few names kept.
#[derive(Default)]
struct Unknown {
    count: usize,
    first: Vec<String>,
}

impl Unknown {
    fn add(&mut self, param: &str) {
        self.count += 1;
        if self.first.len() < UNKNOWN_NAMED {
            self.first.push(format!("`{}`", printable(param)));
        }
    }

    /// One problem for all of them (none when there were none): a publish with
    /// thousands of unknown parameters must not become thousands of log lines or
    /// status warnings.
    fn problem(&self) -> Option<String> {
        let names = self.first.join(", ");
        match self.count {
            0 => None,
            1 => Some(format!("ignored 1 unknown query parameter ({names})")),
            n if n <= UNKNOWN_NAMED => {
                Some(format!("ignored {n} unknown query parameters ({names})"))
            }
            n => Some(format!(
                "ignored {n} unknown query parameters (first: {names})"
            )),
        }
    }
}

/// Groups query parameters by preset, in order of first appearance. Unknown
/// parameters are summarised in one problem, by name, never with their values.
fn parse_query(
    query: &str,
    presets: &Presets,
    problems: &mut Vec<String>,
) -> Vec<(String, QueryDestination)> {
    let mut wanted: Vec<(String, QueryDestination)> = Vec::new();
    let mut unknown = Unknown::default();
    for (param, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let known = match presets.id_for_param(&param) {
            Some(id) => Some((id.to_owned(), None)),
            None => match param.split_once('_') {
                Some((prefix, sub)) if !sub.is_empty() => presets
                    .id_for_param(prefix)
                    .map(|id| (id.to_owned(), Some(sub.to_owned()))),
                _ => None,
            },
        };
        let Some((preset, sub)) = known else {
            unknown.add(&param);
            continue;
        };
        let index = match wanted.iter().position(|(id, _)| *id == preset) {
            Some(index) => index,
            None => {
                wanted.push((preset, QueryDestination::default()));
                wanted.len() - 1
            }
        };
        let entry = &mut wanted[index].1;
        match sub.as_deref() {
            None => entry.key = Some(value.into_owned()),
            Some(PROFILE_SUFFIX) => entry.profile = Some(value.into_owned()),
            Some(sub) => entry.extra.push((sub.to_owned(), value.into_owned())),
        }
    }
    problems.extend(unknown.problem());
    wanted
}

/// A parameter name for a log line: short and printable (it is not a secret, but it
/// comes from the network).
fn printable(param: &str) -> String {
    param
        .chars()
        .take(32)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

fn add(
    resolution: &mut Resolution,
    preset: Option<&str>,
    target: Target,
    profile: Option<String>,
    presets: &Presets,
) {
    match DestinationSpec::new_unique(&resolution.destinations, preset, target, profile, presets) {
        Some(spec) => resolution.destinations.push(spec),
        // Two entries for the same ingest and key would fight over one broadcast.
        None => resolution.problems.push(format!(
            "duplicate destination {} started once",
            preset.unwrap_or("custom")
        )),
    }
}

impl DestinationSpec {
    /// A destination next to `existing`: `None` when one of them already publishes
    /// to the same target with the same profile; otherwise with an id none of them
    /// has (`youtube`, `youtube-2`...).
    pub fn new_unique(
        existing: &[DestinationSpec],
        preset: Option<&str>,
        target: Target,
        profile: Option<String>,
        presets: &Presets,
    ) -> Option<Self> {
        if existing
            .iter()
            .any(|d| d.target == target && d.profile == profile)
        {
            return None;
        }
        let base = preset.unwrap_or("custom");
        let taken = |id: &str| existing.iter().any(|d| d.id == id);
        let id = std::iter::once(base.to_owned())
            .chain((2..).map(|n| format!("{base}-{n}")))
            .find(|id| !taken(id))
            .unwrap_or_else(|| base.to_owned());
        let constraints = preset
            .and_then(|p| presets.get(p))
            .map(|p| p.constraints.clone())
            .unwrap_or_default();
        Some(Self {
            id,
            preset: preset.map(str::to_owned),
            target,
            profile,
            constraints,
        })
    }
}

#[cfg(test)]
mod tests {
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
            ["ignored 3 unknown query parameters (`evil`, `url`, `youtube_`)"]
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
            ["ignored 1301 unknown query parameters (first: `secret`, `p0`, `p1`)"]
        );
        // A name from the network is cut short and made printable.
        let long = format!("a\u{7}b{}=1", "n".repeat(100));
        let r = resolve(&long, None, &[], &presets(), &Profiles::default_set());
        assert_eq!(
            r.problems,
            [format!(
                "ignored 1 unknown query parameter (`a?b{}`)",
                "n".repeat(29)
            )]
        );
        let r = resolve("a=1&b=2", None, &[], &presets(), &Profiles::default_set());
        assert_eq!(
            r.problems,
            ["ignored 2 unknown query parameters (`a`, `b`)"]
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
        let users =
            crate::users::Users::load_dir(&dir, &presets(), &Profiles::default_set()).unwrap();
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
            },
            DestinationRequest {
                preset: None,
                key: None,
                url: Some("rtmp://10.0.0.2/live/cb".into()),
                profile: Some("720p30".into()),
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
}
