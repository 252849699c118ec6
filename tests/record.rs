//! Recording against the real server: a real ffmpeg publishes a known FLV, and
//! what prism writes to disk holds every audio and video tag of it byte for byte
//! (and ffmpeg reads the same packets back, framemd5); cut into segments at
//! keyframes, the files put end to end still hold every tag exactly once, each
//! file opening on its own sequence headers and a keyframe; `on_record_done`
//! runs for each complete file; a user's file turns recording on for them and
//! names the files by the user; a disk that fills up (a small tmpfs) or a
//! directory that cannot be made stops the recording with the error in the API
//! and the metrics, while a player and a destination get every packet.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sinks::{NginxSink, recording_framemd5};
use common::*;
use prism::flv::{FlvTag, TagType};

const WAIT: Duration = Duration::from_secs(30);

fn temp_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("record-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file under `dir`, sorted (the files of one broadcast sort in order).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// A tag's media content: audio and video frames, not sequence headers or
/// metadata (which a recording repeats at the start of each file).
fn frames(tags: &[FlvTag]) -> Vec<(TagType, u32, bytes::Bytes)> {
    tags.iter()
        .filter(|t| match t.tag_type {
            TagType::Video => !prism::flv::is_video_sequence_header(&t.data),
            TagType::Audio => !prism::flv::is_audio_sequence_header(&t.data),
            TagType::Script => false,
        })
        .map(|t| (t.tag_type, t.timestamp, t.data.clone()))
        .collect()
}

async fn wait_gone(prism: &Prism, key: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while prism.hub().is_live("live", key)
        || !prism.streams_json().await["streams"]
            .as_array()
            .unwrap()
            .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the only stream's `recording` until `done` holds.
async fn wait_recording(
    prism: &Prism,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let streams = prism.streams_json().await;
        let recording = streams["streams"][0]["recording"].clone();
        if done(&recording) {
            return recording;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "recording never got there: {streams:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_every_tag_of_the_source_byte_for_byte() {
    let dir = temp_dir("exact");
    let prism = Prism::start_with(|c| {
        c.record.enabled = true;
        c.record.dir = dir.clone();
    })
    .await;
    let source = test_flv();
    let key = "record-exact-key";
    let publisher = publish(&source, &prism.url(&format!("live/{key}")));
    prism.wait_live("live", key).await;
    let recording = wait_recording(&prism, |r| r["bytes"].as_u64() > Some(10_000)).await;
    assert_eq!(recording["state"], "recording");
    let shown = recording["file"].as_str().unwrap();
    assert!(!shown.contains(key), "the key in a file name: {shown}");
    let (exit, _) = finish(publisher).await;
    assert!(exit.success());
    wait_gone(&prism, key).await;

    let files = files_under(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(files[0].starts_with(dir.join("live")), "{files:?}");
    assert!(name.ends_with("-0001.flv") && !name.contains(key), "{name}");
    // Every audio and video tag, payload and timestamp, as the source file has it.
    let want = frames(&flv_tags(&source));
    let got = frames(&flv_tags(&files[0]));
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the recording's tags differ from the source's");
    // And ffmpeg reads the same packets from both.
    assert_eq!(framemd5_of_file(&files[0]), framemd5_of_file(&source));
    prism.stop().await;
    assert_logs_hide(&[key]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_cut_at_keyframes_hold_every_tag_once_and_the_hook_gets_each_file() {
    let dir = temp_dir("segments");
    let done = temp_dir("segments-done");
    let users = temp_dir("segments-users");
    std::fs::write(
        users.join("alice.toml"),
        format!(
            "stream_key = \"alice-record-key\"\n[record]\nenabled = true\ndir = \"{}\"\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::write(users.join("bob.toml"), "stream_key = \"bob-record-key\"\n").unwrap();
    let prism = Prism::start_with(|c| {
        // Off for everyone but alice, whose file turns it on (and says where).
        c.record.enabled = false;
        c.record.dir = temp_dir("segments-unused");
        c.record.segment_secs = 2;
        c.record.on_record_done = vec![
            require("cp").display().to_string(),
            "{path}".into(),
            format!("{}/", done.display()),
        ];
        c.users.dir = Some(users.clone());
    })
    .await;
    let source = clip(12);
    let alice = publish(&source, &prism.url("live/alice-record-key"));
    let bob = publish(&test_flv(), &prism.url("live/bob-record-key"));
    for (exit, _) in [finish(alice).await, finish(bob).await] {
        assert!(exit.success());
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while prism.hub().is_live("live", "alice-record-key") {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Only alice's stream was recorded, named by her name.
    let files = files_under(&dir);
    assert!(files.len() >= 5, "12 s in 2 s segments: {files:?}");
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("alice-") && name.ends_with(&format!("-{:04}.flv", i + 1)),
            "{name}"
        );
    }
    assert!(
        files_under(
            &Path::new(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("record-segments-unused-{}", std::process::id()))
        )
        .is_empty()
    );

    // End to end, every audio and video tag exactly once, in order, as sent.
    let mut all = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let tags = flv_tags(file);
        let media = frames(&tags);
        // Each file opens with the sequence headers, then a video keyframe...
        let first_frame = tags
            .iter()
            .position(|t| frames(std::slice::from_ref(t)).len() == 1)
            .unwrap();
        let opening: Vec<_> = tags[..first_frame].iter().map(|t| t.tag_type).collect();
        assert!(
            opening.contains(&TagType::Video) && opening.contains(&TagType::Audio),
            "file {i}: {opening:?}"
        );
        let key = tags[first_frame..]
            .iter()
            .find(|t| t.tag_type == TagType::Video)
            .unwrap();
        assert!(prism::flv::is_video_keyframe(&key.data), "file {i}");
        // ...holds at least the segment's duration (all but the last)...
        let span = media.last().unwrap().1 - media.first().unwrap().1;
        if i + 1 < files.len() {
            assert!(span >= 1900, "file {i} spans {span} ms");
        }
        // ...and plays on its own.
        assert!(!framemd5_of_file(file).is_empty(), "file {i}");
        all.extend(media);
    }
    let want = frames(&flv_tags(&source));
    assert_eq!(all.len(), want.len(), "a tag lost or repeated across a cut");
    assert!(all == want, "the segments' tags differ from the source's");

    // The hook copied each complete file, whole.
    let deadline = tokio::time::Instant::now() + WAIT;
    while files_under(&done).len() < files.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            files_under(&done)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for file in &files {
        let copy = done.join(file.file_name().unwrap());
        assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(file).unwrap());
    }
    prism.stop().await;
    assert_logs_hide(&["alice-record-key", "bob-record-key"]);
    for d in [&dir, &done, &users] {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// A tmpfs of `size` mounted at `dir` for as long as it lives: a disk that fills
/// up. Unmounted (by path) when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> Self {
        let status = std::process::Command::new(require("mount"))
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mounting a tmpfs (the full disk of this test) needs root"
        );
        Self(dir.to_owned())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_or_an_unwritable_directory_stops_the_recording_and_nothing_else() {
    let dir = temp_dir("full");
    let disk = SmallDisk::mount(&dir, "160k");
    let sink = NginxSink::start("live").await;
    let prism = Prism::start_with(|c| {
        c.record.enabled = true;
        c.record.dir = dir.clone();
        point_preset(c, "youtube", sink.url());
    })
    .await;
    let source = clip(12);
    let key = "record-full-key";
    let publisher = publish(&source, &prism.url(&format!("live/{key}?youtube=full-yt")));
    prism.wait_live("live", key).await;
    let player = play_framemd5(&prism.url(&format!("live/{key}")));
    let recording = wait_recording(&prism, |r| r["state"] == "failed").await;
    let error = recording["error"].as_str().unwrap();
    assert!(error.contains("No space left on device"), "{error}");
    assert!(!error.contains(key), "{error}");
    let metrics = prism.metrics_text().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("prism_recording_failed{") && l.ends_with(" 1")),
        "{metrics}"
    );
    // The stream, its player and its destination went on to the end.
    let (exit, _) = finish(publisher).await;
    assert!(exit.success());
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_source_from_keyframe(&source, &parse_framemd5(&out));
    let recorded = recording_framemd5(&sink.recording("full-yt"));
    assert_source_from_keyframe(&source, &recorded);
    prism.stop().await;
    drop(disk);

    // A directory that cannot be made (a file is in the way).
    let blocked = temp_dir("blocked");
    std::fs::write(blocked.join("file"), "in the way").unwrap();
    let prism = Prism::start_with(|c| {
        c.record.enabled = true;
        c.record.dir = blocked.join("file").join("recordings");
    })
    .await;
    let publisher = publish(&test_flv(), &prism.url("live/record-blocked-key"));
    prism.wait_live("live", "record-blocked-key").await;
    let player = play_framemd5(&prism.url("live/record-blocked-key"));
    let recording = wait_recording(&prism, |r| r["state"] == "failed").await;
    assert!(
        recording["error"]
            .as_str()
            .unwrap()
            .contains("Not a directory"),
        "{recording}"
    );
    let (status, out) = finish(player).await;
    assert!(status.success());
    assert_source_from_keyframe(&test_flv(), &parse_framemd5(&out));
    let (exit, _) = finish(publisher).await;
    assert!(exit.success());
    prism.stop().await;
    let _ = std::fs::remove_dir_all(&blocked);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The frames of one stream (0 video, 1 audio) of a framemd5 listing.
fn of_stream(frames: &[Frame], stream: usize) -> Vec<Frame> {
    frames
        .iter()
        .filter(|f| f.stream == stream)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mp4_recording_holds_the_sources_frames_and_survives_a_sigkill_to_its_last_fragment() {
    // A whole broadcast: every frame of the source, as ffmpeg reads it.
    let dir = temp_dir("mp4");
    let prism = Prism::start_with(|c| {
        c.record.enabled = true;
        c.record.dir = dir.clone();
        c.record.format = prism::record::RecordFormat::Mp4;
    })
    .await;
    let source = test_flv();
    let publisher = publish(&source, &prism.url("live/record-mp4-key"));
    let (exit, _) = finish(publisher).await;
    assert!(exit.success());
    wait_gone(&prism, "record-mp4-key").await;
    prism.stop().await;
    let files = files_under(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_str().unwrap().ends_with("-0001.mp4"));
    let probe = ffprobe_video(&files[0]);
    assert_eq!((probe.width, probe.height), (320, 240), "{probe:?}");
    assert_eq!(framemd5_of_file(&files[0]), framemd5_of_file(&source));

    // prism killed mid-broadcast: the file plays up to its last fragment, and
    // what it holds is the source's beginning, frame for frame.
    let killed = temp_dir("mp4-killed");
    let config = format!(
        "[record]\nenabled = true\nformat = \"mp4\"\ndir = \"{}\"\n",
        killed.display()
    );
    let mut child = common::child::ChildPrism::start("record-mp4-kill", &config).await;
    let long = clip(20);
    let publisher = publish(&long, &child.url("live/record-kill-key"));
    tokio::time::sleep(Duration::from_secs(7)).await;
    let pid = libc::pid_t::try_from(child.pid()).unwrap();
    // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let _ = child.child.wait().await;
    let _ = finish(publisher).await;
    let files = files_under(&killed);
    assert_eq!(files.len(), 1, "{files:?}");
    let got = framemd5_of_file(&files[0]);
    let want = framemd5_of_file(&long);
    for stream in [0, 1] {
        let (got, want) = (of_stream(&got, stream), of_stream(&want, stream));
        assert!(got.len() >= 60, "stream {stream}: {} frames", got.len());
        assert!(got.len() < want.len(), "stream {stream}: the whole clip?");
        assert!(
            got == want[..got.len()],
            "stream {stream} differs from the source"
        );
    }
    for d in [&dir, &killed] {
        let _ = std::fs::remove_dir_all(d);
    }
}
