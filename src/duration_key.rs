//! Duration settings written as people write them.
//!
//! Every duration key of the configuration keeps its unit in its name
//! (`idle_timeout_secs = 30`, `timeout_ms = 3000`), and a number there is in that
//! unit, as always. Each also takes a humantime duration (`"30s"`, `"1m 30s"`,
//! `"500ms"`), so an operator need not convert. (Under the same key only: the
//! embedded defaults set every key, and a second spelling of it in a file would be
//! a duplicate rather than an override.) A duration that is not a whole number of
//! the key's unit is refused rather than rounded: `"1500ms"` for a seconds key is a
//! mistake to point out, not a value to guess.

use std::fmt;
use std::time::Duration;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// Deserializes a duration in whole seconds: an integer, or a humantime string.
pub fn secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(Whole(Unit::Secs))
}

/// Deserializes a duration in whole milliseconds: an integer, or a humantime string.
pub fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(Whole(Unit::Millis))
}

#[derive(Debug, Clone, Copy)]
enum Unit {
    Secs,
    Millis,
}

impl Unit {
    fn of(self, duration: Duration) -> Option<u64> {
        match self {
            Unit::Secs => (duration.subsec_nanos() == 0).then_some(duration.as_secs()),
            Unit::Millis => duration
                .subsec_nanos()
                .is_multiple_of(1_000_000)
                .then(|| u64::try_from(duration.as_millis()).ok())
                .flatten(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Secs => "seconds",
            Unit::Millis => "milliseconds",
        }
    }
}

/// Parses `text` as a count of `unit` (digits alone, as environment variables give
/// numbers) or as a humantime duration.
fn parse(text: &str, unit: Unit) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|e| format!("{e}"));
    }
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is neither a number nor a duration such as \"30s\": {e}"))?;
    unit.of(duration)
        .ok_or_else(|| format!("`{text}` is not a whole number of {}", unit.name()))
}

struct Whole(Unit);

impl<'de> Visitor<'de> for Whole {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a whole number of {} or a duration such as \"30s\"",
            self.0.name()
        )
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value).map_err(|_| E::custom(format!("{value} is negative")))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<u64, E> {
        parse(value, self.0).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_durations_in_the_keys_unit() {
        assert_eq!(parse("30", Unit::Secs), Ok(30));
        assert_eq!(parse("30s", Unit::Secs), Ok(30));
        assert_eq!(parse("1m 30s", Unit::Secs), Ok(90));
        assert_eq!(parse("2h", Unit::Secs), Ok(7200));
        assert_eq!(parse("1500ms", Unit::Millis), Ok(1500));
        assert_eq!(parse("3s", Unit::Millis), Ok(3000));
        assert!(
            parse("1500ms", Unit::Secs)
                .unwrap_err()
                .contains("whole number")
        );
        assert!(parse("soon", Unit::Secs).unwrap_err().contains("neither"));
        assert!(parse("", Unit::Secs).is_err());
    }
}
