//! Hostile MPEG-TS found by mutation: a real stream's bytes flipped, packets
//! dropped, repeated and swapped, PES and adaptation-field lengths and PIDs
//! rewritten, the program tables damaged, the stream cut mid-packet. Each
//! mutant goes through the very path an SRT connection's (or an HTTP push's)
//! MPEG-TS takes, `server::feed::feed_through_ffmpeg` (ffmpeg's remux, then
//! prism's FLV reader) into a hub publisher of its own, all at once beside the
//! unmutated stream. Every mutant ends, cleanly or with an error, without a
//! panic; the honest stream arrives whole.
//!
//! The seeds are fixed so that a failure reproduces; `PRISM_TS_SEED=<n>` runs
//! another set (`PRISM_TS_MUTANTS` says how many).

mod common;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use prism::hub::{Hub, HubLimits, SubscriberKind};
use prism::server::feed::{Container, Fed, feed_through_ffmpeg};
use prism::stream_name::StreamName;
use tokio_util::sync::CancellationToken;

const PACKET: usize = 188;
const IDLE: Duration = Duration::from_secs(2);

/// xorshift64*: small, seeded, enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Where a TS packet's payload starts, if it has one.
fn payload_start(packet: &[u8]) -> Option<usize> {
    match (packet[3] >> 4) & 0x3 {
        1 => Some(4),
        3 => Some(5 + packet[4] as usize).filter(|&p| p < PACKET),
        _ => None,
    }
}

/// One to three mutations of `ts`, chosen by `rng`.
fn mutate(ts: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = ts.to_vec();
    for _ in 0..1 + rng.below(3) {
        let packets = out.len() / PACKET;
        match rng.below(8) {
            // Bytes flipped anywhere.
            0 => {
                for _ in 0..1 + rng.below(64) {
                    let at = rng.below(out.len());
                    out[at] ^= 1 << rng.below(8);
                }
            }
            // PES lengths that lie.
            1 => {
                for packet in out.chunks_exact_mut(PACKET) {
                    if let Some(p) = payload_start(packet)
                        && packet[1] & 0x40 != 0
                        && p + 9 <= PACKET
                        && rng.below(2) == 0
                    {
                        let length = rng.next() as u16;
                        packet[p + 4..p + 6].copy_from_slice(&length.to_be_bytes());
                        packet[p + 8] = rng.next() as u8;
                    }
                }
            }
            // Adaptation fields that claim too much.
            2 => {
                for packet in out.chunks_exact_mut(PACKET) {
                    if rng.below(8) == 0 {
                        packet[3] |= 0x20;
                        packet[4] = rng.next() as u8;
                    }
                }
            }
            // Packets dropped, repeated or swapped.
            3 => {
                let mut chunks: Vec<Vec<u8>> =
                    out.chunks_exact(PACKET).map(<[u8]>::to_vec).collect();
                for _ in 0..1 + rng.below(packets / 4) {
                    let (a, b) = (rng.below(chunks.len()), rng.below(chunks.len()));
                    match rng.below(3) {
                        0 => {
                            chunks.remove(a);
                        }
                        1 => {
                            let copy = chunks[a].clone();
                            chunks.insert(b, copy);
                        }
                        _ => chunks.swap(a, b),
                    }
                    if chunks.is_empty() {
                        break;
                    }
                }
                out = chunks.concat();
            }
            // PIDs rewritten: streams that appear and vanish.
            4 => {
                for packet in out.chunks_exact_mut(PACKET) {
                    if rng.below(6) == 0 {
                        let pid = rng.next() as u16 & 0x1FFF;
                        packet[1] = (packet[1] & 0xE0) | (pid >> 8) as u8;
                        packet[2] = pid as u8;
                    }
                }
            }
            // The program tables (the first packets) damaged.
            5 => {
                for packet in out.chunks_exact_mut(PACKET).take(4) {
                    for _ in 0..8 {
                        let at = 4 + rng.below(PACKET - 4);
                        packet[at] = rng.next() as u8;
                    }
                }
            }
            // Continuity counters scrambled.
            6 => {
                for packet in out.chunks_exact_mut(PACKET) {
                    packet[3] = (packet[3] & 0xF0) | (rng.next() as u8 & 0x0F);
                }
            }
            // Cut mid-packet.
            _ => {
                let keep = rng.below(out.len());
                out.truncate(keep.max(1));
            }
        }
        if out.is_empty() {
            out.push(0x47);
        }
    }
    out
}

/// Feeds `ts` as stream `live/<name>` of `hub`; returns what the feed said,
/// what it pushed, and what a subscriber got (each packet's kind, timestamp
/// and payload, hashed).
async fn feed(hub: &Arc<Hub>, name: String, ts: Vec<u8>) -> (Result<(), String>, Fed, Vec<u64>) {
    let stream = StreamName {
        app: "live".into(),
        name,
        query: String::new(),
    };
    let publisher = hub.publish(&stream).expect("publishes");
    let subscriber = hub
        .subscribe_as("live", &stream.name, SubscriberKind::Relay)
        .expect("subscribes");
    let counting = tokio::spawn(async move {
        let (mut batch, mut got) = (Vec::new(), Vec::new());
        while subscriber.recv_batch(&mut batch).await {
            for packet in batch.drain(..) {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                let kind = format!("{:?}", packet.kind);
                (kind, packet.timestamp, &packet.payload[..]).hash(&mut hasher);
                got.push(hasher.finish());
            }
        }
        got
    });
    let ffmpeg = require("ffmpeg").display().to_string();
    let stop = CancellationToken::new();
    let mut fed = Fed::default();
    let result = feed_through_ffmpeg(
        &ts[..],
        Container::MpegTs,
        &ffmpeg,
        &publisher,
        IDLE,
        &stop,
        &mut fed,
    )
    .await
    .map_err(|e| e.to_string());
    drop(publisher);
    let received = counting.await.expect("the subscriber ends");
    (result, fed, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_mpeg_ts_ends_each_feed_alone_and_the_honest_stream_arrives_whole() {
    let out = std::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(clip(2))
        .args(["-c", "copy", "-f", "mpegts", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success());
    let ts = out.stdout;
    let seed: u64 = std::env::var("PRISM_TS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0001);
    let mutants: usize = std::env::var("PRISM_TS_MUTANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    let hub = Hub::new(HubLimits::default());
    // The honest stream alone first: what it must look like beside the mutants.
    let (result, alone_fed, alone) = feed(&hub, "alone".into(), ts.clone()).await;
    assert!(result.is_ok(), "the honest stream alone: {result:?}");
    // 2 s at 30 fps and 44.1 kHz AAC, with metadata and sequence headers.
    assert!(
        alone_fed.tags >= 60 + 86,
        "the honest stream: {} tags",
        alone_fed.tags
    );
    let mut feeds = Vec::new();
    for i in 0..mutants {
        let mut rng = Rng(seed
            .wrapping_add(i as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            | 1);
        let mutant = mutate(&ts, &mut rng);
        let hub = Arc::clone(&hub);
        feeds.push(tokio::spawn(async move {
            feed(&hub, format!("mutant-{i}"), mutant).await
        }));
    }
    let honest = feed(&hub, "honest".into(), ts.clone()).await;
    let mut ended = [0usize; 2];
    for (i, handle) in feeds.into_iter().enumerate() {
        let (result, fed, received) = handle
            .await
            .unwrap_or_else(|e| panic!("mutant {i} (seed {seed}): the feed panicked: {e}"));
        // What reached the subscriber is what the feed says it pushed, or
        // less (a subscriber starts at a keyframe).
        assert!(
            received.len() as u64 <= fed.tags,
            "mutant {i}: {} packets of {} tags",
            received.len(),
            fed.tags
        );
        ended[usize::from(result.is_err())] += 1;
    }
    println!(
        "seed {seed}: {} mutants ended cleanly, {} with an error",
        ended[0], ended[1]
    );
    let (result, _, received) = honest;
    assert!(result.is_ok(), "the honest stream: {result:?}");
    assert_eq!(
        received, alone,
        "the honest stream arrived as it does alone"
    );
    assert!(ended[1] > 0, "some mutants are refused: the mutations bite");
}
