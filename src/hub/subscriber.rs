//! The receiving side of a stream: a player, a relay destination or an encoder,
//! each reading its own queue.

use std::sync::Arc;

use super::directory::Directory;
use super::packet::Packet;
use super::queue::SubscriberQueue;
use super::stream::Stream;
pub use super::subscriber_list::SubscriberKind;

/// The receiving side: a player or a relay destination.
#[derive(Debug)]
pub struct Subscriber {
    hub: Arc<Directory>,
    stream: Arc<Stream>,
    queue: Arc<SubscriberQueue>,
    kind: SubscriberKind,
}

impl Subscriber {
    pub(super) fn new(
        hub: Arc<Directory>,
        stream: Arc<Stream>,
        queue: Arc<SubscriberQueue>,
        kind: SubscriberKind,
    ) -> Self {
        Self {
            hub,
            stream,
            queue,
            kind,
        }
    }

    /// Waits for packets and moves them all into `out`; false when the stream ended.
    pub async fn recv_batch(&self, out: &mut Vec<Packet>) -> bool {
        self.queue.recv_batch(out).await
    }

    /// Frames this subscriber dropped for being slow.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped()
    }

    /// Its queue, for reading counters without the subscriber (status).
    pub fn queue(&self) -> Arc<SubscriberQueue> {
        Arc::clone(&self.queue)
    }

    /// The stream subscribed to.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.queue.close();
        {
            let mut state = self.stream.lock();
            state.subscribers.remove(&self.queue);
            if self.kind == SubscriberKind::Player {
                state.players = state.players.saturating_sub(1);
            }
        }
        self.hub.remove_if_idle(&self.stream);
    }
}
