//! A subscriber's bounded queue, and the slow-subscriber policy.
//!
//! The publisher pushes without ever waiting. When a subscriber falls behind and its
//! queue is full, that subscriber alone drops frames up to the next keyframe (a
//! decoder cannot use frames whose references were dropped), counts them, and
//! resumes at the keyframe, after the current sequence headers if they changed
//! while it was dropping.
//!
//! Delivery is per batch: [`SubscriberQueue::push`] only queues, and
//! [`SubscriberQueue::flush`] (once per batch the publisher read) either wakes the
//! subscriber's task or, when the subscriber has handed the queue a [`DirectSink`]
//! because it was keeping up, writes the batch straight to it from the publisher's
//! task. A relay destination that keeps up thus costs no task wake-up per packet; one
//! that cannot take the batch at once is handed back to its task, which waits for
//! its socket (with its stall timeout) and takes the following packets from the
//! queue, under the same drop policy, until it has caught up again.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::gop::{RECENT_AUDIO_MAX, belongs_after, is_audio_frame};
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

/// A subscriber that can take packets from the publisher's task without waiting.
///
/// Installed with [`SubscriberQueue::arm`] by a subscriber whose connection is idle
/// (nothing queued, nothing unsent), so its packets need not wake its task.
pub trait DirectSink: Send + Sync + std::fmt::Debug {
    /// Takes every packet out of `packets` and sends them now, without waiting.
    /// Returns false when the connection could not take everything at once (the
    /// sink keeps what is unsent): the queue then hands delivery back to the
    /// subscriber's task.
    fn send_now(&self, packets: &mut VecDeque<Packet>) -> bool;
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
    /// Audio frames seen while waiting for the first keyframe: those stamped from
    /// the keyframe on follow it (an encoder may send audio ahead of its video; see
    /// [`super::gop`]).
    early_audio: VecDeque<Packet>,
    closed: bool,
    /// The stream's config generation this subscriber has been sent.
    config_generation: u64,
    /// Where [`SubscriberQueue::flush`] writes while the subscriber keeps up.
    direct: Option<Arc<dyn DirectSink>>,
    /// A direct write could not finish: the task must wake up and finish it even
    /// though nothing is queued.
    handed_back: bool,
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
                early_audio: VecDeque::new(),
                closed: false,
                config_generation,
                direct: None,
                handed_back: false,
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

    /// Offers a live packet; [`flush`](Self::flush) delivers it. `config` yields the stream's current metadata and
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
                if inner.started && !packet.is_config() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                if !inner.started && is_audio_frame(packet) {
                    if inner.early_audio.len() == RECENT_AUDIO_MAX {
                        inner.early_audio.pop_front();
                    }
                    inner.early_audio.push_back(packet.clone());
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
            if !packet.is_config() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            self.episodes.fetch_add(1, Ordering::Relaxed);
            // A config packet dropped here already bumped the stream's generation, so
            // the resume below resends it.
            return PushOutcome::StartedDropping;
        }
        if packet.is_config() {
            let (generation, _) = config();
            inner.config_generation = generation;
        }
        inner.bytes += packet.len();
        inner.packets.push_back(packet.clone());
        if !inner.early_audio.is_empty() {
            let early = std::mem::take(&mut inner.early_audio);
            if packet.kind == PacketKind::Video && packet.keyframe {
                for audio in early.iter().filter(|audio| belongs_after(audio, packet)) {
                    inner.bytes += audio.len();
                    inner.packets.push_back(audio.clone());
                }
            }
        }
        PushOutcome::Queued
    }

    /// Delivers what was pushed since the last flush: straight to the direct sink
    /// while there is one, else by waking the subscriber's task.
    ///
    /// The write happens under the queue's lock, so a task that takes delivery
    /// back ([`recv_batch`](Self::recv_batch), [`disarm`](Self::disarm)) can never
    /// send later packets before these.
    pub fn flush(&self) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.packets.is_empty() {
            return;
        }
        if let Some(sink) = &inner.direct {
            inner.bytes = 0;
            if sink.send_now(&mut inner.packets) {
                return;
            }
            inner.direct = None;
            inner.handed_back = true;
            tracing::debug!("direct write incomplete: handed back to the subscriber's task");
        }
        drop(guard);
        self.notify.notify_one();
    }

    /// Lets [`flush`](Self::flush) write to `sink` from now on, if nothing is
    /// queued; false otherwise (the caller takes the queued packets first).
    /// The caller must have nothing unsent of its own.
    pub fn arm(&self, sink: Arc<dyn DirectSink>) -> bool {
        let mut inner = self.lock();
        if !inner.packets.is_empty() || inner.closed || inner.handed_back {
            return false;
        }
        inner.direct = Some(sink);
        true
    }

    /// Takes delivery back from the direct sink. Once this returns, no direct
    /// write is under way or will start.
    pub fn disarm(&self) {
        self.lock().direct = None;
    }

    fn has_room(&self, inner: &Inner, packet: &Packet) -> bool {
        inner.packets.len() < self.limits.max_packets
            && inner.bytes + packet.len() <= self.limits.max_bytes
    }

    /// Moves every queued packet into `out`, taking delivery back from a direct
    /// sink. Returns false once the queue is closed and drained (the stream ended).
    /// Returns true with nothing in `out` when a direct write was handed back: the
    /// caller finishes sending what its sink kept.
    pub async fn recv_batch(&self, out: &mut Vec<Packet>) -> bool {
        loop {
            {
                let mut inner = self.lock();
                if !inner.packets.is_empty() {
                    inner.direct = None;
                    out.extend(inner.packets.drain(..));
                    inner.bytes = 0;
                    return true;
                }
                if inner.handed_back {
                    inner.handed_back = false;
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
        {
            let mut inner = self.lock();
            inner.closed = true;
            inner.direct = None;
        }
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

#[cfg(test)]
mod tests;
