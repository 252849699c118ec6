//! The ingest stand-ins of the relay tests, proven against real ffmpeg with no
//! prism involved: nginx-rtmp records what it receives bit for bit, tells a clean
//! unpublish from a dropped publisher, survives a kill and restart on its port,
//! and stunnel in front of it serves RTMPS with a certificate rustls accepts.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::sinks::*;
use common::*;
use tokio::process::Child;

/// Each test is bounded well below 30 s; the 6 s clip is published in real time.
const STEP: Duration = Duration::from_secs(10);

/// `ffmpeg -re -i FILE -c copy -f flv rtmps://...`, verifying the server against `ca`.
fn publish_rtmps(file: &Path, url: &str, ca: &Path) -> Child {
    publish_with(
        file,
        url,
        &["-tls_verify", "1", "-ca_file", ca.to_str().unwrap()],
    )
}

/// Waits for a publisher to exit; it must succeed.
async fn publisher_succeeds(child: Child) {
    let (status, _) = tokio::time::timeout(STEP, finish(child))
        .await
        .expect("the publisher ends in time");
    assert!(status.success(), "publisher exited cleanly: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_publish_is_recorded_bit_exact_and_ends_clean() {
    let clip = test_flv();
    let sink = NginxSink::start("live2").await;
    let publisher = publish(&clip, &sink.stream_url("key-a"));
    sink.wait_publishing("key-a", STEP).await;
    let worker = sink.worker_pids()[0];
    assert!(process_rss_kib(worker) > 0, "the worker's RSS is readable");
    publisher_succeeds(publisher).await;

    assert!(sink.saw_clean_unpublish("key-a").await);
    let publishes = sink.publishes("key-a");
    assert_eq!(publishes.len(), 1, "{publishes:?}");
    let recordings = sink.recordings("key-a");
    assert_eq!(recordings.len(), 1, "{recordings:?}");
    let start = assert_source_from_keyframe(&clip, &recording_framemd5(&recordings[0]));
    assert_eq!(start, 0, "the whole clip is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtmps_through_stunnel_is_recorded_bit_exact() {
    let clip = test_flv();
    let sink = NginxSink::start("app").await;
    let front = StunnelFront::start(sink.port()).await;
    assert!(front.url("app").starts_with("rtmps://localhost:"));
    let url = format!("{}/key-b", front.url("app"));
    publisher_succeeds(publish_rtmps(&clip, &url, &front.ca_pem_path())).await;

    assert!(sink.saw_clean_unpublish("key-b").await);
    let recording = sink.recording("key-b");
    let start = assert_source_from_keyframe(&clip, &recording_framemd5(&recording));
    assert_eq!(start, 0, "the whole clip is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stunnel_certificate_is_accepted_by_rustls_for_localhost_and_its_ip() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};

    let sink = NginxSink::start("app").await;
    let front = StunnelFront::start(sink.port()).await;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(front.ca_pem_path()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    assert_eq!(roots.len(), 1, "ca.pem holds the CA only");
    let config = Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let connector = tokio_rustls::TlsConnector::from(config);
    for name in ["localhost", "127.0.0.1"] {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", front.port()))
            .await
            .unwrap();
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        tokio::time::timeout(STEP, connector.connect(server_name, tcp))
            .await
            .expect("handshake in time")
            .unwrap_or_else(|e| panic!("rustls accepts the certificate for {name}: {e}"));
    }
    // A name the certificate is not for is refused: the check above means something.
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", front.port()))
        .await
        .unwrap();
    let other = ServerName::try_from("example.com").unwrap();
    assert!(connector.connect(other, tcp).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sink_restarts_on_its_port_and_records_again() {
    let clip = test_flv();
    let mut sink = NginxSink::start("live2").await;
    let port = sink.port();
    let first = publish(&clip, &sink.stream_url("key-c"));
    sink.wait_publishing("key-c", STEP).await;
    let partial = sink.wait_recording("key-c", 20_000, STEP).await;
    let master = sink.master_pid().unwrap();
    let workers = sink.worker_pids();
    assert_eq!(workers.len(), 1, "worker_processes 1");

    sink.kill();
    for pid in workers.iter().chain([&master]) {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "nginx process {pid} is gone (and reaped)"
        );
    }
    let (status, _) = tokio::time::timeout(STEP, finish(first))
        .await
        .expect("the first publisher notices");
    assert!(!status.success(), "the first publisher lost its sink");
    assert_eq!(
        sink.wait_unpublished("key-c", STEP).await,
        Ending::SinkKilled
    );

    sink.restart().await;
    assert_eq!(sink.port(), port, "same port after restart");
    publisher_succeeds(publish(&clip, &sink.stream_url("key-c"))).await;
    assert!(sink.saw_clean_unpublish("key-c").await);

    let recordings = sink.recordings("key-c");
    assert_eq!(recordings.len(), 2, "{recordings:?}");
    assert_eq!(recordings[0], partial, "the first run's recording is kept");
    // The first recording is the start of the clip, cut short by the kill.
    let source = framemd5_of_file(&clip);
    let cut = recording_framemd5(&recordings[0]);
    let video = |frames: &[Frame]| -> Vec<Frame> {
        frames.iter().filter(|f| f.stream == 0).cloned().collect()
    };
    let (source_video, cut_video) = (video(&source), video(&cut));
    assert!(!cut_video.is_empty() && cut_video.len() < source_video.len());
    assert_eq!(cut_video[..], source_video[..cut_video.len()]);
    let start = assert_source_from_keyframe(&clip, &recording_framemd5(&recordings[1]));
    assert_eq!(start, 0, "the second publish is recorded whole");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_killed_mid_stream_is_not_a_clean_unpublish() {
    let clip = test_flv();
    let sink = NginxSink::start("live2").await;
    let mut publisher = publish(&clip, &sink.stream_url("key-d"));
    sink.wait_publishing("key-d", STEP).await;
    sink.wait_recording("key-d", 20_000, STEP).await;
    publisher.start_kill().unwrap(); // SIGKILL, by PID
    publisher.wait().await.unwrap();

    assert_eq!(sink.wait_unpublished("key-d", STEP).await, Ending::Dropped);
    assert!(!sink.saw_clean_unpublish("key-d").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_sink_records_nothing_until_resumed() {
    let clip = test_flv();
    let mut sink = NginxSink::start("live2").await;
    let publisher = publish(&clip, &sink.stream_url("key-e"));
    sink.wait_publishing("key-e", STEP).await;
    let recording = sink.wait_recording("key-e", 20_000, STEP).await;

    sink.stop_reading().await;
    let frozen = std::fs::metadata(&recording).unwrap().len();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        std::fs::metadata(&recording).unwrap().len(),
        frozen,
        "a stopped worker writes nothing"
    );
    sink.resume();
    publisher_succeeds(publisher).await;

    assert!(sink.saw_clean_unpublish("key-e").await);
    let start = assert_source_from_keyframe(&clip, &recording_framemd5(&recording));
    assert_eq!(start, 0, "nothing is lost across the stall");
}
