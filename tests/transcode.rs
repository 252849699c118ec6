//! Per-destination re-encoding: a destination with a profile gets its own ffmpeg
//! child, fed the stream as FLV and relayed from its output, while passthrough
//! destinations keep receiving the publisher's packets untouched. Real ffmpeg
//! publishers and encoders, real nginx-rtmp sinks, everything on 127.0.0.1;
//! every process this file starts is stopped by PID.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::sinks::{
    Ending, NginxSink, become_subreaper, children_of, comm_of, file_len, process_alive,
    process_state, reap, recording_framemd5, signal,
};
use common::*;
use prism::relay::status::State;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::{Instant, sleep};

/// Bound for anything the relay does on its own (connect, start an encoder).
const WAIT: Duration = Duration::from_secs(30);

/// Bound for a re-encoded destination to end once the publisher has: the encoder
/// may lag behind real time on a busy 2-core machine and drains its backlog first.
const ENCODE_DRAIN: Duration = Duration::from_secs(40);

const POLL: Duration = Duration::from_millis(50);

/// 8 s of 1920x1080 30 fps H.264 (2 s GOPs) and AAC: what a streamer's OBS sends
/// before prism scales it for Twitch. `ultrafast` and a moderate CRF keep both
/// generating it and decoding it in the encoder cheap.
fn clip_1080p() -> PathBuf {
    h264_clip(
        "tx-1080p-8s.flv",
        8,
        "testsrc2=size=1920x1080:rate=30",
        "-crf 28",
    )
}

/// 12 s of 640x360 30 fps H.264 (2 s GOPs) and AAC: long enough to kill an
/// encoder mid-stream and watch it come back.
fn clip_360p_12s() -> PathBuf {
    h264_clip("tx-360p-12s.flv", 12, "testsrc2=size=640x360:rate=30", "")
}

/// 6 s of 640x360 30 fps HEVC (2 s GOPs, no scene cuts) and AAC as enhanced FLV,
/// made with FFmpeg 9 (Debian's 5.1 has no enhanced FLV).
fn hevc_clip() -> PathBuf {
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=640x360:rate=30:duration=6",
    ];
    args.extend([
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=6",
    ]);
    args.extend(
        "-c:v libx265 -preset ultrafast -x265-params log-level=error:scenecut=0".split_whitespace(),
    );
    args.extend("-pix_fmt yuv420p -g 60 -c:a aac -b:a 64k -shortest".split_whitespace());
    generate(&ffmpeg9(), "tx-hevc-360p-6s.flv", &args)
}

/// Asserts keyframes 2 s apart (±10%), as the built-in profiles promise and
/// platforms ask for. The first gap is ignored: it depends on where in the
/// source the relay's feed began, not on the encoder's settings.
fn assert_keyframes_every_2s(keyframes: &[f64]) {
    let gaps: Vec<f64> = keyframes.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps.len() >= 2,
        "enough keyframes to measure their spacing: {keyframes:?}"
    );
    for gap in &gaps {
        assert!(
            (1.8..=2.2).contains(gap),
            "keyframes 2 s apart: gaps {gaps:?} (keyframes at {keyframes:?})"
        );
    }
}

/// Asserts that decode timestamps never go backwards: an ingest drops or
/// disconnects a stream whose timestamps jump back, so a restarted encoder must
/// not start the destination's clock over.
fn assert_monotonic(dts: &[f64]) {
    for (i, w) in dts.windows(2).enumerate() {
        assert!(
            w[1] >= w[0],
            "video timestamps go backwards at packet {}: {} -> {}",
            i + 1,
            w[0],
            w[1]
        );
    }
}

/// Bytes recorded of `stream` by a sink, all its recordings together.
fn recorded_bytes(sink: &NginxSink, stream: &str) -> u64 {
    sink.recordings(stream).iter().map(|p| file_len(p)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_720p_profile_re_encodes_while_passthrough_stays_bit_exact() {
    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
    })
    .await;
    let clip = clip_1080p();
    let publisher = publish(
        &clip,
        &prism.url("live/tx720?youtube=yt-tx720&twitch=tw-tx720&twitch_profile=720p30"),
    );

    let tw = prism
        .wait_destination("tx720", "twitch", "an encoder runs", |d| {
            encoder_pid(d).is_some()
        })
        .await;
    assert_eq!(tw.profile.as_deref(), Some("720p30"));
    let yt = prism
        .destination("tx720", "youtube")
        .expect("youtube is a destination");
    assert!(yt.encoder.is_none(), "passthrough has no encoder: {yt:#?}");
    // The encoder's progress is measured while it runs (the capacity figures in
    // the README come from `speed`), and a healthy run never restarts it.
    let tw = prism
        .wait_destination("tx720", "twitch", "encoder progress", |d| {
            d.encoder
                .as_ref()
                .is_some_and(|e| e.speed.is_some() && e.fps.is_some())
        })
        .await;
    assert_eq!(tw.encoder.as_ref().unwrap().restarts, 0, "{tw:#?}");

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");
    assert!(
        youtube.saw_clean_unpublish("yt-tx720").await,
        "youtube: FCUnpublish/deleteStream before close"
    );
    let frames = recording_framemd5(&youtube.recording("yt-tx720"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "youtube got the publisher's packets, untouched, from the first keyframe"
    );

    assert_eq!(
        twitch.wait_unpublished("tw-tx720", ENCODE_DRAIN).await,
        Ending::Clean,
        "twitch: a clean unpublish once the encoder drained"
    );
    let recording = twitch.recording("tw-tx720");
    let video = ffprobe_video(&recording);
    assert_eq!(video.codec, "h264", "{video:?}");
    assert_eq!((video.width, video.height), (1280, 720), "{video:?}");
    assert!((29.0..=31.0).contains(&video.fps), "30 fps: {video:?}");
    // All of the 8 s source, give or take the encoder's start.
    assert!(
        video.frames >= 7 * 30,
        "the whole clip re-encoded: {video:?}"
    );
    assert_keyframes_every_2s(&video.keyframes);
    assert_eq!(ffprobe_audio_codec(&recording), "aac");
    assert_logs_hide(&["yt-tx720", "tw-tx720"]);
    prism.stop().await;
}

/// HEVC cannot be checked on an nginx-rtmp sink: Debian's libnginx-mod-rtmp
/// 1.2.2 records an enhanced-RTMP HEVC publish (FFmpeg 9, `-c copy`) with its
/// audio only, because it reads the FourCC video tag's header byte as a legacy
/// codec id and never sees a keyframe (observed: 180 audio packets, no video
/// stream, where the source has 180 video and 283 audio packets). So the
/// passthrough leg goes to a second prism as its ingest, which passes enhanced
/// RTMP through, and an FFmpeg 9 player there hashes what arrived. The encoder
/// is FFmpeg 9 too: Debian's 5.1 cannot demux enhanced FLV ("Changing the codec
/// id midstream is not implemented", then a bogus vp6f stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hevc_is_delivered_as_h264_with_the_h264_profile_and_passed_through_untouched() {
    let ingest = Prism::start().await;
    let facebook = NginxSink::start("rtmp").await;
    let ffmpeg = ffmpeg9();
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", ingest.url("live2"));
        point_preset(c, "facebook", facebook.url());
        c.transcode.ffmpeg = ffmpeg.to_str().unwrap().to_owned();
    })
    .await;
    let clip = hevc_clip();
    let player = play_framemd5_using(&ffmpeg9(), &ingest.url("live2/yt-hevc"));
    ingest.wait_subscribers("live2", "yt-hevc", 1).await;
    let publisher = publish_using(
        &ffmpeg,
        &clip,
        &prism.url("live/hevctx?youtube=yt-hevc&facebook=fb-hevc&facebook_profile=h264"),
        &[],
    );
    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");

    let (exit, out) = finish(player).await;
    assert!(exit.success(), "player at the ingest: {exit}");
    let got = parse_framemd5(&out);
    let expected = framemd5_of_file_with(&ffmpeg, &clip);
    let track = |frames: &[Frame], stream: usize| -> Vec<Frame> {
        frames
            .iter()
            .filter(|f| f.stream == stream)
            .cloned()
            .collect()
    };
    assert!(!track(&got, 0).is_empty(), "HEVC video reached the ingest");
    assert_eq!(
        track(&got, 0),
        track(&expected, 0),
        "every HEVC packet relayed untouched, from the first keyframe"
    );
    let (src_audio, got_audio) = (track(&expected, 1), track(&got, 1));
    let skipped = src_audio
        .len()
        .checked_sub(got_audio.len())
        .expect("no extra audio");
    assert!(
        skipped <= 3,
        "at most the audio before the first keyframe is skipped ({skipped})"
    );
    assert_eq!(&src_audio[skipped..], &got_audio[..]);

    assert_eq!(
        facebook.wait_unpublished("fb-hevc", ENCODE_DRAIN).await,
        Ending::Clean,
        "facebook: a clean unpublish once the encoder drained"
    );
    let recording = facebook.recording("fb-hevc");
    let video = ffprobe_video(&recording);
    assert_eq!(video.codec, "h264", "HEVC delivered as H.264: {video:?}");
    assert_eq!((video.width, video.height), (640, 360), "source size kept");
    assert!((29.0..=31.0).contains(&video.fps), "30 fps: {video:?}");
    assert!(
        video.frames >= 5 * 30,
        "the whole clip re-encoded: {video:?}"
    );
    assert_eq!(ffprobe_audio_codec(&recording), "aac");
    prism.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_encoder_restarts_it_and_the_passthrough_loses_nothing() {
    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        c.transcode.restart_backoff_ms = 200;
    })
    .await;
    let clip = clip_360p_12s();
    let publisher = publish(
        &clip,
        &prism.url("live/txkill?youtube=yt-txkill&twitch=tw-txkill&twitch_profile=720p30"),
    );

    let first = prism
        .wait_destination("txkill", "twitch", "an encoder runs", |d| {
            encoder_pid(d).is_some()
        })
        .await;
    let killed = encoder_pid(&first).unwrap();
    // Kill it mid-stream, a few seconds after its output started reaching the
    // ingest, so that there is a timeline for the new encoder to continue.
    twitch.wait_recording("tw-txkill", 50_000, WAIT).await;
    sleep(Duration::from_secs(4)).await;
    assert_eq!(comm_of(killed).as_deref(), Some("ffmpeg"), "pid {killed}");
    signal(killed, libc::SIGKILL);

    let restarted = prism
        .wait_destination("txkill", "twitch", "the encoder restarts", |d| {
            d.encoder.as_ref().is_some_and(|e| e.restarts >= 1)
                && encoder_pid(d).is_some_and(|pid| pid != killed)
        })
        .await;
    assert!(
        !process_alive(killed),
        "the killed encoder was reaped: {killed}"
    );
    // The new encoder's output reaches the ingest: the recording keeps growing.
    let at_restart = recorded_bytes(&twitch, "tw-txkill");
    let deadline = Instant::now() + WAIT;
    while recorded_bytes(&twitch, "tw-txkill") < at_restart + 50_000 {
        assert!(
            Instant::now() < deadline,
            "twitch's recording stopped growing after the restart ({at_restart} bytes); \
             status: {:#?}",
            prism.destination("txkill", "twitch")
        );
        sleep(POLL).await;
    }
    assert_ne!(restarted.state, State::Failed, "{restarted:#?}");

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "the publisher never noticed: {exit}");
    assert!(
        youtube.saw_clean_unpublish("yt-txkill").await,
        "youtube: a clean unpublish"
    );
    let frames = recording_framemd5(&youtube.recording("yt-txkill"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "the passthrough got every packet across the encoder's death"
    );
    assert_eq!(
        twitch.wait_unpublished("tw-txkill", ENCODE_DRAIN).await,
        Ending::Clean,
        "twitch: the destination carried on to a clean unpublish"
    );
    let recording = twitch.recording("tw-txkill");
    let video = ffprobe_video(&recording);
    assert_eq!(video.codec, "h264", "{video:?}");
    assert_eq!((video.width, video.height), (1280, 720), "{video:?}");
    assert_monotonic(&video.dts);
    prism.stop().await;
}

/// A prism binary running as `prism serve --config FILE`, killed on drop.
struct PrismProcess {
    child: tokio::process::Child,
    addr: String,
}

impl PrismProcess {
    async fn start(config: &Path) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_prism"))
            .args(["serve", "--rtmp", "127.0.0.1:0", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("prism starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(WAIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                eprintln!("prism: {line}");
                if let Some(rest) = line.split("rtmp_addr=").nth(1) {
                    return rest.split_whitespace().next().unwrap().to_owned();
                }
            }
            panic!("prism exited without logging its address");
        })
        .await
        .expect("prism logs its listen address");
        // Keep draining (and showing) stderr so prism never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("prism: {line}");
            }
        });
        Self { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("prism runs")
    }

    /// prism's ffmpeg children right now.
    fn encoders(&self) -> Vec<u32> {
        children_of(self.pid())
            .into_iter()
            .filter(|&pid| comm_of(pid).as_deref() == Some("ffmpeg"))
            .collect()
    }
}

/// Encoder PIDs a test saw; any still alive when it ends (the test failed) are
/// killed and reaped, so a failing test leaks no ffmpeg. Only processes still
/// named ffmpeg are touched, so a PID reused meanwhile is left alone.
struct Encoders(Vec<u32>);

impl Encoders {
    /// Waits up to `grace` for every encoder to be gone, reaping those that were
    /// orphaned to this process (a child subreaper) as they die. Returns the ones
    /// still alive.
    async fn wait_gone(&mut self, grace: Duration) -> Vec<u32> {
        let deadline = Instant::now() + grace;
        loop {
            self.0.retain(|&pid| match process_state(pid) {
                None => false,
                Some('Z' | 'X') => {
                    let raw = libc::pid_t::try_from(pid).unwrap();
                    let mut status = 0;
                    // SAFETY: waitpid(2) writes only to `status`. ECHILD (not
                    // ours: its parent reaps it) is fine; the process is dead.
                    unsafe { libc::waitpid(raw, &mut status, libc::WNOHANG) };
                    false
                }
                Some(_) => true,
            });
            if self.0.is_empty() || Instant::now() >= deadline {
                return self.0.clone();
            }
            sleep(POLL).await;
        }
    }
}

impl Drop for Encoders {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if process_alive(pid) && comm_of(pid).as_deref() == Some("ffmpeg") {
                eprintln!("killing leftover encoder {pid}");
                signal(pid, libc::SIGKILL);
                reap(pid);
            }
        }
    }
}

/// Runs the prism binary with `config`, publishes with two re-encoded
/// destinations, waits until both encoders feed their sinks, sends `sig` to
/// prism, and returns the encoders still alive `grace` after prism is gone.
async fn encoders_left_after(
    config: &Path,
    youtube: &NginxSink,
    twitch: &NginxSink,
    tag: &str,
    sig: libc::c_int,
    grace: Duration,
) -> Vec<u32> {
    let mut prism = PrismProcess::start(config).await;
    let (yt, tw) = (format!("yt-{tag}"), format!("tw-{tag}"));
    let url = format!(
        "rtmp://{}/live/{tag}?youtube={yt}&youtube_profile=h264&twitch={tw}&twitch_profile=h264",
        prism.addr
    );
    let publisher = publish(&clip(20), &url);
    youtube.wait_recording(&yt, 20_000, WAIT).await;
    twitch.wait_recording(&tw, 20_000, WAIT).await;
    let mut encoders = Encoders(prism.encoders());
    assert_eq!(
        encoders.0.len(),
        1,
        "one ffmpeg child for the profile both destinations share: {:?}",
        encoders.0
    );

    signal(prism.pid(), sig);
    let status = tokio::time::timeout(Duration::from_secs(10), prism.child.wait())
        .await
        .expect("prism exits within 10 s")
        .unwrap();
    if sig == libc::SIGTERM {
        assert!(status.success(), "a clean exit on SIGTERM: {status}");
    }
    let left = encoders.wait_gone(grace).await;
    drop(publisher);
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_encoder_survives_prism() {
    // Orphaned encoders become this process's children, to be seen and reaped.
    become_subreaper();
    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prism.toml");
    std::fs::write(
        &config,
        format!(
            // The slate's render is an ffmpeg child too: off, so that the
            // children counted are the encoders.
            "[standby]\nenabled = false\n\n[presets.youtube]\nurl = \"{}\"\n\n\
             [presets.twitch]\nurl = \"{}\"\n",
            youtube.url(),
            twitch.url()
        ),
    )
    .unwrap();

    // SIGTERM: prism stops its encoders before it exits (a moment's grace for
    // the last SIGCHLD).
    let left = encoders_left_after(
        &config,
        &youtube,
        &twitch,
        "txterm",
        libc::SIGTERM,
        Duration::from_secs(1),
    )
    .await;
    assert!(
        left.is_empty(),
        "encoders outlived prism's SIGTERM: {left:?}"
    );

    // SIGKILL: prism can do nothing, so its encoders must notice on their own
    // (parent-death signal, or EOF on stdin and EPIPE on stdout).
    let left = encoders_left_after(
        &config,
        &youtube,
        &twitch,
        "txkill9",
        libc::SIGKILL,
        Duration::from_secs(5),
    )
    .await;
    assert!(
        left.is_empty(),
        "encoders outlived prism's SIGKILL: {left:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ffmpeg_fails_only_that_destination() {
    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        c.transcode.ffmpeg = "/nonexistent/ffmpeg".to_owned();
    })
    .await;
    let clip = test_flv();
    let publisher = publish(
        &clip,
        &prism.url("live/txmissing?youtube=yt-txmissing&twitch=tw-txmissing&twitch_profile=h264"),
    );
    let tw = prism
        .wait_destination("txmissing", "twitch", "an error is recorded", |d| {
            assert_ne!(d.state, State::Live, "no encoder, yet live: {d:#?}");
            d.last_error.is_some()
        })
        .await;
    let error = tw.last_error.unwrap();
    assert!(
        error.to_lowercase().contains("ffmpeg"),
        "the error names what is missing: {error}"
    );
    // It stays down for the rest of the stream.
    while !publisher_done(&prism, "txmissing") {
        if let Some(d) = prism.destination("txmissing", "twitch") {
            assert_ne!(d.state, State::Live, "no encoder, yet live: {d:#?}");
        }
        sleep(POLL).await;
    }

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");
    assert!(youtube.saw_clean_unpublish("yt-txmissing").await);
    let frames = recording_framemd5(&youtube.recording("yt-txmissing"));
    assert_eq!(
        assert_source_from_keyframe(&clip, &frames),
        0,
        "the passthrough got every packet"
    );
    for recording in twitch.recordings("tw-txmissing") {
        let probe = std::process::Command::new(require("ffprobe"))
            .args(["-v", "error", "-show_entries", "stream=codec_type"])
            .args(["-of", "csv=p=0"])
            .arg(&recording)
            .output()
            .expect("ffprobe runs");
        assert!(
            !String::from_utf8_lossy(&probe.stdout).contains("video"),
            "no media reached twitch without an encoder: {recording:?}"
        );
    }
    prism.stop().await;
}

/// Whether the stream has ended (its destinations are gone from the status).
fn publisher_done(prism: &Prism, stream: &str) -> bool {
    !prism.hub().is_live("live", stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_encoder_limit_a_destination_waits_and_the_rest_carry_on() {
    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let kick = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        point_preset(c, "kick", kick.url());
        c.transcode.max_encoders = 1;
        c.profiles.insert("small".into(), light_profile(120, 200));
    })
    .await;
    let clip = clip(12);
    let publisher = publish(
        &clip,
        &prism.url("live/txlimit?youtube=yt-txlimit&twitch=tw-txlimit&twitch_profile=h264"),
    );
    // A second profile asked for once the first encoder runs gets an encoder
    // (an ffmpeg process) of its own: past the limit, it waits.
    prism
        .wait_destination("txlimit", "twitch", "live from its encoder", |d| {
            d.state == State::Live
        })
        .await;
    let relay = prism.app.as_ref().unwrap().relay();
    let stream = relay
        .find("live", &relay.streams()[0].display_name())
        .unwrap();
    let kick_request = serde_json::from_value(serde_json::json!({
        "id": "kick", "preset": "kick", "key": "kk-txlimit", "profile": "small"
    }))
    .unwrap();
    relay.add_destination(&stream, kick_request).unwrap();
    let deadline = Instant::now() + WAIT;
    let waiting = loop {
        let all = relay.destinations("live", "txlimit");
        let encoding = all.iter().filter(|d| encoder_pid(d).is_some()).count();
        assert!(encoding <= 1, "at most max_encoders encoders: {all:#?}");
        let waiting: Vec<_> = all
            .iter()
            .filter(|d| d.state == State::WaitingForEncoder)
            .cloned()
            .collect();
        if encoding == 1 && waiting.len() == 1 {
            break waiting[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "one encoder running and one destination waiting: {all:#?}"
        );
        sleep(POLL).await;
    };
    assert!(encoder_pid(&waiting).is_none(), "{waiting:#?}");

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");
    assert!(youtube.saw_clean_unpublish("yt-txlimit").await);
    let frames = recording_framemd5(&youtube.recording("yt-txlimit"));
    assert_eq!(assert_source_from_keyframe(&clip, &frames), 0);
    // The destination that got the encoder delivered the stream.
    assert_eq!(waiting.id, "kick", "the later encoder waits: {waiting:#?}");
    let (encoded, key) = (&twitch, "tw-txlimit");
    assert_eq!(
        encoded.wait_unpublished(key, ENCODE_DRAIN).await,
        Ending::Clean
    );
    assert_eq!(ffprobe_video(&encoded.recording(key)).codec, "h264");
    prism.stop().await;
}

/// Three destinations of one stream on one profile share ONE encoder: one
/// ffmpeg child, the same process in each destination's status, and the same
/// encoded frames at every ingest. Removing one leaves the encoder to the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_on_one_profile_share_one_encoder() {
    let sinks = [
        NginxSink::start("live2").await,
        NginxSink::start("app").await,
        NginxSink::start("app").await,
    ];
    let prism = Prism::start_with(|c| {
        for (preset, sink) in ["youtube", "twitch", "kick"].into_iter().zip(&sinks) {
            point_preset(c, preset, sink.url());
        }
        c.profiles.insert("small".into(), light_profile(120, 200));
    })
    .await;
    let clip = clip(12);
    let publisher = publish(
        &clip,
        &prism.url(
            "live/txshare?youtube=yt-share&youtube_profile=small&twitch=tw-share\
             &twitch_profile=small&kick=kk-share&kick_profile=small",
        ),
    );
    let mut pids = Vec::new();
    for id in ["youtube", "twitch", "kick"] {
        let d = prism
            .wait_destination("txshare", id, "its encoder runs", |d| {
                encoder_pid(d).is_some()
            })
            .await;
        pids.push(encoder_pid(&d).unwrap());
    }
    assert!(pids.iter().all(|p| *p == pids[0]), "one encoder: {pids:?}");
    // The destinations started in turn, each taking the running encoder.
    let relay = prism.app.as_ref().unwrap().relay();
    let stream = relay
        .find("live", &relay.streams()[0].display_name())
        .unwrap();
    relay.remove_destination(&stream, "kick").unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let still = prism.destination("txshare", "youtube").unwrap();
    assert_eq!(
        encoder_pid(&still),
        Some(pids[0]),
        "the others keep the encoder"
    );

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");
    let mut videos = Vec::new();
    for (sink, key) in sinks.iter().zip(["yt-share", "tw-share"]) {
        assert_eq!(
            sink.wait_unpublished(key, ENCODE_DRAIN).await,
            Ending::Clean
        );
        let frames: Vec<Frame> = recording_framemd5(&sink.recording(key))
            .into_iter()
            .filter(|f| f.stream == 0)
            .collect();
        assert!(frames.len() > 200, "{key}: {} frames", frames.len());
        videos.push(frames);
    }
    // One encode: the frames one ingest got are a run of what the other got
    // (they may have joined the encoder's output a keyframe apart).
    let (a, b) = (&videos[0], &videos[1]);
    let (longer, shorter) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let start = longer
        .iter()
        .position(|f| *f == shorter[0])
        .expect("the same encoded frames at both ingests");
    assert_eq!(&longer[start..start + shorter.len()], &shorter[..]);
    prism.stop().await;
}

/// Not a pass/fail test but the measurement behind README's "Re-encoding
/// capacity": a 30 s 1920x1080 30 fps source (testsrc2, about 6 Mbit/s) is
/// published in real time with 1, 2, then 3 destinations, each on its own copy
/// of the built-in `720p30` profile (so one encoder each), all into one
/// nginx-rtmp sink, and every encoder's `speed`
/// and `fps` (ffmpeg's `-progress`, as the status shows them) are sampled once
/// a second. ffmpeg's speed is its output time over wall time since it started,
/// so with a real-time input it stays near 1.0 while the encoder keeps up and
/// sinks below as it falls behind; the drain time (publisher done to the last
/// re-encoded unpublish) shows the backlog. Run it alone, on an idle machine:
/// `cargo test --release --test transcode re_encoding_capacity -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 2 minutes of full CPU; run it alone (see its doc comment)"]
async fn re_encoding_capacity() {
    const PRESETS: [&str; 3] = ["youtube", "twitch", "facebook"];
    let sink = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        for preset in PRESETS {
            point_preset(c, preset, sink.url());
        }
        c.transcode.max_encoders = PRESETS.len();
        // One profile per destination, each the built-in 720p30: destinations on
        // one profile would share one encoder, and this measures N encoders.
        let builtin = prism::transcode::profile::builtins()["720p30"].clone();
        for preset in PRESETS {
            c.profiles
                .insert(format!("720p30-{preset}"), builtin.clone());
        }
    })
    .await;
    let clip = h264_clip(
        "tx-1080p-30s-6M.flv",
        30,
        "testsrc2=size=1920x1080:rate=30",
        "-b:v 6M -maxrate 6M -bufsize 12M",
    );
    let mut report = Vec::new();
    for n in 1..=PRESETS.len() {
        let stream = format!("cap{n}");
        let query: Vec<String> = PRESETS[..n]
            .iter()
            .map(|p| format!("{p}=k-{stream}-{p}&{p}_profile=720p30-{p}"))
            .collect();
        let publisher = publish(
            &clip,
            &prism.url(&format!("live/{stream}?{}", query.join("&"))),
        );
        prism.wait_live("live", &stream).await;
        let started = Instant::now();
        let cpu_before = (machine_busy_secs(), own_cpu_secs());
        // (speed, fps) per destination: the last sample, and the lowest from 10 s on.
        let mut last = vec![(0.0, 0.0); n];
        let mut lowest = vec![(f64::INFINITY, f64::INFINITY); n];
        while prism.hub().is_live("live", &stream) {
            let status = prism
                .app
                .as_ref()
                .unwrap()
                .relay()
                .destinations("live", &stream);
            for (i, d) in status.iter().enumerate().take(n) {
                if let Some(e) = &d.encoder
                    && let (Some(speed), Some(fps)) = (e.speed, e.fps)
                {
                    last[i] = (speed, fps);
                    if started.elapsed() > Duration::from_secs(10) {
                        lowest[i] = (lowest[i].0.min(speed), lowest[i].1.min(fps));
                    }
                }
            }
            sleep(Duration::from_secs(1)).await;
        }
        let done = Instant::now();
        let (exit, _) = finish(publisher).await;
        assert!(exit.success(), "publisher: {exit}");
        for p in &PRESETS[..n] {
            let key = format!("k-{stream}-{p}");
            assert_eq!(
                sink.wait_unpublished(&key, Duration::from_secs(120)).await,
                Ending::Clean
            );
        }
        let drain = done.elapsed();
        // CPU time the machine spent on anything but this test and its children
        // (reaped encoders included), as a share of both cores: a noisy
        // measurement says so.
        let wall = started.elapsed().as_secs_f64();
        let foreign = (machine_busy_secs() - cpu_before.0) - (own_cpu_secs() - cpu_before.1);
        let line = format!(
            "{n} encoder(s): speed at end {:?}, lowest speed/fps after 10 s {:?}, drain {:.1} s, \
             other processes {:.0}% of the CPU",
            last.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            lowest,
            drain.as_secs_f64(),
            100.0 * foreign.max(0.0) / (wall * cores())
        );
        eprintln!("CAPACITY {line}");
        report.push(line);
    }
    eprintln!("CAPACITY summary:\n{}", report.join("\n"));
    prism.stop().await;
}

/// Seconds all CPUs have been busy since boot (/proc/stat: everything but idle
/// and iowait).
fn machine_busy_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    let busy: u64 = cpu.iter().sum::<u64>() - cpu[3] - cpu[4];
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    busy as f64 / ticks as f64
}

/// CPU seconds used by this process and its reaped children.
fn own_cpu_secs() -> f64 {
    let secs = |who| {
        // SAFETY: rusage is plain integers, valid all-zero, and getrusage writes
        // only into it.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(who, &mut usage);
            usage
        };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(usage.ru_utime) + t(usage.ru_stime)
    };
    secs(libc::RUSAGE_SELF) + secs(libc::RUSAGE_CHILDREN)
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// The NUL-separated arguments of a process, joined with spaces ("" once it is gone).
fn cmdline_of(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// `GET path` on prism's HTTP API, as text.
async fn http_text(prism: &Prism, path: &str) -> String {
    let addr = prism.app.as_ref().unwrap().http_addr();
    let response = common::http_client()
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert!(response.status().is_success(), "GET {path}: {response:?}");
    response.text().await.unwrap()
}

/// Everything of a full run with a re-encoded destination that could carry a stream
/// key: prism's own log (debug level), every byte its ffmpeg encoder wrote to stderr
/// (prism parses the progress lines and logs at most 20 others a minute, so the
/// encoder runs through a `bash` wrapper that `exec`s the real ffmpeg with a copy
/// of its stderr going to a file), the encoder's command line and environment read
/// from /proc while it runs (across a restart: the encoder is killed once), the
/// status JSON and /metrics, during the run and after. A destination whose ingest
/// is down adds connection errors to the log and status. None of it may contain
/// the publisher's stream key or a destination's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stream_key_reaches_logs_encoder_output_command_lines_status_or_metrics() {
    const PUBLISHER_KEY: &str = "pubkey-k7Qx93LmZ";
    const YOUTUBE_KEY: &str = "ytkey-4Hq8Wz2Rn";
    const TWITCH_KEY: &str = "live_871234_twkeyP3sT9";
    const FACEBOOK_KEY: &str = "FB-9911-fbkeyA8d";
    let keys = [PUBLISHER_KEY, YOUTUBE_KEY, TWITCH_KEY, FACEBOOK_KEY];

    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("tx-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stderr_copy = dir.join("encoder-stderr.log");
    let wrapper = dir.join("ffmpeg-tee");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/bash\n# The real ffmpeg, its stderr also appended to a file.\n\
             exec {} \"$@\" 2> >(tee -a {} >&2)\n",
            require("ffmpeg").display(),
            stderr_copy.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // An ingest that is down: a port that was free a moment ago.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let youtube = NginxSink::start("live2").await;
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "youtube", youtube.url());
        point_preset(c, "twitch", twitch.url());
        point_preset(c, "facebook", format!("rtmp://127.0.0.1:{dead_port}/rtmp"));
        c.transcode.ffmpeg = wrapper.to_str().unwrap().to_owned();
        c.transcode.restart_backoff_ms = 200;
        c.relay.backoff_initial_ms = 200;
    })
    .await;
    let clip = clip_360p_12s();
    let publisher = publish(
        &clip,
        &prism.url(&format!(
            "live/{PUBLISHER_KEY}?youtube={YOUTUBE_KEY}&twitch={TWITCH_KEY}\
             &twitch_profile=h264&facebook={FACEBOOK_KEY}"
        )),
    );

    prism.wait_live("live", PUBLISHER_KEY).await;
    // What the run exposes, collected as it goes.
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut encoders = Vec::new();
    let mut killed = false;
    let mut grown_from = None;
    loop {
        assert!(
            prism.hub().is_live("live", PUBLISHER_KEY),
            "the stream ended before the encoder was restarted and ran again"
        );
        if let Some(pid) = prism
            .destination(PUBLISHER_KEY, "twitch")
            .as_ref()
            .and_then(encoder_pid)
            .filter(|pid| !encoders.contains(pid))
        {
            // The wrapper `exec`s ffmpeg: wait for the PID to show ffmpeg's arguments.
            let deadline = Instant::now() + WAIT;
            let cmdline = loop {
                let cmdline = cmdline_of(pid);
                if cmdline.contains("pipe:0") || Instant::now() >= deadline {
                    break cmdline;
                }
                sleep(Duration::from_millis(10)).await;
            };
            assert!(
                cmdline.contains("-f flv -i pipe:0") && cmdline.contains("pipe:3"),
                "encoder {pid}'s command line: {cmdline:?}"
            );
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            seen.push((format!("encoder {pid} command line"), cmdline));
            seen.push((
                format!("encoder {pid} environment"),
                String::from_utf8_lossy(&environ).into_owned(),
            ));
            encoders.push(pid);
        }
        if encoders.len() == 1 && !killed && recorded_bytes(&twitch, TWITCH_KEY) > 50_000 {
            // A restart adds the failure to the log and the status, and a second
            // command line.
            signal(encoders[0], libc::SIGKILL);
            killed = true;
        }
        if encoders.len() >= 2 {
            // Until the second encoder's output has reached the ingest.
            let bytes = recorded_bytes(&twitch, TWITCH_KEY);
            if bytes >= *grown_from.get_or_insert(bytes) + 50_000 {
                break;
            }
        }
        seen.push(("status".into(), http_text(&prism, "/api/v1/streams").await));
        seen.push(("metrics".into(), http_text(&prism, "/metrics").await));
        sleep(Duration::from_millis(200)).await;
    }
    assert!(encoders.len() >= 2, "the encoder ran twice: {encoders:?}");
    let facebook = prism
        .destination(PUBLISHER_KEY, "facebook")
        .expect("facebook is a destination");
    assert!(
        facebook.last_error.is_some(),
        "the dead ingest left an error: {facebook:#?}"
    );
    let status = http_text(&prism, "/api/v1/streams").await;
    assert!(
        status.contains("\"twitch\"")
            && status.contains("\"facebook\"")
            && status.contains("last_error"),
        "the status shows the destinations and the error: {status}"
    );
    let name = serde_json::from_str::<serde_json::Value>(&status).unwrap()["streams"][0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    seen.push((
        "stream status".into(),
        http_text(&prism, &format!("/api/v1/streams/live/{name}")).await,
    ));
    seen.push(("status".into(), status));

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");
    assert!(youtube.saw_clean_unpublish(YOUTUBE_KEY).await);
    assert_eq!(
        twitch.wait_unpublished(TWITCH_KEY, ENCODE_DRAIN).await,
        Ending::Clean
    );
    seen.push((
        "status after".into(),
        http_text(&prism, "/api/v1/streams").await,
    ));
    seen.push(("metrics after".into(), http_text(&prism, "/metrics").await));
    prism.stop().await;

    let stderr = std::fs::read_to_string(&stderr_copy).expect("the encoders' stderr was copied");
    assert!(
        stderr.matches("progress=").count() >= 2,
        "the copy holds the encoders' output: {stderr}"
    );
    seen.push(("encoder stderr".into(), stderr));
    let logs = captured_logs();
    assert!(
        logs.contains("encoder started") && logs.contains("encoder failed"),
        "the log covers the encoder's start and failure"
    );
    seen.push(("prism's log".into(), logs));
    for (what, text) in &seen {
        for key in keys {
            assert!(!text.contains(key), "a stream key appears in the {what}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
