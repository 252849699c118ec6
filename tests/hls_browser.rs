//! The dashboard's live preview: hls.js (vendored, served by prism) in Debian's
//! Chromium plays a stream in low-latency mode through parts and blocking
//! reloads. The latency it sees (the playhead's EXT-X-PROGRAM-DATE-TIME against
//! the clock: how long after prism received a frame it is shown) is recorded in
//! `target/tmp/artifacts/hls-preview/latency.json` and BENCHMARKS.md, not asserted.

mod common;

use std::path::Path;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_previews_a_stream_in_low_latency_hls() {
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("artifacts")
        .join("hls-preview");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();
    let prism = Prism::start().await;
    let publisher = publish(&clip(60), &prism.url("live/preview-key"));
    prism.wait_live("live", "preview-key").await;
    let http = prism.app.as_ref().unwrap().http_addr();

    let seconds = 20;
    let (ok, seen) = run_browser_script(
        "hls_preview.js",
        &[
            &format!("http://{http}"),
            &seconds.to_string(),
            artifacts.to_str().unwrap(),
        ],
    )
    .await;
    assert!(ok, "browser run failed: {seen:#}");
    assert_eq!(seen["errors"], serde_json::json!([]), "page errors");
    assert_eq!(seen["playing"], true);
    let samples = seen["samples"].as_array().unwrap();
    assert_eq!(samples.len(), seconds * 2);
    assert!(samples.iter().all(|s| s["lowLatencyMode"] == true));
    assert!(
        samples.iter().all(|s| s["paused"] == false),
        "it kept playing"
    );
    let time = |s: &serde_json::Value| s["currentTime"].as_f64().unwrap();
    let played = time(samples.last().unwrap()) - time(&samples[0]);
    assert!(
        played > seconds as f64 / 2.0,
        "the playhead moved {played} s in {seconds} s"
    );
    // Low-latency HLS, not plain HLS: parts fetched, the playlist reloaded with
    // _HLS_msn/_HLS_part (blocking), hls.js from prism itself.
    let requests: Vec<&str> = seen["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let count = |f: &dyn Fn(&str) -> bool| requests.iter().filter(|r| f(r)).count();
    let parts = count(&|r| {
        r.rsplit('/')
            .next()
            .is_some_and(|f| f.starts_with("src.") && f.matches('.').count() == 3)
    });
    assert!(parts > 10, "parts fetched: {parts} of {requests:?}");
    assert!(count(&|r| r.contains("_HLS_msn=") && r.contains("_HLS_part=")) > 5);
    assert!(count(&|r| r.ends_with("/assets/hls.light.min.js")) == 1);
    assert!(
        samples.last().unwrap()["shown"]
            .as_str()
            .unwrap()
            .contains(" s")
    );
    assert_eq!(
        seen["videosAfterStop"], 0,
        "stopping the preview removes the player"
    );

    // The latency distribution, for BENCHMARKS.md.
    let mut latencies: Vec<f64> = samples
        .iter()
        .skip(4) // the first two seconds settle the playhead
        .filter_map(|s| s["latencyMs"].as_f64())
        .collect();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    let summary = serde_json::json!({
        "samples": latencies.len(),
        "min_ms": at(0.0), "p50_ms": at(0.5), "p90_ms": at(0.9), "max_ms": at(1.0),
    });
    eprintln!("LL-HLS preview latency: {summary}");
    std::fs::write(artifacts.join("latency.json"), summary.to_string()).unwrap();
    drop(publisher);
    prism.stop().await;
}
