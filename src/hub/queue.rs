//! A subscriber's bounded queue, and the slow-subscriber policy.
//!
//! The publisher pushes without ever waiting. When a subscriber falls behind and its
//! queue is full, that subscriber alone drops frames up to the next keyframe (a
//! decoder cannot use frames whose references were dropped), counts them, and
//! resumes at the keyframe, after the current sequence headers if they changed
//! while it was dropping.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

use super::packet::{Packet, PacketKind};

/// Bounds of one subscriber's queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Payload bytes queued at most (payloads are shared, so this bounds how much
    /// old media one lagging subscriber keeps alive, not a copy).
    pub max_bytes: usize,
    /// Packets queued at most (bounds the queue's own memory on tiny packets).
    pub max_packets: usize,
}

/// What a push did, so the publisher side can log once per drop episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued.
    Queued,
    /// Dropped; this push started a drop episode.
    StartedDropping,
    /// Dropped within an episode.
    Dropped,
    /// The subscriber is gone.
    Closed,
}

#[derive(Debug)]
struct Inner {
    packets: VecDeque<Packet>,
    bytes: usize,
    dropping: bool,
    /// False until the first keyframe was queued: what a joiner skips while it
    /// waits for its first keyframe is not a drop (it never had those frames).
    started: bool,
    closed: bool,
    /// The stream's config generation this subscriber has been sent.
    config_generation: u64,
}

/// The queue between the hub and one subscriber task.
#[derive(Debug)]
pub struct SubscriberQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    limits: QueueLimits,
    dropped: AtomicU64,
    episodes: AtomicU64,
}

impl SubscriberQueue {
    /// An empty queue; `waiting_for_keyframe` makes the first media a keyframe.
    pub fn new(limits: QueueLimits, waiting_for_keyframe: bool, config_generation: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                packets: VecDeque::with_capacity(64),
                bytes: 0,
                dropping: waiting_for_keyframe,
                started: !waiting_for_keyframe,
                closed: false,
                config_generation,
            }),
            notify: Notify::new(),
            limits,
            dropped: AtomicU64::new(0),
            episodes: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent in a way
        // that matters more than losing the stream; keep going rather than cascade.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues packets unconditionally: the catch-up burst on join (sequence headers
    /// and the GOP cache, which are bounded by their own limits).
    pub fn push_initial<'a>(&self, packets: impl IntoIterator<Item = &'a Packet>) {
        let mut inner = self.lock();
        for packet in packets {
            inner.bytes += packet.len();
            inner.packets.push_back(packet.clone());
        }
        drop(inner);
        self.notify.notify_one();
    }

    /// Offers a live packet. `config` yields the stream's current metadata and
    /// sequence headers and their generation, used when resuming after drops.
    pub fn push<'a, C>(&self, packet: &Packet, config: C) -> PushOutcome
    where
        C: Fn() -> (u64, [Option<&'a Packet>; 3]),
    {
        let mut inner = self.lock();
        if inner.closed {
            return PushOutcome::Closed;
        }
        if inner.dropping {
            if !packet.keyframe || !self.has_room(&inner, packet) {
                if inner.started && !is_config(packet) {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                return PushOutcome::Dropped;
            }
            inner.dropping = false;
            inner.started = true;
            let (generation, current) = config();
            if generation != inner.config_generation {
                inner.config_generation = generation;
                for config_packet in current.into_iter().flatten() {
                    inner.bytes += config_packet.len();
                    inner.packets.push_back(config_packet.clone());
                }
            }
        } else if !self.has_room(&inner, packet) {
            inner.dropping = true;
            if !is_config(packet) {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            self.episodes.fetch_add(1, Ordering::Relaxed);
            // A config packet dropped here already bumped the stream's generation, so
            // the resume below resends it.
            return PushOutcome::StartedDropping;
        }
        if is_config(packet) {
            let (generation, _) = config();
            inner.config_generation = generation;
        }
        inner.bytes += packet.len();
        inner.packets.push_back(packet.clone());
        drop(inner);
        self.notify.notify_one();
        PushOutcome::Queued
    }

    fn has_room(&self, inner: &Inner, packet: &Packet) -> bool {
        inner.packets.len() < self.limits.max_packets
            && inner.bytes + packet.len() <= self.limits.max_bytes
    }

    /// Moves every queued packet into `out`. Returns false once the queue is closed
    /// and drained (the stream ended).
    pub async fn recv_batch(&self, out: &mut Vec<Packet>) -> bool {
        loop {
            {
                let mut inner = self.lock();
                if !inner.packets.is_empty() {
                    out.extend(inner.packets.drain(..));
                    inner.bytes = 0;
                    return true;
                }
                if inner.closed {
                    return false;
                }
            }
            self.notify.notified().await;
        }
    }

    /// Ends the queue: the subscriber drains what is left, then sees the end.
    pub fn close(&self) {
        self.lock().closed = true;
        self.notify.notify_one();
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Frames dropped because this subscriber was too slow.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Number of drop episodes so far.
    pub fn drop_episodes(&self) -> u64 {
        self.episodes.load(Ordering::Relaxed)
    }
}

fn is_config(packet: &Packet) -> bool {
    packet.config || packet.kind == PacketKind::Metadata
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(ts: u32, keyframe: bool) -> Packet {
        Packet {
            kind: PacketKind::Video,
            timestamp: ts,
            payload: Bytes::from_static(&[0; 100]),
            keyframe,
            config: false,
        }
    }

    fn sh() -> Packet {
        Packet {
            kind: PacketKind::Video,
            timestamp: 0,
            payload: Bytes::from_static(&[0x17, 0]),
            keyframe: false,
            config: true,
        }
    }

    fn no_config() -> (u64, [Option<&'static Packet>; 3]) {
        (0, [None, None, None])
    }

    async fn drain(q: &SubscriberQueue) -> Vec<u32> {
        let mut out = Vec::new();
        q.recv_batch(&mut out).await;
        out.iter().map(|p| p.timestamp).collect()
    }

    #[tokio::test]
    async fn overflow_drops_until_the_next_keyframe_and_counts() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_bytes: 300,
                max_packets: 100,
            },
            false,
            0,
        );
        assert_eq!(q.push(&video(0, true), no_config), PushOutcome::Queued);
        assert_eq!(q.push(&video(1, false), no_config), PushOutcome::Queued);
        assert_eq!(q.push(&video(2, false), no_config), PushOutcome::Queued);
        assert_eq!(
            q.push(&video(3, false), no_config),
            PushOutcome::StartedDropping
        );
        assert_eq!(drain(&q).await, vec![0, 1, 2]);
        // Room again, but still dropping until a keyframe.
        assert_eq!(q.push(&video(4, false), no_config), PushOutcome::Dropped);
        assert_eq!(q.push(&video(5, true), no_config), PushOutcome::Queued);
        assert_eq!(q.push(&video(6, false), no_config), PushOutcome::Queued);
        assert_eq!(drain(&q).await, vec![5, 6]);
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.drop_episodes(), 1);
    }

    #[tokio::test]
    async fn resuming_resends_sequence_headers_that_changed() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_bytes: 150,
                max_packets: 100,
            },
            false,
            1,
        );
        let header = sh();
        q.push(&video(0, true), no_config);
        q.push(&video(1, false), no_config); // overflow
        drain(&q).await;
        let mut out = Vec::new();
        assert_eq!(
            q.push(&video(2, true), || (2, [Some(&header), None, None])),
            PushOutcome::Queued
        );
        q.recv_batch(&mut out).await;
        assert!(out[0].config, "sequence header first");
        assert!(out[1].keyframe);
    }

    #[tokio::test]
    async fn a_waiting_joiners_skipped_frames_are_not_drops() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_bytes: 150,
                max_packets: 100,
            },
            true,
            0,
        );
        q.push(&video(0, false), no_config);
        q.push(&video(1, true), no_config);
        assert_eq!(q.dropped(), 0, "nothing was lost before the first keyframe");
        q.push(&video(2, false), no_config); // overflow: a real drop
        assert_eq!(q.dropped(), 1);
    }

    #[tokio::test]
    async fn a_waiting_joiner_starts_on_a_keyframe() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_bytes: 1 << 20,
                max_packets: 100,
            },
            true,
            0,
        );
        assert_eq!(q.push(&video(0, false), no_config), PushOutcome::Dropped);
        assert_eq!(q.push(&video(1, true), no_config), PushOutcome::Queued);
        assert_eq!(drain(&q).await, vec![1]);
    }

    #[tokio::test]
    async fn close_drains_then_ends() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_bytes: 1 << 20,
                max_packets: 100,
            },
            false,
            0,
        );
        q.push(&video(0, true), no_config);
        q.close();
        assert_eq!(q.push(&video(1, false), no_config), PushOutcome::Closed);
        let mut out = Vec::new();
        assert!(q.recv_batch(&mut out).await);
        out.clear();
        assert!(!q.recv_batch(&mut out).await);
    }

    #[tokio::test]
    async fn packet_count_bounds_the_queue() {
        let q = SubscriberQueue::new(
            QueueLimits {
                max_bytes: 1 << 20,
                max_packets: 2,
            },
            false,
            0,
        );
        q.push(&video(0, true), no_config);
        q.push(&video(1, false), no_config);
        assert_eq!(
            q.push(&video(2, false), no_config),
            PushOutcome::StartedDropping
        );
    }
}
