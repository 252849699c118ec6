//! Masking of stream keys for logs, status and errors.
//!
//! A stream key is a password: whoever has it can broadcast on the streamer's
//! channel. prism never prints one. Operators still need to tell streams apart in
//! logs, so a masked key shows a short fingerprint (a hash, not a prefix) that is
//! stable for the same key and reveals nothing useful about it.

use std::fmt;
use std::hash::{Hash, Hasher};

/// Displays a secret as `****` plus a 4-hex-digit fingerprint.
pub struct Masked<'a>(pub &'a str);

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("****");
        }
        write!(f, "****{:04x}", fingerprint(self.0))
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// 16 bits of a keyed-by-nothing hash: enough to tell a handful of streams apart,
/// far too little to help guess a key.
fn fingerprint(secret: &str) -> u16 {
    // DefaultHasher::new() uses fixed keys, so the fingerprint is stable across runs.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    secret.hash(&mut hasher);
    (hasher.finish() & 0xFFFF) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_keys_hide_the_key_and_stay_stable() {
        let a = Masked("live_123456_abcdef").to_string();
        assert!(a.starts_with("****"));
        assert!(!a.contains("live_"));
        assert!(!a.contains("abcdef"));
        assert_eq!(a, Masked("live_123456_abcdef").to_string());
        assert_ne!(a, Masked("live_123456_abcdeg").to_string());
        assert_eq!(Masked("").to_string(), "****");
    }
}
