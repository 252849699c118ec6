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
                if inner.started && !is_config(packet) {
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
    async fn a_joiner_keeps_audio_sent_ahead_of_its_first_keyframe() {
        let q = unbounded(true);
        let audio = |ts| Packet {
            kind: PacketKind::Audio,
            timestamp: ts,
            payload: Bytes::from_static(&[0xAF, 1, 0]),
            keyframe: false,
            config: false,
        };
        // Audio runs ahead: 900 and 1000 arrive before the keyframe stamped 950.
        for ts in [800, 900, 1000] {
            assert_eq!(q.push(&audio(ts), no_config), PushOutcome::Dropped);
        }
        assert_eq!(q.push(&video(950, true), no_config), PushOutcome::Queued);
        q.push(&audio(1100), no_config);
        assert_eq!(drain(&q).await, vec![950, 1000, 1100]);
        assert_eq!(q.dropped(), 0, "a joiner loses nothing it could play");
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

    /// A direct sink that records what it was sent and takes it all, or nothing.
    #[derive(Debug, Default)]
    struct Recorder {
        sent: Mutex<Vec<u32>>,
        full: std::sync::atomic::AtomicBool,
    }

    impl DirectSink for Recorder {
        fn send_now(&self, packets: &mut VecDeque<Packet>) -> bool {
            let mut sent = self.sent.lock().unwrap();
            sent.extend(packets.drain(..).map(|p| p.timestamp));
            !self.full.load(Ordering::Relaxed)
        }
    }

    fn unbounded(waiting_for_keyframe: bool) -> SubscriberQueue {
        SubscriberQueue::new(
            QueueLimits {
                max_bytes: 1 << 20,
                max_packets: 100,
            },
            waiting_for_keyframe,
            0,
        )
    }

    #[tokio::test]
    async fn an_armed_sink_gets_each_flush_without_its_task() {
        let q = unbounded(false);
        let sink = Arc::new(Recorder::default());
        assert!(q.arm(sink.clone()));
        q.push(&video(0, true), no_config);
        q.push(&video(1, false), no_config);
        assert!(sink.sent.lock().unwrap().is_empty(), "push only queues");
        q.flush();
        assert_eq!(*sink.sent.lock().unwrap(), vec![0, 1]);
        // Nothing is left for the task, and it was not woken.
        let mut out = Vec::new();
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(20), q.recv_batch(&mut out));
        assert!(waited.await.is_err());
    }

    #[tokio::test]
    async fn a_sink_that_cannot_take_a_batch_hands_it_back_to_the_task() {
        let q = unbounded(false);
        let sink = Arc::new(Recorder::default());
        sink.full.store(true, Ordering::Relaxed);
        assert!(q.arm(sink.clone()));
        q.push(&video(0, true), no_config);
        q.flush();
        // The task wakes with nothing queued: it finishes what the sink kept.
        let mut out = Vec::new();
        assert!(q.recv_batch(&mut out).await);
        assert!(out.is_empty());
        // Delivery is the task's again until it re-arms.
        q.push(&video(1, false), no_config);
        q.flush();
        assert_eq!(*sink.sent.lock().unwrap(), vec![0]);
        assert_eq!(drain(&q).await, vec![1]);
    }

    #[tokio::test]
    async fn arming_needs_an_empty_queue_and_taking_packets_disarms() {
        let q = unbounded(false);
        let sink = Arc::new(Recorder::default());
        q.push(&video(0, true), no_config);
        assert!(
            !q.arm(sink.clone()),
            "the task must take what is queued first"
        );
        assert_eq!(drain(&q).await, vec![0]);
        assert!(q.arm(sink.clone()));
        // A push the task takes before the publisher's flush disarms the sink, so
        // the two never both send.
        q.push(&video(1, false), no_config);
        assert_eq!(drain(&q).await, vec![1]);
        q.push(&video(2, false), no_config);
        q.flush();
        assert!(sink.sent.lock().unwrap().is_empty());
        assert_eq!(drain(&q).await, vec![2]);
    }

    #[tokio::test]
    async fn close_and_disarm_release_the_sink() {
        let q = unbounded(false);
        let sink = Arc::new(Recorder::default());
        assert!(q.arm(sink.clone()));
        q.disarm();
        assert_eq!(Arc::strong_count(&sink), 1);
        assert!(q.arm(sink.clone()));
        q.close();
        assert_eq!(Arc::strong_count(&sink), 1);
        assert!(!q.arm(sink.clone()), "a closed queue takes no sink");
        let mut out = Vec::new();
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
