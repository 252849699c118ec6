//! Connection workers (`[runtime] worker_threads` above 1): connections are
//! spread over single-threaded runtimes on threads of their own; a publisher's
//! destinations run on its worker. Everything still arrives intact: two
//! streams, each with a player and a destination (nginx-rtmp), get every
//! packet from the first keyframe, and prism stops cleanly, its worker threads
//! with it.

mod common;

use common::sinks::{NginxSink, recording_framemd5};
use common::*;

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}

/// How many times each worker thread was scheduled (`/proc/.../schedstat`).
fn worker_timeslices() -> Vec<(String, u64)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).ok()?;
            let name = name.trim().to_owned();
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let slices = stat.split_whitespace().nth(2)?.parse().ok()?;
            name.starts_with("prism-worker-").then_some((name, slices))
        })
        .collect()
}

/// This process's connection worker threads.
fn worker_threads() -> Vec<String> {
    thread_names()
        .into_iter()
        .filter(|name| name.starts_with("prism-worker-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_on_two_workers_relay_every_packet() {
    let youtube = NginxSink::start("live2").await;
    let prism = Prism::start_with(|c| {
        c.runtime.worker_threads = 2;
        point_preset(c, "youtube", youtube.url());
    })
    .await;
    // A thread names itself once it runs: give them a moment.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let workers = worker_threads();
        if workers.len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "two worker threads: {workers:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let clip = clip(8);
    let mut players = Vec::new();
    let mut publishers = Vec::new();
    // Two streams: their connections alternate between the workers.
    for key in ["wk1", "wk2"] {
        players.push(play_framemd5(&prism.url(&format!("live/{key}"))));
        prism.wait_subscribers("live", key, 1).await;
        publishers.push(publish(
            &clip,
            &prism.url(&format!("live/{key}?youtube=yt-{key}")),
        ));
    }
    for publisher in publishers {
        let (status, _) = finish(publisher).await;
        assert!(status.success(), "publisher: {status}");
    }
    for player in players {
        let (status, out) = finish(player).await;
        assert!(status.success(), "player: {status}");
        assert_eq!(
            assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
            0,
            "a player gets every packet from the first keyframe"
        );
    }
    for key in ["yt-wk1", "yt-wk2"] {
        assert!(youtube.saw_clean_unpublish(key).await, "{key}");
        let frames = recording_framemd5(&youtube.recording(key));
        assert_eq!(
            assert_source_from_keyframe(&clip, &frames),
            0,
            "{key}: every packet from the first keyframe"
        );
    }
    // Both workers served connections (players on one, publishers and their
    // destinations on the other, in turn): each was scheduled far more often
    // than an idle runtime's thread, which parks once and stays parked.
    for (name, slices) in worker_timeslices() {
        assert!(
            slices >= 50,
            "{name} ran {slices} times: did it serve anything?"
        );
    }
    prism.stop().await;
    let left = worker_threads();
    assert!(left.is_empty(), "the workers' threads ended: {left:?}");
}
