//! Strings on the wire, both AMF versions: decoded lossily, encoded clamped to what a length
//! prefix can say.

/// UTF-8 with invalid sequences replaced by U+FFFD: some peers send Latin-1 in names and
/// descriptions, and refusing a whole connect over one accented letter helps nobody.
pub(crate) fn lossy_utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn clamp_utf8(s: &str, max: usize) -> &str {
    s.get(..s.floor_char_boundary(max)).unwrap_or_default()
}
