//! The queue's drop policy, its catch-up on join and its direct writes.

use super::*;
use bytes::Bytes;

fn video(ts: u32, keyframe: bool) -> Packet {
    Packet {
        kind: PacketKind::Video,
        timestamp: ts,
        payload: Bytes::from_static(&[0; 100]),
        keyframe,
        sequence_header: false,
    }
}

fn sh() -> Packet {
    Packet {
        kind: PacketKind::Video,
        timestamp: 0,
        payload: Bytes::from_static(&[0x17, 0]),
        keyframe: false,
        sequence_header: true,
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
    assert!(out[0].sequence_header, "sequence header first");
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
        sequence_header: false,
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
    let waited = tokio::time::timeout(std::time::Duration::from_millis(20), q.recv_batch(&mut out));
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
