//! The hub's behaviour as a whole: publishing, joining, grace periods, limits.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::*;
use crate::rtmp::amf0::Amf0Value;
use crate::stream_name::StreamName;

fn name(key: &str) -> StreamName {
    StreamName::parse("live", "", key).unwrap()
}

const AVC_SH: &[u8] = &[0x17, 0x00, 0, 0, 0, 1, 2, 3];
const AVC_KEY: &[u8] = &[0x17, 0x01, 0, 0, 0, 9];
const AVC_INTER: &[u8] = &[0x27, 0x01, 0, 0, 0, 8];
const AAC_SH: &[u8] = &[0xAF, 0x00, 0x12, 0x10];
const AAC_RAW: &[u8] = &[0xAF, 0x01, 7];

#[test]
fn a_second_publisher_is_refused_until_the_first_leaves() {
    let hub = Hub::new(HubLimits::default());
    let first = hub.publish(&name("k")).unwrap();
    assert_eq!(
        hub.publish(&name("k")).unwrap_err(),
        HubError::AlreadyPublishing
    );
    assert!(hub.is_live("live", "k"));
    drop(first);
    assert!(!hub.is_live("live", "k"));
    assert!(hub.is_empty(), "idle streams are removed");
    hub.publish(&name("k")).unwrap();
}

#[tokio::test]
async fn a_late_joiner_gets_config_then_the_gop_from_its_keyframe() {
    let hub = Hub::new(HubLimits::default());
    let publisher = hub.publish(&name("k")).unwrap();
    publisher.set_metadata(&Amf0Value::EcmaArray(vec![]), 0);
    publisher.push_video(0, Bytes::from_static(AVC_SH));
    publisher.push_audio(0, Bytes::from_static(AAC_SH));
    publisher.push_video(0, Bytes::from_static(AVC_KEY));
    publisher.push_audio(10, Bytes::from_static(AAC_RAW));
    publisher.push_video(33, Bytes::from_static(AVC_INTER));
    // A payload with a buffer of its own (as a message reassembled from chunks has).
    let keyframe = Bytes::from(AVC_KEY.to_vec());
    let keyframe_at = keyframe.as_ptr();
    publisher.push_video(66, keyframe);
    publisher.push_video(99, Bytes::from_static(AVC_INTER));

    let subscriber = hub.subscribe("live", "k").unwrap();
    let mut got = Vec::new();
    assert!(subscriber.recv_batch(&mut got).await);
    let kinds: Vec<_> = got
        .iter()
        .map(|p| (p.kind, p.sequence_header, p.keyframe, p.timestamp))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (PacketKind::Metadata, false, false, 0),
            (PacketKind::Video, true, false, 0),
            (PacketKind::Audio, true, false, 0),
            (PacketKind::Video, false, true, 66),
            (PacketKind::Video, false, false, 99),
        ]
    );
    // The payload is the publisher's buffer, not a copy.
    assert_eq!(got[3].payload.as_ptr(), keyframe_at);
}

#[tokio::test]
async fn a_small_slice_of_a_read_block_is_copied_once_and_lets_go_of_the_block() {
    let hub = Hub::new(HubLimits::default());
    let publisher = hub.publish(&name("k")).unwrap();
    publisher.push_audio(0, Bytes::from_static(AAC_SH));
    let first = hub.subscribe("live", "k").unwrap();
    let second = hub.subscribe("live", "k").unwrap();
    // A connection's read block holding a small audio frame, as the chunk decoder
    // hands out a message that came in one chunk.
    let mut block = vec![0u8; 64 * 1024];
    block[..AAC_RAW.len()].copy_from_slice(AAC_RAW);
    let block = Bytes::from(block);
    publisher.push_audio(10, block.slice(..AAC_RAW.len()));
    publisher.flush();
    assert!(block.is_unique(), "the hub keeps none of the block");
    let mut from_first = Vec::new();
    let mut from_second = Vec::new();
    assert!(first.recv_batch(&mut from_first).await);
    assert!(second.recv_batch(&mut from_second).await);
    let (a, b) = (from_first.last().unwrap(), from_second.last().unwrap());
    assert_eq!(&a.payload[..], AAC_RAW);
    assert_eq!(
        a.payload.as_ptr(),
        b.payload.as_ptr(),
        "one copy, shared by every subscriber"
    );
}

#[tokio::test]
async fn a_large_slice_is_kept_as_it_is() {
    let hub = Hub::new(HubLimits::default());
    let publisher = hub.publish(&name("k")).unwrap();
    publisher.push_video(0, Bytes::from_static(AVC_SH));
    let subscriber = hub.subscribe("live", "k").unwrap();
    let mut block = vec![0u8; 64 * 1024];
    block[..AVC_KEY.len()].copy_from_slice(AVC_KEY);
    let block = Bytes::from(block);
    let frame = block.slice(..packet::SHARED_PAYLOAD_COPY_MAX + 1);
    let frame_at = frame.as_ptr();
    publisher.push_video(0, frame);
    publisher.flush();
    let mut got = Vec::new();
    assert!(subscriber.recv_batch(&mut got).await);
    assert_eq!(
        got.last().unwrap().payload.as_ptr(),
        frame_at,
        "most of its block: not copied"
    );
}

#[tokio::test]
async fn a_waiting_player_gets_the_stream_when_it_starts_and_the_end_when_it_stops() {
    let hub = Hub::new(HubLimits::default());
    let subscriber = hub.subscribe("live", "k").unwrap();
    assert!(!hub.is_live("live", "k"));
    let publisher = hub.publish(&name("k?youtube=x")).unwrap();
    assert_eq!(publisher.stream().query(), "youtube=x");
    publisher.push_video(0, Bytes::from_static(AVC_SH));
    publisher.push_video(0, Bytes::from_static(AVC_INTER));
    publisher.push_video(5, Bytes::from_static(AVC_KEY));
    drop(publisher);
    let mut got = Vec::new();
    assert!(subscriber.recv_batch(&mut got).await);
    let ts: Vec<_> = got
        .iter()
        .map(|p| (p.sequence_header, p.timestamp))
        .collect();
    assert_eq!(
        ts,
        vec![(true, 0), (false, 5)],
        "inter frame before the first keyframe dropped"
    );
    got.clear();
    assert!(!subscriber.recv_batch(&mut got).await, "stream ended");
    drop(subscriber);
    assert!(hub.is_empty());
}

#[tokio::test]
async fn a_slow_subscriber_never_blocks_the_publisher_or_others() {
    let limits = HubLimits {
        queue: QueueLimits {
            max_bytes: 1 << 20,
            max_packets: 8,
        },
        ..HubLimits::default()
    };
    let hub = Hub::new(limits);
    let publisher = hub.publish(&name("k")).unwrap();
    publisher.push_video(0, Bytes::from_static(AVC_SH));
    let slow = hub.subscribe("live", "k").unwrap();
    let fast = hub.subscribe("live", "k").unwrap();
    let mut got = Vec::new();
    let mut fast_count = 0;
    for i in 0..100u32 {
        let payload = if i % 10 == 0 { AVC_KEY } else { AVC_INTER };
        publisher.push_video(i, Bytes::from_static(payload));
        got.clear();
        fast.recv_batch(&mut got).await;
        fast_count += got.iter().filter(|p| !p.sequence_header).count();
    }
    assert_eq!(fast_count, 100);
    assert!(slow.dropped() > 0);
    got.clear();
    slow.recv_batch(&mut got).await;
    let media: Vec<_> = got.iter().filter(|p| !p.sequence_header).collect();
    assert!(media.len() <= 8);
    assert!(media[0].keyframe);
}

#[tokio::test]
async fn a_publisher_back_within_its_grace_period_takes_over() {
    let hub = Hub::new(HubLimits::default());
    let first = hub.publish(&name("k")).unwrap();
    let subscriber = hub.subscribe("live", "k").unwrap();
    first.push_video(0, Bytes::from_static(AVC_SH));
    first.push_video(0, Bytes::from_static(AVC_KEY));
    let stream = hub.stream("live", "k").unwrap();
    assert!(stream.reconnecting_since().is_none(), "live");
    let orphan = first.detach();
    assert!(
        hub.is_live("live", "k"),
        "still live during the grace period"
    );
    assert!(stream.reconnecting_since().is_some(), "waiting for it");
    assert!(stream.snapshot().is_none(), "no publisher to describe");
    let second = hub.publish(&name("k")).unwrap();
    assert!(orphan.taken_over());
    assert!(stream.reconnecting_since().is_none(), "live again");
    drop(orphan);
    second.push_video(0, Bytes::from_static(AVC_SH));
    second.push_video(0, Bytes::from_static(AVC_KEY));
    let mut got = Vec::new();
    assert!(subscriber.recv_batch(&mut got).await);
    assert_eq!(
        got.len(),
        4,
        "the first sequence header and keyframe, then the new ones"
    );
    drop(second);
    got.clear();
    assert!(
        !subscriber.recv_batch(&mut got).await,
        "ended with the second publisher"
    );
}

#[tokio::test]
async fn a_grace_period_that_expires_ends_the_stream() {
    let hub = Hub::new(HubLimits::default());
    let publisher = hub.publish(&name("k")).unwrap();
    let subscriber = hub.subscribe("live", "k").unwrap();
    let stream = hub.stream("live", "k").unwrap();
    let orphan = publisher.detach();
    drop(orphan);
    assert!(!hub.is_live("live", "k"));
    assert!(stream.reconnecting_since().is_none(), "ended");
    let mut got = Vec::new();
    assert!(!subscriber.recv_batch(&mut got).await);
}

#[test]
fn audio_only_streams_start_anywhere() {
    let hub = Hub::new(HubLimits::default());
    let publisher = hub.publish(&name("k")).unwrap();
    publisher.push_audio(0, Bytes::from_static(AAC_SH));
    publisher.push_audio(1, Bytes::from_static(AAC_RAW));
    publisher.push_audio(2, Bytes::from_static(AAC_RAW));
    let state = publisher.stream.lock();
    assert_eq!(state.gop.packets().len(), 1, "last audio packet only");
}

#[test]
fn the_stream_limit_is_enforced() {
    let hub = Hub::new(HubLimits {
        max_streams: 1,
        max_awaited_streams: 1,
        ..HubLimits::default()
    });
    let a = hub.publish(&name("a")).unwrap();
    assert_eq!(
        hub.publish(&name("b")).unwrap_err(),
        HubError::TooManyStreams(1)
    );
    assert_eq!(hub.len(), 1, "the refused publish left no entry");
    // Players waiting for names that are not live are held to their own limit...
    let _waiting = hub.subscribe("live", "c").unwrap();
    assert_eq!(
        hub.subscribe("live", "d").unwrap_err(),
        HubError::TooManyAwaited(1)
    );
    // ...and never keep a publisher out: when `a` ends, `c` may go live.
    drop(a);
    assert_eq!(hub.live_count(), 0);
    let _c = hub.publish(&name("c")).unwrap();
    assert_eq!(hub.live_count(), 1);
    assert_eq!(
        hub.publish(&name("e")).unwrap_err(),
        HubError::TooManyStreams(1)
    );
}

#[test]
fn a_grace_period_keeps_its_live_slot() {
    let hub = Hub::new(HubLimits {
        max_streams: 1,
        max_awaited_streams: 1,
        ..HubLimits::default()
    });
    let orphan = hub.publish(&name("a")).unwrap().detach();
    assert_eq!(hub.live_count(), 1, "still live while it may come back");
    let back = hub.publish(&name("a")).unwrap();
    assert_eq!(
        hub.live_count(),
        1,
        "the returning publisher takes the same slot"
    );
    drop(orphan);
    drop(back);
    assert_eq!(hub.live_count(), 0);
    assert!(hub.is_empty());
}

#[test]
fn the_stream_limit_holds_under_concurrent_publishes() {
    // Many threads creating distinct streams at once: the check against the
    // limit and the insert must be one step, or the hub overshoots.
    const LIMIT: usize = 16;
    const THREADS: usize = 8;
    for _ in 0..50 {
        let hub = Hub::new(HubLimits {
            max_streams: LIMIT,
            max_awaited_streams: LIMIT,
            ..HubLimits::default()
        });
        let start = Arc::new(std::sync::Barrier::new(THREADS));
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (hub, start) = (Arc::clone(&hub), Arc::clone(&start));
                std::thread::spawn(move || {
                    start.wait();
                    (0..LIMIT)
                        .filter_map(|i| hub.publish(&name(&format!("t{t}-{i}"))).ok())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let publishers: Vec<Publisher> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        assert!(
            publishers.len() <= LIMIT && hub.len() <= LIMIT,
            "{} publishers, {} streams, limit {LIMIT}",
            publishers.len(),
            hub.len()
        );
    }
}

/// A destination that keeps up, checking on each direct write whether the stream's
/// lock is free; on its first write it may also let a player join and another
/// subscriber leave.
#[derive(Debug)]
struct LockProbe {
    stream: Arc<Stream>,
    hub: Arc<Hub>,
    writes: AtomicUsize,
    written: AtomicUsize,
    held_lock: AtomicUsize,
    leaver: Mutex<Option<Subscriber>>,
    joiner: Mutex<Option<Subscriber>>,
    join_on_first_write: bool,
}

impl LockProbe {
    fn new(hub: &Arc<Hub>, join_on_first_write: bool) -> Arc<Self> {
        Arc::new(Self {
            stream: hub.stream("live", "k").unwrap(),
            hub: Arc::clone(hub),
            writes: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            held_lock: AtomicUsize::new(0),
            leaver: Mutex::new(None),
            joiner: Mutex::new(None),
            join_on_first_write,
        })
    }
}

impl DirectSink for LockProbe {
    fn send_now(&self, packets: &mut VecDeque<Packet>) -> bool {
        self.written.fetch_add(packets.len(), Ordering::Relaxed);
        packets.clear();
        if self.stream.state.try_lock().is_err() {
            self.held_lock.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if self.writes.fetch_add(1, Ordering::Relaxed) == 0 && self.join_on_first_write {
            *self.joiner.lock().unwrap() = Some(self.hub.subscribe("live", "k").unwrap());
            drop(self.leaver.lock().unwrap().take());
        }
        true
    }
}

/// A publisher with a sequence header and a keyframe, and `n` subscribers that took
/// their join burst.
async fn stream_with_subscribers(n: usize) -> (Arc<Hub>, Publisher, Vec<Subscriber>) {
    let hub = Hub::new(HubLimits::default());
    let publisher = hub.publish(&name("k")).unwrap();
    publisher.push_video(0, Bytes::from_static(AVC_SH));
    publisher.push_video(0, Bytes::from_static(AVC_KEY));
    let mut subscribers = Vec::new();
    for _ in 0..n {
        let subscriber = hub.subscribe("live", "k").unwrap();
        let mut got = Vec::new();
        assert!(subscriber.recv_batch(&mut got).await);
        assert_eq!(got.len(), 2, "the join burst");
        subscribers.push(subscriber);
    }
    (hub, publisher, subscribers)
}

#[tokio::test]
async fn the_publisher_writes_to_destinations_outside_the_stream_lock() {
    let (hub, publisher, subscribers) = stream_with_subscribers(3).await;
    let probes: Vec<Arc<LockProbe>> = subscribers
        .iter()
        .map(|subscriber| {
            let probe = LockProbe::new(&hub, false);
            assert!(subscriber.queue().arm(probe.clone()));
            probe
        })
        .collect();
    for ts in [33, 66, 99] {
        publisher.push_video(ts, Bytes::from_static(AVC_INTER));
        publisher.flush();
    }
    for probe in &probes {
        assert_eq!(
            probe.writes.load(Ordering::Relaxed),
            3,
            "one write per flush"
        );
        assert_eq!(probe.written.load(Ordering::Relaxed), 3);
        assert_eq!(
            probe.held_lock.load(Ordering::Relaxed),
            0,
            "the stream's lock was free during every write"
        );
    }
}

#[tokio::test]
async fn subscribers_join_and_leave_while_the_publisher_writes() {
    let (hub, publisher, mut subscribers) = stream_with_subscribers(3).await;
    // The first subscriber's write lets a player join and the third subscriber
    // leave, halfway through the publisher's batch.
    let leaver = subscribers.pop().unwrap();
    let leaving_queue = leaver.queue();
    let probe = LockProbe::new(&hub, true);
    *probe.leaver.lock().unwrap() = Some(leaver);
    assert!(subscribers[0].queue().arm(probe.clone()));
    let other = LockProbe::new(&hub, false);
    assert!(subscribers[1].queue().arm(other.clone()));

    publisher.push_video(33, Bytes::from_static(AVC_INTER));
    publisher.flush();
    assert_eq!(probe.held_lock.load(Ordering::Relaxed), 0);
    assert_eq!(
        other.written.load(Ordering::Relaxed),
        1,
        "the batch went on"
    );
    assert!(leaving_queue.is_closed());
    let stream = hub.stream("live", "k").unwrap();
    assert_eq!(stream.subscriber_count(), 3, "two stayed, one joined");

    publisher.push_video(66, Bytes::from_static(AVC_INTER));
    publisher.flush();
    assert_eq!(probe.written.load(Ordering::Relaxed), 2);
    assert_eq!(other.written.load(Ordering::Relaxed), 2);
    let joiner = probe.joiner.lock().unwrap().take().unwrap();
    let mut got = Vec::new();
    assert!(joiner.recv_batch(&mut got).await);
    let ts: Vec<_> = got
        .iter()
        .map(|p| (p.sequence_header, p.timestamp))
        .collect();
    assert_eq!(
        ts,
        vec![(true, 0), (false, 0), (false, 33), (false, 66)],
        "the joiner's burst, then the next packet"
    );
}

#[tokio::test]
async fn inserted_data_goes_out_in_order_at_the_streams_latest_timestamp() {
    let hub = Hub::new(HubLimits::default());
    let publisher = hub.publish(&name("k")).unwrap();
    let stream = hub.stream("live", "k").unwrap();
    assert_eq!(
        stream.insert_data(|_| Bytes::from_static(b"cue")),
        None,
        "nothing on air yet: nothing to mark"
    );
    publisher.push_video(0, Bytes::from_static(AVC_SH));
    publisher.push_video(1_000, Bytes::from_static(AVC_KEY));
    let subscriber = hub.subscribe("live", "k").unwrap();
    publisher.push_audio(1_010, Bytes::from_static(AAC_SH));
    publisher.push_audio(1_020, Bytes::from_static(AAC_RAW));
    publisher.push_video(1_033, Bytes::from_static(AVC_INTER));
    let at = stream.insert_data(|at| Bytes::from(format!("cue at {at}")));
    assert_eq!(at, Some(1_033));
    publisher.push_video(1_066, Bytes::from_static(AVC_INTER));
    publisher.flush();
    let mut got = Vec::new();
    assert!(subscriber.recv_batch(&mut got).await);
    let order: Vec<_> = got.iter().map(|p| (p.kind, p.timestamp)).collect();
    assert_eq!(
        order[order.len() - 2..],
        [(PacketKind::Data, 1_033), (PacketKind::Video, 1_066)]
    );
    assert_eq!(got[got.len() - 2].payload, "cue at 1033");
    // Neither it nor a publisher's own data is kept for joiners: a player who
    // comes later does not act on them.
    publisher.push_data(1_070, Bytes::from_static(b"onCuePoint"));
    let late = hub.subscribe("live", "k").unwrap();
    let mut joined = Vec::new();
    assert!(late.recv_batch(&mut joined).await);
    assert!(joined.iter().all(|p| p.kind != PacketKind::Data));
    drop(publisher);
    assert_eq!(stream.insert_data(|_| Bytes::new()), None);
}
