//! The ABR ladder: one ffmpeg per watched stream encodes every rung (and shares
//! a destination's encode of the same profile); the master
//! playlist lists the source and each rung; every variant's segments play at its
//! size, and the rungs' segments line up with the source's (same keyframe
//! times, so the same cuts). hls.js plays the master and switches to every
//! variant in Chromium.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use m3u8_rs::Playlist;

/// The PIDs of this process's children that write HLS rungs.
fn ladder_encoder_pids() -> Vec<i32> {
    ladder_encoders().iter().map(|(pid, _)| *pid).collect()
}

/// This process's children that write HLS rungs: PID and command line.
fn ladder_encoders() -> Vec<(i32, String)> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: the fields after the command's closing paren.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid != Some(me.as_str()) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("pipe:3") {
            let pid = entry.file_name().to_string_lossy().parse().unwrap_or(0);
            found.push((pid, cmdline));
        }
    }
    found
}

async fn text(url: &str) -> String {
    let response = http_client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ladder_serves_aligned_variants_from_one_encoder() {
    let prism = Prism::start_with(|c| {
        c.profiles.insert("180p".into(), light_profile(180, 400));
        c.profiles.insert("120p".into(), light_profile(120, 200));
        c.hls.ladder = vec!["180p".into(), "120p".into()];
    })
    .await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let publisher = publish(&clip(60), &prism.url("live/ladder-key"));
    prism.wait_live("live", "ladder-key").await;
    let id = prism.streams_json().await["streams"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("http://{http}/hls/{id}");

    let master = text(&format!("{base}/index.m3u8")).await;
    let Ok(Playlist::MasterPlaylist(master)) = m3u8_rs::parse_playlist_res(master.as_bytes())
    else {
        panic!("a master playlist")
    };
    let uris: Vec<&str> = master.variants.iter().map(|v| v.uri.as_str()).collect();
    assert_eq!(uris, ["src.m3u8", "180p.m3u8", "120p.m3u8"]);
    let sizes: Vec<String> = master
        .variants
        .iter()
        .map(|v| {
            v.resolution
                .map(|r| format!("{}x{}", r.width, r.height))
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(sizes, ["320x240", "240x180", "160x120"]);
    for variant in &master.variants {
        assert_eq!(
            variant.codecs.as_deref().map(|c| c.starts_with("avc1.")),
            Some(true)
        );
        assert!(variant.bandwidth > 0);
    }

    // One encoder for the whole ladder: one ffmpeg child writing both rungs.
    let encoders = ladder_encoders();
    assert_eq!(encoders.len(), 1, "{encoders:?}");
    assert!(encoders[0].1.contains("pipe:3") && encoders[0].1.contains("pipe:4"));

    // The API shows the packaging, every rendition and the encoder.
    let hls = &prism.streams_json().await["streams"][0]["hls"];
    assert_eq!(hls["packaging"], true, "{hls:#}");
    let names: Vec<&str> = hls["renditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["src", "180p", "120p"]);
    assert_eq!(
        hls["encoder"]["pid"].as_i64(),
        Some(i64::from(encoders[0].0)),
        "{hls:#}"
    );

    // Each variant, once it has four complete segments: the same cuts as the
    // source's, at its own size, frames that decode.
    let mut durations = BTreeMap::new();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ladder-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for rendition in ["src", "180p", "120p"] {
        // Blocking reloads may ask at most two segments ahead.
        text(&format!("{base}/{rendition}.m3u8?_HLS_msn=2")).await;
        let playlist = text(&format!("{base}/{rendition}.m3u8?_HLS_msn=4")).await;
        // LL-HLS: each media playlist reports where the other renditions are.
        let reports: Vec<&str> = playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXT-X-RENDITION-REPORT:URI=\""))
            .map(|l| l.split('"').next().unwrap())
            .collect();
        let others: Vec<String> = ["src", "180p", "120p"]
            .iter()
            .filter(|r| **r != rendition)
            .map(|r| format!("{r}.m3u8"))
            .collect();
        assert_eq!(reports, others, "{playlist}");
        let Ok(Playlist::MediaPlaylist(playlist)) =
            m3u8_rs::parse_playlist_res(playlist.as_bytes())
        else {
            panic!("a media playlist")
        };
        let got: Vec<(u64, f32)> = playlist
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| (playlist.media_sequence + i as u64, s.duration))
            .collect();
        let mut bytes = http_client()
            .get(format!("{base}/{rendition}.init0.mp4"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        for segment in playlist.segments.iter().take(4) {
            let body = http_client()
                .get(format!("{base}/{}", segment.uri))
                .send()
                .await
                .unwrap();
            assert_eq!(body.status(), 200);
            bytes.extend_from_slice(&body.bytes().await.unwrap());
        }
        let file = dir.join(format!("{rendition}.mp4"));
        std::fs::write(&file, &bytes).unwrap();
        let probe = ffprobe_video(&file);
        let expected = match rendition {
            "src" => (320, 240),
            "180p" => (240, 180),
            _ => (160, 120),
        };
        assert_eq!((probe.width, probe.height), expected, "{rendition}");
        assert!(
            framemd5_of_file(&file)
                .iter()
                .filter(|f| f.stream == 0)
                .count()
                > 200
        );
        durations.insert(rendition, got);
    }
    // Segment n of every rung lasts what segment n of the source lasts (a frame
    // of slack: the rungs' clocks start with the encoder's first frame).
    for rung in ["180p", "120p"] {
        for ((msn, source), (rung_msn, duration)) in durations["src"].iter().zip(&durations[rung]) {
            assert_eq!(msn, rung_msn, "{rung}: media sequence numbers line up");
            assert!(
                (source - duration).abs() <= 0.04,
                "{rung} segment {msn}: {duration} s, the source's {source} s"
            );
        }
    }

    // hls.js plays the master in Chromium and switches to every variant.
    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("artifacts")
        .join("hls-ladder");
    std::fs::create_dir_all(&artifacts).unwrap();
    let (ok, seen) = run_browser_script(
        "hls_preview.js",
        &[
            &format!("http://{http}"),
            "6",
            artifacts.to_str().unwrap(),
            "switch",
        ],
    )
    .await;
    assert!(ok, "browser run failed: {seen:#}");
    assert_eq!(seen["levels"], 3, "{seen:#}");
    let switched: Vec<i64> = seen["switched"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_i64().unwrap())
        .collect();
    assert_eq!(switched, [0, 1, 2], "every variant played: {seen:#}");
    assert_eq!(seen["hlsPill"], "HLS · 3 variants");

    // The encoder killed: it is started again, and the rungs' playlists go on
    // counting from where they were.
    let before = text(&format!("{base}/120p.m3u8")).await;
    let Ok(Playlist::MediaPlaylist(before)) = m3u8_rs::parse_playlist_res(before.as_bytes()) else {
        panic!()
    };
    let edge = before.media_sequence + before.segments.len() as u64;
    let pid = ladder_encoder_pids();
    assert_eq!(pid.len(), 1);
    // SAFETY: kill(2) on the PID of this test's own child.
    assert_eq!(unsafe { libc::kill(pid[0], libc::SIGKILL) }, 0);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let now = ladder_encoder_pids();
        if now.len() == 1 && now != pid {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new encoder");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for msn in [edge + 1, edge + 2] {
        let after = text(&format!("{base}/120p.m3u8?_HLS_msn={msn}")).await;
        let Ok(Playlist::MediaPlaylist(after)) = m3u8_rs::parse_playlist_res(after.as_bytes())
        else {
            panic!()
        };
        assert!(after.media_sequence + after.segments.len() as u64 > msn);
    }
    let _ = std::fs::remove_dir_all(&dir);
    drop(publisher);
    prism.stop().await;
}

/// A rung whose profile a destination of the stream already uses shares that
/// destination's encode: one ffmpeg serves the destination and the rung.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rung_shares_the_encode_of_a_destination_on_its_profile() {
    let twitch = common::sinks::NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "twitch", twitch.url());
        c.profiles.insert("180p".into(), light_profile(180, 400));
        c.hls.ladder = vec!["180p".into()];
    })
    .await;
    let http = prism.app.as_ref().unwrap().http_addr();
    let publisher = publish(
        &clip(30),
        &prism.url("live/rung-key?twitch=tw-rung&twitch_profile=180p"),
    );
    let d = prism
        .wait_destination("rung-key", "twitch", "its encoder runs", |d| {
            encoder_pid(d).is_some()
        })
        .await;
    let pid = encoder_pid(&d).unwrap();
    let id = prism.streams_json().await["streams"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!("http://{http}/hls/{id}");
    text(&format!("{base}/index.m3u8")).await;
    text(&format!("{base}/180p.m3u8?_HLS_msn=2")).await;
    let playlist = text(&format!("{base}/180p.m3u8?_HLS_msn=3")).await;
    assert!(playlist.contains("#EXTINF"), "{playlist}");
    let hls = &prism.streams_json().await["streams"][0]["hls"];
    assert_eq!(
        hls["encoder"]["pid"].as_u64(),
        Some(u64::from(pid)),
        "{hls:#}"
    );
    let encoders = ladder_encoders();
    assert_eq!(encoders.len(), 1, "one encode for both: {encoders:?}");
    drop(publisher);
    prism.stop().await;
}
