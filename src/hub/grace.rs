//! A dropped publisher's grace period, on the hub's side: the stream stays live and
//! keeps its subscribers (relay destinations stay connected) while the encoder is
//! expected back. A publisher of the same name within the period takes the stream
//! over; when the [`Orphan`] guard is dropped first, the stream ends.
//!
//! The grace period has one home per layer: the policy (when a dropped publisher is
//! held, for how long, what ends it) is the server's, in `server/grace.rs`; the
//! relay keeps the stream's destinations for the same period and hands them to the
//! returning publisher (`relay/grace.rs`); this file keeps the stream and its
//! subscribers.

use std::sync::Arc;
use std::time::SystemTime;

use super::directory::Directory;
use super::publisher::Publisher;
use super::stream::Stream;

impl Publisher {
    /// Lets go of the stream without ending it: subscribers stay attached, waiting
    /// for the same name to be published again (the publisher's connection dropped
    /// and the encoder is expected back). The stream ends when the returned guard is
    /// dropped, unless a new publisher took over by then.
    pub fn detach(self) -> Orphan {
        self.flush();
        {
            let mut state = self.stream.lock();
            if state.publisher == Some(self.id) {
                state.publisher = None;
                state.inputs.leave(self.id);
                state.in_grace = true;
                state.dropped_at = Some(SystemTime::now());
                state.reset_media();
            }
        }
        Orphan {
            hub: Arc::clone(&self.hub),
            stream: Arc::clone(&self.stream),
        }
        // `self` drops here and finds no publisher of its own: nothing is closed.
    }
}

/// A stream whose publisher dropped, held open for its grace period.
#[derive(Debug)]
pub struct Orphan {
    hub: Arc<Directory>,
    stream: Arc<Stream>,
}

impl Orphan {
    /// The stream held.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Whether a new publisher took the stream over.
    pub fn taken_over(&self) -> bool {
        self.stream.lock().publisher.is_some()
    }
}

impl Drop for Orphan {
    fn drop(&mut self) {
        {
            let mut state = self.stream.lock();
            if state.publisher.is_some() || !state.in_grace {
                return;
            }
            state.end();
        }
        self.hub.release_live();
        self.hub.remove_if_idle(&self.stream);
    }
}
