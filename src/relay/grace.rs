//! A dropped publisher's grace period, on the relay's side: the stream's
//! destinations stay connected while the encoder is expected back, and a publisher
//! of the same name that returns in time adopts them instead of starting new ones.
//!
//! Ownership passes by generation: each [`RelayHandle`] carries the generation it
//! was issued for, and adopting the stream bumps it, so the dropped publisher's
//! handle no longer owns the stream and ends nothing when it is dropped. The state
//! (`Ownership`) is a field of the stream's relay, in `stream.rs`, whose handle
//! asks it when dropped; its transitions are here.
//!
//! The grace period has one home per layer: the policy (when a dropped publisher is
//! held, for how long, what ends it) is the server's, in `server/grace.rs`; the hub
//! keeps the stream and its subscribers (`hub/grace.rs`, `Publisher::detach` and
//! `Orphan`); this file keeps the destinations.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio_util::sync::CancellationToken;

use crate::stream_name::StreamName;

use super::Relay;
use super::stream::{Ownership, RelayHandle};

/// The transitions of a stream's [`Ownership`], for its publishers' handles.
impl Ownership {
    /// The handle of `generation` lets go of the stream without ending it, if it
    /// still owns it.
    fn orphan(&self, generation: u64) {
        if self.generation.load(Ordering::Acquire) == generation {
            self.orphaned.store(true, Ordering::Release);
        }
    }

    /// A publisher of the same name came back: the generation its handle owns, or
    /// `None` if the stream was not waiting for one.
    fn adopt(&self) -> Option<u64> {
        if !self.orphaned.swap(false, Ordering::AcqRel) {
            return None;
        }
        Some(self.generation.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// The handle of `generation` is dropped: whether it still owns the stream (and
    /// so must end it). A handle that was adopted away ends nothing.
    pub(super) fn release(&self, generation: u64) -> bool {
        if self.generation.load(Ordering::Acquire) != generation {
            return false;
        }
        self.orphaned.store(false, Ordering::Release);
        true
    }
}

impl RelayHandle {
    /// The publisher dropped: keep the destinations for a returning publisher to
    /// adopt. Dropping the handle afterwards ends them unless one did.
    pub fn orphan(&self) {
        self.stream.ownership.orphan(self.generation);
    }
}

impl Relay {
    /// The publisher of `key` came back within its grace period: a handle on the
    /// stream's relay, whose destinations stayed connected and carry on with the new
    /// connection's packets. `None` when no stream of that name waits for its
    /// publisher (then [`Relay::start`] starts the destinations afresh).
    pub(super) fn resume(
        self: &Arc<Self>,
        name: &StreamName,
        key: &(String, String),
        kick: &CancellationToken,
    ) -> Option<RelayHandle> {
        let stream = self.streams.get(key).map(|e| Arc::clone(e.value()))?;
        let generation = stream.ownership.adopt()?;
        tracing::info!(stream = %name.masked(), "publisher back within its grace period; destinations continue");
        if !same_parameters(&name.query, &stream.name.query) {
            // A streamer who fixes a typo in the publish URL and reconnects quickly
            // lands here: say that the fix waits for the next publish.
            tracing::warn!(
                stream = %name.masked(),
                "{}",
                super::warnings::OTHER_QUERY_IGNORED
            );
            stream.other_query_ignored.store(true, Ordering::Release);
        }
        *stream.kick.lock().unwrap_or_else(|p| p.into_inner()) = kick.clone();
        Some(RelayHandle {
            relay: Arc::clone(self),
            key: key.clone(),
            stream,
            generation,
        })
    }
}

/// Whether two publish queries name the same parameters with the same values, in
/// whatever order (an encoder may rebuild its URL in another order on reconnect).
fn same_parameters(a: &str, b: &str) -> bool {
    fn sorted(query: &str) -> Vec<(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)> {
        let mut pairs: Vec<_> = url::form_urlencoded::parse(query.as_bytes()).collect();
        pairs.sort();
        pairs
    }
    a == b || sorted(a) == sorted(b)
}

#[cfg(test)]
mod tests {
    use super::{Ownership, same_parameters};

    #[test]
    fn queries_with_the_same_parameters_in_another_order_are_the_same() {
        assert!(same_parameters("twitch=a&youtube=b", "youtube=b&twitch=a"));
        assert!(same_parameters("", ""));
        assert!(!same_parameters("twitch=a", "twitch=b"));
        assert!(!same_parameters("twitch=a", "twitch=a&kick=c"));
    }

    #[test]
    fn an_adopted_stream_is_not_ended_by_the_old_handle() {
        let ownership = Ownership::default();
        ownership.orphan(0);
        let adopted = ownership
            .adopt()
            .expect("orphaned: a returning publisher adopts it");
        assert_eq!(adopted, 1);
        assert!(
            !ownership.release(0),
            "the dropped publisher's handle ends nothing"
        );
        assert!(ownership.release(adopted), "the new handle owns the stream");
    }

    #[test]
    fn only_an_orphaned_stream_can_be_adopted() {
        let ownership = Ownership::default();
        assert_eq!(ownership.adopt(), None, "its publisher is still there");
        ownership.orphan(0);
        assert!(ownership.release(0), "the grace period ran out");
        assert_eq!(ownership.adopt(), None, "ended: nothing to adopt");
    }

    #[test]
    fn a_stale_handle_cannot_orphan_the_stream() {
        let ownership = Ownership::default();
        ownership.orphan(0);
        let adopted = ownership.adopt().unwrap();
        ownership.orphan(0);
        assert_eq!(ownership.adopt(), None, "generation 0 no longer owns it");
        assert!(ownership.release(adopted));
    }
}
