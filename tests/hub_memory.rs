//! What the hub's caches really hold (issue 17 item 6). A connection reads into 64 KiB
//! blocks, and a message that fits in one chunk is a slice of its block: kept in the GOP
//! cache or a queue, such a slice would keep the whole block alive, while
//! `hub.gop_cache_max_bytes` and `hub.queue_max_bytes` count only its own bytes.
//!
//! This binary counts every live heap byte (its own global allocator), publishes a
//! stream whose GOP is long, with small single-chunk audio between video frames of
//! several chunks (what encoders send), into a real prism in this process, and compares
//! the heap the GOP takes with the payload bytes it holds.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use prism::rtmp::client::{ClientConfig, ClientEvent, ClientSession};
use prism::rtmp::message::type_id;
use prism::transport::write_out;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The system allocator, counting the bytes allocated and not yet freed.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static HEAP: Counting = Counting;

/// Audio/video pairs sent after the keyframe: one GOP of 50 s at 30 fps, well within
/// the default GOP bounds (16 MiB, 4096 packets).
const PAIRS: usize = 1_500;
/// An AAC frame: one chunk at the client's chunk size (4096).
const AUDIO_LEN: usize = 200;
/// A video inter frame: three chunks, reassembled into a buffer of its own.
const VIDEO_LEN: usize = 8 * 1024;

fn frame(head: &[u8], len: usize, fill: u8) -> Bytes {
    let mut body = vec![fill; len];
    body[..head.len()].copy_from_slice(head);
    Bytes::from(body)
}

/// Connects and publishes `key` with prism's RTMP client (chunk size 4096).
async fn publisher(addr: std::net::SocketAddr, key: &str) -> (TcpStream, ClientSession) {
    let (mut io, mut inbound) = wire::handshake_from(addr, None)
        .await
        .unwrap_or_else(|e| panic!("handshake: {e}"));
    let mut session = ClientSession::after_handshake(
        ClientConfig::new(&format!("rtmp://{addr}/live"), key),
        std::time::Instant::now(),
    );
    loop {
        write_out(&mut io, session.out()).await.unwrap();
        assert!(io.read_buf(&mut inbound).await.unwrap() > 0, "closed");
        while let Some(event) = session.poll(&mut inbound).unwrap() {
            if let ClientEvent::Publishing { .. } = event {
                return (io, session);
            }
        }
    }
}

/// Waits until the hub has taken `packets` packets of `live/key`.
async fn wait_packets_in(prism: &Prism, key: &str, packets: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = prism
            .hub()
            .stream("live", key)
            .and_then(|s| s.snapshot())
            .map_or(0, |info| info.packets_in);
        if got >= packets {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{got} of {packets} packets arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_kept_for_joiners_hold_only_their_own_bytes() {
    let prism = Prism::start().await;
    let (mut io, mut session) = publisher(prism.addr, "gop").await;
    let avc_header = Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff]);
    let aac_header = Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10]);
    session.send_media(type_id::VIDEO, 0, &avc_header);
    session.send_media(type_id::AUDIO, 0, &aac_header);
    session.send_media(
        type_id::VIDEO,
        0,
        &frame(&[0x17, 0x01, 0, 0, 0], VIDEO_LEN, 1),
    );
    write_out(&mut io, session.out()).await.unwrap();
    wait_packets_in(&prism, "gop", 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = LIVE_BYTES.load(Ordering::Relaxed);

    let mut counted = 0;
    for i in 0..PAIRS {
        let ts = 33 * (i as u32 + 1);
        let audio = frame(&[0xAF, 0x01], AUDIO_LEN, 2);
        let video = frame(&[0x27, 0x01, 0, 0, 0], VIDEO_LEN, 3);
        counted += audio.len() + video.len();
        session.send_media(type_id::AUDIO, ts, &audio);
        session.send_media(type_id::VIDEO, ts, &video);
        write_out(&mut io, session.out()).await.unwrap();
    }
    wait_packets_in(&prism, "gop", 3 + 2 * PAIRS as u64).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let held = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(before);
    println!(
        "GOP payload {counted} bytes, heap held for it {held} bytes ({:.2}x)",
        held as f64 / counted as f64
    );
    // Allowed beyond the payloads: the packets' own bookkeeping and the allocator's
    // rounding (a few percent), and one read block that is still filling.
    assert!(
        held <= counted + counted / 10 + (1 << 20),
        "the GOP holds {counted} payload bytes but keeps {held} bytes of heap"
    );

    // Nothing of the GOP is left behind when the stream ends.
    session.unpublish();
    write_out(&mut io, session.out()).await.unwrap();
    drop(io);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while prism.hub().stream("live", "gop").is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the stream ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    prism.stop().await;
}
