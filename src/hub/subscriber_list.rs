//! A stream's subscriber queues, shared copy-on-write so that the publisher writes
//! to them outside the stream's lock.
//!
//! [`Publisher::flush`](super::Publisher::flush) may write each batch straight to
//! the destinations that keep up (chunk encoding, TLS and a `writev` each, see
//! [`DirectSink`](super::DirectSink)). Done under the stream's lock, that work for N
//! destinations would hold up everyone else who needs the lock: the status API,
//! players and destinations joining or leaving. So the flush takes a handle to the
//! list under the lock (one reference count, no allocation) and writes after
//! releasing it. A join or leave that happens meanwhile copies the list (the only
//! allocation, and only then), leaving the flush its own unchanged copy.
//!
//! Order is still guaranteed per subscriber by its queue's own lock: a direct write
//! happens under it, and a task that takes delivery back takes it too, so it never
//! sends later packets before earlier ones.

use std::sync::Arc;

use super::queue::SubscriberQueue;

/// The queues of a stream's subscribers; see the module docs.
#[derive(Debug, Default)]
pub(super) struct SubscriberList {
    queues: Arc<Vec<Arc<SubscriberQueue>>>,
}

impl SubscriberList {
    /// How many subscribers there are.
    pub(super) fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether there is none.
    pub(super) fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// The queues, in the order their subscribers joined.
    pub(super) fn iter(&self) -> std::slice::Iter<'_, Arc<SubscriberQueue>> {
        self.queues.iter()
    }

    /// The list as it is now, to be used after the stream's lock is released.
    pub(super) fn share(&self) -> Arc<Vec<Arc<SubscriberQueue>>> {
        Arc::clone(&self.queues)
    }

    /// Adds a joiner's queue.
    pub(super) fn add(&mut self, queue: Arc<SubscriberQueue>) {
        Arc::make_mut(&mut self.queues).push(queue);
    }

    /// Removes `queue`, if it is there.
    pub(super) fn remove(&mut self, queue: &Arc<SubscriberQueue>) {
        if self.queues.iter().any(|q| Arc::ptr_eq(q, queue)) {
            Arc::make_mut(&mut self.queues).retain(|q| !Arc::ptr_eq(q, queue));
        }
    }

    /// Removes the queues whose subscriber is gone.
    pub(super) fn remove_closed(&mut self) {
        Arc::make_mut(&mut self.queues).retain(|queue| !queue.is_closed());
    }

    /// Closes every queue (the stream ended) and forgets them.
    pub(super) fn close_all(&mut self) {
        for queue in std::mem::take(&mut self.queues).iter() {
            queue.close();
        }
    }
}

/// Who reads a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberKind {
    /// A local player (counted as audience).
    Player,
    /// A relay destination or an encoder.
    Relay,
    /// A recording: joining before the stream's first keyframe (at its publish),
    /// it takes every packet from the first, audio sent ahead of the picture
    /// included, so that the file holds all the publisher sent; joining later,
    /// it starts at a keyframe like anyone.
    Recorder,
}
