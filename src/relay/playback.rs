//! Which stream a player means: players name a stream by its public name (its
//! user's name, or its stream id), never by the key that publishes it, unless the
//! operator allows that (`rtmp.play_by_key`). A preview link must not be the key
//! that lets anyone broadcast.

use super::Relay;

/// What a player's stream name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playback {
    /// A live stream, published with this key.
    Live {
        /// The key it is published with (the hub's name for it).
        key: String,
    },
    /// A configured user who is not live: the player may wait for them.
    AwaitUser,
    /// The user publishes more than one stream: name one by its id.
    Ambiguous,
    /// Nothing by that name.
    Unknown,
}

impl Relay {
    /// What `name` in `app` stands for to a player: the live stream of the user
    /// called `name`, else the live stream whose id is `name`, else a user who is
    /// not live yet.
    pub fn playback(&self, app: &str, name: &str) -> Playback {
        let mut by_user = self
            .streams
            .iter()
            .filter(|e| e.key().0 == app && e.value().user() == Some(name))
            .map(|e| e.key().1.clone());
        if let Some(key) = by_user.next() {
            return match by_user.next() {
                None => Playback::Live { key },
                Some(_) => Playback::Ambiguous,
            };
        }
        if let Some(entry) = self
            .streams
            .iter()
            .find(|e| e.key().0 == app && e.value().id().as_str() == name)
        {
            return Playback::Live {
                key: entry.key().1.clone(),
            };
        }
        if self.tables().users.named(name).is_some() {
            return Playback::AwaitUser;
        }
        Playback::Unknown
    }
}
