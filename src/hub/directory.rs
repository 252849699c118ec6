//! The table of streams by (app, name) and the count of live ones: what the
//! [`Hub`](super::Hub) admits into, and what a publisher, a subscriber or a grace
//! period gives back to when it ends. Apart from the registry so that those ends
//! need only this table, not the hub that created them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::DashMap;

use super::stream::Stream;

/// (app, bare name): what identifies a stream in the hub. Not a "stream key": that
/// name is kept for the secret a publisher sends (the bare name may be one, and is
/// masked wherever it is shown); nor a "stream path", which the HTTP API uses for
/// the way its URLs name a stream.
pub(super) type AppAndName = (String, String);

/// The streams and how many of them are live.
#[derive(Debug, Default)]
pub(super) struct Directory {
    pub(super) streams: DashMap<AppAndName, Arc<Stream>>,
    /// Streams that are live: a publisher, or a dropped one's grace period. Taken
    /// with a compare-and-swap before a stream goes live, given back when it ends.
    pub(super) live: AtomicUsize,
}

impl Directory {
    pub(super) fn app_and_name(app: &str, name: &str) -> AppAndName {
        (app.to_owned(), name.to_owned())
    }

    /// Gives back the live slot of a stream that ended.
    pub(super) fn release_live(&self) {
        let _ = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                Some(live.saturating_sub(1))
            });
    }

    /// Removes `stream`'s entry once nothing holds it: no publisher, no grace
    /// period, no subscriber.
    pub(super) fn remove_if_idle(&self, stream: &Arc<Stream>) {
        let key = Self::app_and_name(&stream.app, &stream.name);
        self.streams.remove_if(&key, |_, current| {
            Arc::ptr_eq(current, stream) && {
                let state = current.lock();
                state.publisher.is_none() && !state.in_grace && state.subscribers.is_empty()
            }
        });
    }
}
