//! What an `/hls/...` path asks for, parsed without I/O: the stream (by id, or
//! by app and user name) and the file.

/// The stream a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRef {
    /// `/hls/{id}/...`: the id the API shows.
    Id(String),
    /// `/hls/{app}/{user}/...`: a user's live stream in an app.
    User {
        /// The app.
        app: String,
        /// The user's name.
        user: String,
    },
}

/// The file a path names (see [`super::playlist::Names`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum File {
    /// `index.m3u8`: the master playlist of a ladder, else the source's media
    /// playlist.
    Index,
    /// `{rendition}.m3u8`.
    Playlist(String),
    /// `{rendition}.init{n}.mp4`.
    Init(String, u32),
    /// `{rendition}.{msn}.m4s`.
    Segment(String, u64),
    /// `{rendition}.{msn}.{part}.m4s`.
    Part(String, u64, usize),
}

impl File {
    /// The rendition it belongs to (`src` for the index).
    pub fn rendition(&self) -> &str {
        match self {
            Self::Index => super::SOURCE,
            Self::Playlist(r) | Self::Init(r, _) | Self::Segment(r, _) | Self::Part(r, _, _) => r,
        }
    }
}

/// The stream and file of a path below `/hls/`, or `None` for any other shape.
pub fn parse(path: &str) -> Option<(StreamRef, File)> {
    let mut segments: Vec<&str> = path.split('/').collect();
    let file = file(segments.pop()?)?;
    if segments.iter().any(|s| s.is_empty()) {
        return None;
    }
    let stream = match segments[..] {
        [id] => StreamRef::Id(id.to_owned()),
        [app, user] => StreamRef::User {
            app: app.to_owned(),
            user: user.to_owned(),
        },
        _ => return None,
    };
    Some((stream, file))
}

fn file(name: &str) -> Option<File> {
    if name == "index.m3u8" {
        return Some(File::Index);
    }
    let (rendition, rest) = name.split_once('.')?;
    if !valid_rendition(rendition) {
        return None;
    }
    let rendition = rendition.to_owned();
    if rest == "m3u8" {
        return Some(File::Playlist(rendition));
    }
    if let Some(n) = rest
        .strip_prefix("init")
        .and_then(|r| r.strip_suffix(".mp4"))
    {
        return Some(File::Init(rendition, number(n)?));
    }
    let numbers = rest.strip_suffix(".m4s")?;
    match numbers.split_once('.') {
        None => Some(File::Segment(rendition, number(numbers)?)),
        Some((msn, part)) => Some(File::Part(rendition, number(msn)?, number(part)?)),
    }
}

/// A rendition name: what profile names may be, and short.
fn valid_rendition(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A decimal number without sign or leading zeros (one spelling per file).
fn number<T: std::str::FromStr>(text: &str) -> Option<T> {
    let canonical = !text.is_empty()
        && text.len() <= 19
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_user_names_name_streams() {
        assert_eq!(
            parse("abc/index.m3u8"),
            Some((StreamRef::Id("abc".into()), File::Index))
        );
        assert_eq!(
            parse("live/alice/src.12.3.m4s"),
            Some((
                StreamRef::User {
                    app: "live".into(),
                    user: "alice".into()
                },
                File::Part("src".into(), 12, 3)
            ))
        );
        assert_eq!(
            parse("abc/720p30.init0.mp4"),
            Some((StreamRef::Id("abc".into()), File::Init("720p30".into(), 0)))
        );
        assert_eq!(
            parse("abc/src.7.m4s"),
            Some((StreamRef::Id("abc".into()), File::Segment("src".into(), 7)))
        );
        assert_eq!(
            parse("abc/src.m3u8").map(|(_, f)| f),
            Some(File::Playlist("src".into()))
        );
    }

    #[test]
    fn other_shapes_are_refused() {
        for path in [
            "",
            "index.m3u8",
            "a/b/c/index.m3u8",
            "/abc/index.m3u8",
            "abc//index.m3u8",
            "abc/src.07.m4s",
            "abc/src.-1.m4s",
            "abc/src.1.2.3.m4s",
            "abc/src.99999999999999999999.m4s",
            "abc/../index.m3u8.m4s",
            "abc/sr c.m3u8",
            "abc/src.init.mp4",
            "abc/src.txt",
        ] {
            assert_eq!(parse(path), None, "{path}");
        }
    }
}
