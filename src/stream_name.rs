//! Stream identity: app + bare name, with the query string kept apart.
//!
//! Encoders carry destination keys in the query string (`mykey?youtube=KEY`), in the
//! stream name, the app or the tcUrl. The query belongs to the stream for the relay,
//! but it is never part of the stream's name, so `live/mykey?youtube=a` is live as
//! `live/mykey`.

use std::fmt;

/// Longest app or stream name accepted. Names become map keys and log fields;
/// real ones are short, and the bound keeps a peer from making them large.
pub const MAX_NAME_LEN: usize = 256;

/// The longest query string kept with a stream (it carries a few keys).
pub const MAX_QUERY_LEN: usize = 4096;

/// A stream's identity and its query string.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct StreamName {
    /// The application (`live`).
    pub app: String,
    /// The stream name without its query; for a publisher this is its stream key.
    pub name: String,
    /// Everything after `?` in the app, tcUrl and name, joined with `&`.
    pub query: String,
}

impl StreamName {
    /// Splits the connect command's app into a bare app and the query carried by the
    /// app or the tcUrl (`rtmp://host/live?x=y`).
    pub fn split_app(app: &str, tc_url: &str) -> (String, String) {
        let (app, app_query) = split_query(app);
        let tc_query = tc_url.split_once('?').map(|(_, q)| q).unwrap_or("");
        // ffmpeg puts a query that follows the app into both; keep one copy.
        let query = if app_query.is_empty() || app_query == tc_query {
            tc_query
        } else {
            app_query
        };
        (app.trim_end_matches('/').to_owned(), query.to_owned())
    }

    /// Builds the identity of a publish or play request, or `None` when the name is
    /// empty, too long or contains control characters.
    pub fn parse(app: &str, connect_query: &str, name: &str) -> Option<Self> {
        let (name, name_query) = split_query(name);
        let name = name.strip_suffix(".flv").unwrap_or(name);
        if !valid_name(app) || !valid_name(name) {
            return None;
        }
        let query = match (connect_query.is_empty(), name_query.is_empty()) {
            (true, _) => name_query.to_owned(),
            (false, true) => connect_query.to_owned(),
            (false, false) => format!("{connect_query}&{name_query}"),
        };
        if query.len() > MAX_QUERY_LEN {
            return None;
        }
        Some(Self {
            app: app.to_owned(),
            name: name.to_owned(),
            query,
        })
    }

    /// The `app/name` path with the name masked, for logs.
    pub fn masked(&self) -> MaskedName<'_> {
        MaskedName(self)
    }
}

fn split_query(s: &str) -> (&str, &str) {
    s.split_once('?').unwrap_or((s, ""))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_NAME_LEN && !s.chars().any(char::is_control)
}

/// Never prints the query (it carries destination keys).
impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.masked())
    }
}

/// Displays `app/name` with the stream key masked.
pub struct MaskedName<'a>(&'a StreamName);

impl fmt::Display for MaskedName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.0.app, crate::mask::Masked(&self.0.name))
    }
}

/// What an SRT caller's stream id asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtRequest {
    /// The stream: app, name and query, as an RTMP publish names it.
    pub name: StreamName,
    /// Whether it publishes (`m=publish`, or no mode: this is an ingest) rather
    /// than asking to receive (`m=request`).
    pub publish: bool,
}

/// The app a plain SRT stream id without one (`KEY?youtube=...`) publishes to.
pub const SRT_DEFAULT_APP: &str = "live";

impl SrtRequest {
    /// Reads a stream id: SRT's access-control convention
    /// (`#!::r=live/KEY?youtube=...,m=publish`; other keys such as `u`, `h`,
    /// `s`, `t` are ignored) or plainly the resource (`live/KEY?youtube=...`);
    /// a resource without an app is in [`SRT_DEFAULT_APP`]. `None` for an empty
    /// or malformed one.
    pub fn parse(stream_id: &str) -> Option<Self> {
        let (resource, publish) = match stream_id.strip_prefix("#!::") {
            Some(pairs) => {
                let mut resource = None;
                let mut publish = true;
                for pair in pairs.split(',') {
                    let (key, value) = pair.split_once('=')?;
                    match key {
                        "r" => resource = Some(value),
                        "m" => publish = value == "publish",
                        _ => {}
                    }
                }
                (resource?, publish)
            }
            None => (stream_id, true),
        };
        let (path, _) = split_query(resource);
        let (app, name) = match path.split_once('/') {
            Some((app, _)) => (app, &resource[app.len() + 1..]),
            None => (SRT_DEFAULT_APP, resource),
        };
        Some(Self {
            name: StreamName::parse(app, "", name)?,
            publish,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_in_the_name_is_kept_apart() {
        let n = StreamName::parse("live", "", "mykey?youtube=a&twitch=b").unwrap();
        assert_eq!(n.app, "live");
        assert_eq!(n.name, "mykey");
        assert_eq!(n.query, "youtube=a&twitch=b");
    }

    #[test]
    fn query_in_the_app_or_tcurl_joins_the_name_query() {
        let (app, q) = StreamName::split_app("live?youtube=a", "rtmp://h/live?youtube=a");
        assert_eq!((app.as_str(), q.as_str()), ("live", "youtube=a"));
        let n = StreamName::parse(&app, &q, "key?twitch=b").unwrap();
        assert_eq!(n.name, "key");
        assert_eq!(n.query, "youtube=a&twitch=b");
        let (app, q) = StreamName::split_app("live", "rtmp://h:1935/live?x=1");
        assert_eq!((app.as_str(), q.as_str()), ("live", "x=1"));
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(StreamName::parse("live", "", "").is_none());
        assert!(StreamName::parse("live", "", "?a=b").is_none());
        assert!(StreamName::parse("", "", "key").is_none());
        assert!(StreamName::parse("live", "", "a\nb").is_none());
        assert!(StreamName::parse("live", "", &"k".repeat(MAX_NAME_LEN + 1)).is_none());
    }

    #[test]
    fn debug_and_display_never_show_the_key_or_query() {
        let n = StreamName::parse("live", "", "supersecretkey?youtube=yt-secret").unwrap();
        let shown = format!("{n:?} {}", n.masked());
        assert!(!shown.contains("supersecretkey"), "{shown}");
        assert!(!shown.contains("yt-secret"), "{shown}");
        assert!(shown.contains("live/"), "{shown}");
    }

    #[test]
    fn srt_stream_ids_in_both_forms_name_the_stream_and_its_destinations() {
        let convention = SrtRequest::parse("#!::r=live/KEY?youtube=yt,m=publish,u=alice").unwrap();
        assert_eq!(convention.name.app, "live");
        assert_eq!(convention.name.name, "KEY");
        assert_eq!(convention.name.query, "youtube=yt");
        assert!(convention.publish);
        let plain = SrtRequest::parse("show/KEY2?twitch=tw&youtube=yt").unwrap();
        assert_eq!(
            (
                plain.name.app.as_str(),
                plain.name.name.as_str(),
                plain.name.query.as_str()
            ),
            ("show", "KEY2", "twitch=tw&youtube=yt")
        );
        let bare = SrtRequest::parse("KEY3").unwrap();
        assert_eq!(
            (bare.name.app.as_str(), bare.name.name.as_str()),
            ("live", "KEY3")
        );
        assert!(
            !SrtRequest::parse("#!::r=live/KEY,m=request")
                .unwrap()
                .publish
        );
        for bad in [
            "",
            "#!::m=publish",
            "#!::r",
            "live/",
            "/KEY",
            "#!::r=live/\u{1}",
        ] {
            assert_eq!(SrtRequest::parse(bad), None, "{bad:?}");
        }
    }
}
