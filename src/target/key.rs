//! What a destination's stream key may contain: one check for every way a key
//! enters prism (the publish URL's query string, user files, the authorization
//! callback's answer, the API, a custom URL's stream name).
//!
//! The key becomes the RTMP stream name the ingest sees, and ingests use it in
//! log lines and file names (nginx-rtmp records to `<name>-<time>.flv`). A key
//! from a publish URL is written by whoever publishes, so a newline, a NUL, a
//! `../` or a 3000-byte name must not go out: keys are held to what real ones
//! look like, printable ASCII without whitespace or path separators, bounded.
//! `?`, `&` and `=` stay allowed because Facebook's keys carry `?s_bl=1&...`.
//!
//! Parameters passed through onto a destination's stream name
//! (`facebook_s_bl=1` → `KEY?s_bl=1`) meet the same rules: their names are
//! short identifiers and their values are checked like keys (an empty value is
//! allowed: `?x=` is harmless).
//!
//! A refusal says what is wrong (the length, a class of character) and never
//! quotes the key, so it can go to logs and the status API.

/// The longest key accepted, in bytes. Real keys are well under 200 (YouTube
/// 24, Twitch about 45, Facebook with its parameters about 130).
pub const MAX_KEY_LEN: usize = 512;

/// The longest name of a parameter passed through onto a stream name.
pub const MAX_PARAM_NAME_LEN: usize = 32;

/// The most parameters passed through onto one destination's stream name
/// (platforms use one or two), so that the name stays bounded.
pub const MAX_PASSTHROUGH_PARAMS: usize = 8;

/// What is wrong with a key or a parameter value. Names a class, never the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextProblem {
    /// Nothing there.
    #[error("is empty")]
    Empty,
    /// Over [`MAX_KEY_LEN`].
    #[error("is {len} bytes long, over the limit of {MAX_KEY_LEN}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A newline, NUL, tab, DEL or another ASCII control character.
    #[error("contains a control character (such as a newline or NUL)")]
    Control,
    /// A space.
    #[error("contains a space")]
    Space,
    /// Anything outside ASCII.
    #[error("contains a character outside printable ASCII")]
    NonAscii,
    /// `/` or `\`, which make a file name a path.
    #[error("contains a path separator ('/' or '\\')")]
    PathSeparator,
}

/// Why a destination's key or passed-through parameters are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key itself.
    #[error("the key {0}")]
    Key(TextProblem),
    /// A parameter name that is not a short identifier (not quoted: it may be
    /// anything a publisher typed).
    #[error(
        "a parameter name passed through is not 1 to {MAX_PARAM_NAME_LEN} \
         letters, digits, '_' or '-'"
    )]
    ParamName,
    /// A parameter's value.
    #[error("the value of parameter `{name}` {problem}")]
    ParamValue {
        /// The parameter (a valid name, safe to show).
        name: String,
        /// What is wrong with the value.
        problem: TextProblem,
    },
    /// More than [`MAX_PASSTHROUGH_PARAMS`] parameters.
    #[error("more than {MAX_PASSTHROUGH_PARAMS} parameters are passed through")]
    TooManyParams,
}

/// Checks a destination's stream key.
pub fn check_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Key(TextProblem::Empty));
    }
    check_text(key).map_err(KeyError::Key)
}

/// Checks the parameters passed through onto a destination's stream name.
pub fn check_passthrough(params: &[(String, String)]) -> Result<(), KeyError> {
    if params.len() > MAX_PASSTHROUGH_PARAMS {
        return Err(KeyError::TooManyParams);
    }
    for (name, value) in params {
        if !valid_param_name(name) {
            return Err(KeyError::ParamName);
        }
        check_text(value).map_err(|problem| KeyError::ParamValue {
            name: name.clone(),
            problem,
        })?;
    }
    Ok(())
}

/// Checks a stream name as a whole (a custom URL's last path segment with its
/// query): the key rules, as it holds a key.
pub fn check_stream_name(name: &str) -> Result<(), TextProblem> {
    if name.is_empty() {
        return Err(TextProblem::Empty);
    }
    check_text(name)
}

/// The character and length rules, for text that may be empty.
fn check_text(text: &str) -> Result<(), TextProblem> {
    if text.len() > MAX_KEY_LEN {
        return Err(TextProblem::TooLong { len: text.len() });
    }
    match text
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '/' | '\\'))
    {
        None => Ok(()),
        Some(c) if c.is_ascii_control() => Err(TextProblem::Control),
        Some(' ') => Err(TextProblem::Space),
        Some('/' | '\\') => Err(TextProblem::PathSeparator),
        Some(_) => Err(TextProblem::NonAscii),
    }
}

fn valid_param_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PARAM_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_keys_pass() {
        for key in [
            "abcd-efgh-ijkl-mnop-qrst",
            "live_123456789_AbCdEfGhIjKlMnOpQrStUvWxYz0123",
            "FB-1234567890123456-0-AbCdEfGhIjKl?s_bl=1&s_psm=1&s_sc=12345&s_sw=0&s_vt=api-s&a=AbCd",
            "sk_us-west-2_AbCd1234.efgh",
            "~!@#$%^&*()_+-=[]{}|;:'\",.<>?`",
            &"k".repeat(MAX_KEY_LEN),
        ] {
            assert_eq!(check_key(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn hostile_keys_are_refused_by_class() {
        let long = "a".repeat(3000);
        let cases: [(&str, TextProblem); 12] = [
            ("", TextProblem::Empty),
            (&long, TextProblem::TooLong { len: 3000 }),
            ("key\nx", TextProblem::Control),
            ("key\r\n", TextProblem::Control),
            ("key\0x", TextProblem::Control),
            ("key\tx", TextProblem::Control),
            ("key\u{7f}", TextProblem::Control),
            ("my key", TextProblem::Space),
            ("../../etc/passwd", TextProblem::PathSeparator),
            ("..\\..\\x", TextProblem::PathSeparator),
            ("kéy", TextProblem::NonAscii),
            ("key\u{85}x", TextProblem::NonAscii),
        ];
        for (key, problem) in cases {
            assert_eq!(check_key(key), Err(KeyError::Key(problem)), "{key:?}");
        }
        assert_eq!(
            check_key(&"k".repeat(MAX_KEY_LEN + 1)),
            Err(KeyError::Key(TextProblem::TooLong {
                len: MAX_KEY_LEN + 1
            }))
        );
    }

    #[test]
    fn reasons_never_quote_the_key() {
        let secret = "s3cr3t-k3y";
        for key in [
            format!("{secret}\n"),
            format!("{secret}\0"),
            format!("../{secret}"),
            format!("{secret} "),
            secret.repeat(300),
        ] {
            let reason = check_key(&key).unwrap_err().to_string();
            assert!(reason.starts_with("the key "), "{reason}");
            assert!(!reason.contains(secret), "{reason}");
        }
        let reason = check_passthrough(&[("s_bl".into(), format!("{secret}\n"))])
            .unwrap_err()
            .to_string();
        assert_eq!(
            reason,
            "the value of parameter `s_bl` contains a control character (such as a newline or NUL)"
        );
        let reason = check_key(&"k".repeat(3000)).unwrap_err().to_string();
        assert_eq!(reason, "the key is 3000 bytes long, over the limit of 512");
    }

    #[test]
    fn passed_through_parameters_are_checked_like_keys() {
        let pair = |n: &str, v: &str| (n.to_owned(), v.to_owned());
        assert_eq!(check_passthrough(&[]), Ok(()));
        assert_eq!(
            check_passthrough(&[pair("s_bl", "1"), pair("backup-2", ""), pair("A9", "x?y")]),
            Ok(())
        );
        for name in ["", "a/b", "a b", "a\nb", "a=b", "é", &"n".repeat(33)] {
            assert_eq!(
                check_passthrough(&[pair(name, "1")]),
                Err(KeyError::ParamName),
                "{name:?}"
            );
        }
        for (value, problem) in [
            ("a\nb", TextProblem::Control),
            ("../x", TextProblem::PathSeparator),
            ("a b", TextProblem::Space),
        ] {
            assert_eq!(
                check_passthrough(&[pair("x", value)]),
                Err(KeyError::ParamValue {
                    name: "x".into(),
                    problem
                })
            );
        }
        let many: Vec<_> = (0..=MAX_PASSTHROUGH_PARAMS)
            .map(|i| pair(&format!("p{i}"), "1"))
            .collect();
        assert_eq!(check_passthrough(&many), Err(KeyError::TooManyParams));
        assert_eq!(
            check_passthrough(&many[..MAX_PASSTHROUGH_PARAMS]),
            Ok(()),
            "the limit itself is allowed"
        );
    }

    #[test]
    fn a_whole_stream_name_follows_the_key_rules() {
        assert_eq!(check_stream_name("key?x=1"), Ok(()));
        assert_eq!(check_stream_name(""), Err(TextProblem::Empty));
        assert_eq!(check_stream_name("a%0Ab"), Ok(()), "already escaped");
        assert_eq!(check_stream_name("a\\b"), Err(TextProblem::PathSeparator));
    }
}
