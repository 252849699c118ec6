//! Keys an operator disabled for a while: a kicked encoder (OBS reconnects on its
//! own within seconds) must not come straight back. Kept in memory only (a
//! restart forgets them; disabling a user for good is removing their file), at
//! most [`MAX_BANS`] at once, expired ones forgotten as they are met.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

/// Bans held at once; one more replaces the one that ends first.
pub const MAX_BANS: usize = 4096;

/// Keys that may not publish until a given time.
#[derive(Debug, Default)]
pub struct Bans {
    until: Mutex<HashMap<String, Instant>>,
}

impl Bans {
    /// Disables `key` for `period`.
    pub fn ban(&self, key: &str, period: Duration) {
        let mut until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        until.retain(|_, end| *end > now);
        if until.len() >= MAX_BANS
            && !until.contains_key(key)
            && let Some(first) = until
                .iter()
                .min_by_key(|(_, end)| **end)
                .map(|(k, _)| k.clone())
        {
            until.remove(&first);
        }
        until.insert(key.to_owned(), now + period);
    }

    /// Whether `key` is disabled now. Every ban is compared, in constant time,
    /// so the answer's timing does not tell how much of a key matched.
    pub fn is_banned(&self, key: &str) -> bool {
        let until = self.until.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        until.iter().fold(false, |found, (banned, end)| {
            found | (bool::from(banned.as_bytes().ct_eq(key.as_bytes())) && *end > now)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_ends_and_is_bounded() {
        let bans = Bans::default();
        bans.ban("key-one", Duration::from_millis(30));
        assert!(bans.is_banned("key-one"));
        assert!(!bans.is_banned("key-two"));
        std::thread::sleep(Duration::from_millis(40));
        assert!(!bans.is_banned("key-one"));
        for i in 0..MAX_BANS + 10 {
            bans.ban(&format!("k{i}"), Duration::from_secs(60 + i as u64));
        }
        assert!(bans.until.lock().unwrap().len() <= MAX_BANS);
        assert!(
            bans.is_banned(&format!("k{}", MAX_BANS + 9)),
            "the newest is kept"
        );
    }
}
