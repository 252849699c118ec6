//! Which destinations a publish starts: the user's file, then the authorization
//! callback's answer, then the publish URL's query string
//! (`?youtube=KEY&twitch=KEY&facebook_s_bl=1&twitch_profile=720p30`). They add up;
//! the same target with the same profile starts once. A user's saved destination
//! keeps its saved id, switched off or not, so that an edit of it reaches the
//! live stream's destination of that id and no other.
//!
//! Only presets can be named in the query string, so a publisher cannot point
//! prism at an arbitrary host; custom URLs come only from the operator (user files
//! and the callback's answer).

use crate::presets::{Constraints, Presets};
use crate::target::Target;
use crate::transcode::Profiles;
use crate::users::{DestinationRequest, User, unique_id};

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
    /// Ids of the user's saved destinations that are switched off: kept free, so
    /// that switching one on while the stream is live gives it its own id.
    pub reserved: Vec<String>,
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
    /// A parameter whose suffix is a misspelling of [`PROFILE_SUFFIX`]
    /// (`youtube_profle`): passed through, it would silently become part of the
    /// stream name the ingest gets, and the destination would not be re-encoded.
    /// The parameter as typed (printable), and the one probably meant.
    misspelt_profile: Option<(String, String)>,
}

/// How far (in edits: a letter added, removed, changed or two swapped) a
/// parameter name may be from a preset's or from `profile` to be taken for a
/// misspelling of it.
const TYPO_DISTANCE: usize = 2;

/// Whether `typed` looks like a misspelling of `meant` (and is not it): close,
/// and long enough that closeness means something.
fn misspells(typed: &str, meant: &str) -> bool {
    typed != meant
        && typed.len() >= 3
        && strsim::damerau_levenshtein(&typed.to_ascii_lowercase(), meant) <= TYPO_DISTANCE
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
        resolution.reserved = user
            .destinations
            .iter()
            .filter(|d| !d.is_enabled())
            .filter_map(|d| d.id.clone())
            .collect();
        add_listed(&mut resolution, &user.destinations, &source, presets);
    }
    add_listed(
        &mut resolution,
        callback,
        "the authorization callback",
        presets,
    );
    for (preset, wanted) in parse_query(query, presets, &mut resolution.problems) {
        if let Some((typed, meant)) = &wanted.misspelt_profile {
            resolution.problems.push(format!(
                "{preset}: `{typed}` is not a parameter (did you mean `{meant}`?); \
                 destination not started"
            ));
            continue;
        }
        let Some(key) = wanted.key else {
            resolution.problems.push(format!(
                "parameters for {preset} given without {preset}=KEY"
            ));
            continue;
        };
        if let Some(profile) = &wanted.profile
            && !profiles.contains(profile)
        {
            // The profile typed is not quoted: whatever a publisher put there
            // may be a key.
            resolution.problems.push(format!(
                "{preset}: unknown profile (known: {}); destination not started",
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
/// were validated when read, except those switched off; one made invalid since (a
/// preset removed by a reload) is reported with the reason.
fn add_listed(
    resolution: &mut Resolution,
    destinations: &[DestinationRequest],
    source: &str,
    presets: &Presets,
) {
    for (index, destination) in destinations.iter().enumerate() {
        if !destination.is_enabled() {
            continue;
        }
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
        add_as(
            resolution,
            destination.id.as_deref(),
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
    /// Counts `param`; the first few are named, with the preset parameter each
    /// probably misspells (`youtub` → `youtube`), so that a typo in a publish URL
    /// reads as one.
    fn add(&mut self, param: &str, presets: &Presets) {
        self.count += 1;
        if self.first.len() < UNKNOWN_NAMED {
            let mut named = format!("`{}`", printable(param));
            let typed = param.split_once('_').map_or(param, |(prefix, _)| prefix);
            if let Some(meant) = presets.params().find(|meant| misspells(typed, meant)) {
                named.push_str(&format!(" (did you mean `{meant}`?)"));
            }
            self.first.push(named);
        }
    }

    /// One problem for all of them (none when there were none): a publish with
    /// thousands of unknown parameters must not become thousands of log lines or
    /// status warnings.
    fn problem(&self) -> Option<String> {
        let names = self.first.join(", ");
        match self.count {
            0 => None,
            1 => Some(format!(
                "ignored 1 unknown query parameter ({names}): it names no preset, \
                 no destination started for it"
            )),
            n if n <= UNKNOWN_NAMED => Some(format!(
                "ignored {n} unknown query parameters ({names}): they name no preset, \
                 no destination started for them"
            )),
            n => Some(format!(
                "ignored {n} unknown query parameters (first: {names}): they name no \
                 preset, no destination started for them"
            )),
        }
    }
}

/// Groups query parameters by preset, in order of first appearance. Unknown
/// parameters are summarised in one problem, by name, never with their values.
/// The publish parameter that makes a publisher its stream's backup.
const ROLE_PARAM: &str = "role";

fn parse_query(
    query: &str,
    presets: &Presets,
    problems: &mut Vec<String>,
) -> Vec<(String, QueryDestination)> {
    let mut wanted: Vec<(String, QueryDestination)> = Vec::new();
    let mut unknown = Unknown::default();
    for (param, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if param == ROLE_PARAM {
            // prism's own: a backup publish (`role=backup`), not a destination.
            continue;
        }
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
            unknown.add(&param, presets);
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
            Some(sub) if misspells(sub, PROFILE_SUFFIX) => {
                let prefix = param.split_once('_').map_or(&*param, |(prefix, _)| prefix);
                entry.misspelt_profile =
                    Some((printable(&param), format!("{prefix}_{PROFILE_SUFFIX}")));
            }
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
    add_as(resolution, None, preset, target, profile, presets);
}

/// Adds a destination under the id it asks for (`wanted`, a saved one's) when
/// that is free, else under the next free id of its preset.
fn add_as(
    resolution: &mut Resolution,
    wanted: Option<&str>,
    preset: Option<&str>,
    target: Target,
    profile: Option<String>,
    presets: &Presets,
) {
    let taken = IdsTaken {
        started: &resolution.destinations,
        reserved: &resolution.reserved,
    };
    match DestinationSpec::new_unique_as(taken, wanted, preset, target, profile, presets) {
        Some(spec) => resolution.destinations.push(spec),
        // Two entries for the same ingest and key would fight over one broadcast.
        None => resolution.problems.push(format!(
            "duplicate destination {} started once",
            preset.unwrap_or("custom")
        )),
    }
}

/// The ids a new destination of a stream may not take: its destinations'
/// (started) and those kept for its user's switched-off saved ones (reserved).
#[derive(Debug, Clone, Copy)]
pub struct IdsTaken<'a> {
    /// The stream's destinations.
    pub started: &'a [DestinationSpec],
    /// Ids kept free.
    pub reserved: &'a [String],
}

impl IdsTaken<'_> {
    fn contains(&self, id: &str) -> bool {
        self.started.iter().any(|d| d.id == id) || self.reserved.iter().any(|r| r == id)
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
        let taken = IdsTaken {
            started: existing,
            reserved: &[],
        };
        Self::new_unique_as(taken, None, preset, target, profile, presets)
    }

    /// As [`Self::new_unique`], with the id `wanted` when it is not `taken`.
    pub fn new_unique_as(
        taken: IdsTaken<'_>,
        wanted: Option<&str>,
        preset: Option<&str>,
        target: Target,
        profile: Option<String>,
        presets: &Presets,
    ) -> Option<Self> {
        if taken
            .started
            .iter()
            .any(|d| d.target == target && d.profile == profile)
        {
            return None;
        }
        let id = match wanted {
            Some(id) if !taken.contains(id) => id.to_owned(),
            _ => unique_id(preset.unwrap_or("custom"), |id| taken.contains(id)),
        };
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
mod tests;
