//! Publish authorization by HTTP callback (`[auth] publish_url`), against a real
//! HTTP service written here (axum on 127.0.0.1:0) that records every request and
//! answers as each test tells it, with real ffmpeg publishers and players and real
//! nginx-rtmp ingests.

mod common;

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::sinks::{NginxSink, StunnelFront, recording_framemd5};
use common::*;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);

/// The service's token in the callback URL: it must never be logged.
const TOKEN: &str = "cb-token-secret-77";

/// How the service answers.
#[derive(Clone)]
enum Reply {
    /// This status and body (JSON content type when the body is not empty).
    Answer(u16, String),
    /// Accepts the request and never answers.
    Never,
}

/// One request the service received.
#[derive(Debug, Clone)]
struct Request {
    /// Path and query.
    uri: String,
    content_type: String,
    body: serde_json::Value,
    at: Instant,
}

#[derive(Clone)]
struct Service {
    reply: Arc<Mutex<Reply>>,
    requests: Arc<Mutex<Vec<Request>>>,
}

/// The operator's authorization service, on 127.0.0.1:0. Its task ends when the
/// value is dropped.
struct Callback {
    addr: SocketAddr,
    service: Service,
    task: tokio::task::JoinHandle<()>,
}

impl Callback {
    async fn start(reply: Reply) -> Self {
        let service = Service {
            reply: Arc::new(Mutex::new(reply)),
            requests: Arc::new(Mutex::new(Vec::new())),
        };
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(service.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            addr,
            service,
            task,
        }
    }

    /// The callback URL, with the service's token in its query.
    fn url(&self) -> String {
        format!("http://{}/rtmp/publish?token={TOKEN}", self.addr)
    }

    fn set_reply(&self, reply: Reply) {
        *self.service.reply.lock().unwrap() = reply;
    }

    fn requests(&self) -> Vec<Request> {
        self.service.requests.lock().unwrap().clone()
    }

    /// Waits until the service has received `n` requests.
    async fn wait_requests(&self, n: usize) -> Vec<Request> {
        let deadline = Instant::now() + WAIT;
        loop {
            let requests = self.requests();
            if requests.len() >= n {
                return requests;
            }
            assert!(
                Instant::now() < deadline,
                "{} requests, wanted {n}",
                requests.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    State(service): State<Service>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    service.requests.lock().unwrap().push(Request {
        uri: uri.to_string(),
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        at: Instant::now(),
    });
    let reply = service.reply.lock().unwrap().clone();
    match reply {
        Reply::Answer(status, body) => {
            let status = StatusCode::from_u16(status).unwrap();
            if body.is_empty() {
                status.into_response()
            } else {
                (status, [("content-type", "application/json")], body).into_response()
            }
        }
        Reply::Never => std::future::pending().await,
    }
}

/// Publishes `file` with ffmpeg and returns how it ended and what it printed
/// (ffmpeg prints a refusal's description as "Server error: ...").
async fn publish_and_capture(file: &std::path::Path, url: &str) -> (ExitStatus, String) {
    let mut child = tokio::process::Command::new(require("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "flv", url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg starts");
    let mut stderr = child.stderr.take().unwrap();
    let run = async {
        let mut text = String::new();
        stderr.read_to_string(&mut text).await.unwrap();
        (child.wait().await.unwrap(), text)
    };
    tokio::time::timeout(CHILD_TIMEOUT, run)
        .await
        .expect("ffmpeg ends in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_publish_is_played_exactly_and_the_callback_gets_app_key_address_and_query() {
    let callback = Callback::start(Reply::Answer(200, String::new())).await;
    let prism = Prism::start_with(|c| c.auth.publish_url = Some(callback.url())).await;
    let clip = test_flv();
    let key = "auth-allowed-key-1";
    let player = play_framemd5(&prism.url(&format!("live/{key}")));
    prism.wait_subscribers("live", key, 1).await;
    assert!(callback.requests().is_empty(), "playing asks nobody");

    let publisher = publish(&clip, &prism.url(&format!("live/{key}?room=blue&n=2")));
    let (status, _) = finish(publisher).await;
    assert!(
        status.success(),
        "the allowed publisher exits cleanly: {status}"
    );
    let (status, out) = finish(player).await;
    assert!(status.success(), "player: {status}");
    assert_eq!(
        assert_source_from_keyframe(&clip, &parse_framemd5(&out)),
        0,
        "the player gets every packet from the first keyframe"
    );

    let requests = callback.requests();
    assert_eq!(requests.len(), 1, "one request per publish");
    assert_eq!(requests[0].uri, format!("/rtmp/publish?token={TOKEN}"));
    assert_eq!(requests[0].content_type, "application/json");
    assert_eq!(
        requests[0].body,
        serde_json::json!({
            "call": "publish",
            "app": "live",
            "name": key,
            "addr": "127.0.0.1",
            "query": {"room": "blue", "n": "2"},
        })
    );
    assert_logs_hide(&[key, TOKEN]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_but_a_2xx_with_a_valid_body_refuses_the_publish() {
    let callback = Callback::start(Reply::Answer(403, String::new())).await;
    let prism = Prism::start_with(|c| c.auth.publish_url = Some(callback.url())).await;
    let clip = test_flv();
    let cases = [
        (403, "", "answered 403", "publish not authorized"),
        (401, "{}", "answered 401", "publish not authorized"),
        (500, "", "answered 500", "publish not authorized"),
        (302, "", "answered 302", "publish not authorized"),
        (
            200,
            "OK",
            "invalid: not JSON",
            "publish authorization failed",
        ),
        (
            200,
            r#"{"destinations": [{"preset": "nope", "key": "refused-dest-key"}]}"#,
            "invalid: destination 1: unknown preset `nope`",
            "publish authorization failed",
        ),
    ];
    for (index, (status, body, logged, told)) in cases.into_iter().enumerate() {
        callback.set_reply(Reply::Answer(status, body.to_owned()));
        let key = format!("auth-refused-key-{index}");
        let (exit, stderr) = publish_and_capture(&clip, &prism.url(&format!("live/{key}"))).await;
        assert!(!exit.success(), "{status} {body}: the publish is refused");
        assert!(
            stderr.contains(told),
            "{status} {body}: ffmpeg shows why: {stderr}"
        );
        assert!(!prism.hub().is_live("live", &key), "nothing went live");
        assert!(
            prism.hub().stream("live", &key).is_none(),
            "nothing in the hub"
        );
        assert_eq!(callback.requests().len(), index + 1);
        let logs = captured_logs();
        assert!(
            logs.contains(&format!(
                "publish refused: the authorization callback {logged}"
            )) || logs.contains(&format!(
                "publish refused: the authorization callback's answer is {logged}"
            )),
            "the log names the reason ({logged})"
        );
    }
    let keys: Vec<String> = (0..cases.len())
        .map(|i| format!("auth-refused-key-{i}"))
        .collect();
    let mut secrets: Vec<&str> = keys.iter().map(String::as_str).collect();
    secrets.extend([TOKEN, "refused-dest-key"]);
    assert_logs_hide(&secrets);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_that_never_answers_refuses_within_its_timeout_and_holds_up_no_one() {
    const TIMEOUT_MS: u64 = 3000;
    let callback = Callback::start(Reply::Never).await;
    let prism = Prism::start_with(|c| {
        c.auth.publish_url = Some(callback.url());
        c.auth.timeout_ms = TIMEOUT_MS;
    })
    .await;
    let clip = test_flv();
    let key = "auth-hanging-key";
    let url = prism.url(&format!("live/{key}"));
    let publishing = tokio::spawn(async move { publish_and_capture(&clip, &url).await });
    let asked = callback.wait_requests(1).await[0].at;

    // While that publish waits, another connection is served at once.
    let player = play_framemd5(&prism.url("live/someone-else"));
    prism.wait_subscribers("live", "someone-else", 1).await;
    assert!(
        !publishing.is_finished(),
        "the publisher still waits for the callback"
    );

    let (exit, stderr) = publishing.await.unwrap();
    let waited = asked.elapsed();
    assert!(!exit.success(), "the publish is refused");
    assert!(stderr.contains("publish authorization failed"), "{stderr}");
    assert!(
        waited >= Duration::from_millis(TIMEOUT_MS - 100),
        "refused only after the timeout ({waited:?})"
    );
    assert!(
        waited < Duration::from_millis(TIMEOUT_MS) + Duration::from_secs(10),
        "refused soon after the timeout, not when some other limit hits ({waited:?})"
    );
    assert!(
        prism.hub().stream("live", key).is_none(),
        "nothing in the hub"
    );
    assert!(
        captured_logs().contains("the authorization callback did not answer within 3s"),
        "the log names the reason"
    );
    drop(player);
    assert_logs_hide(&[key, TOKEN]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_callback_refuses_the_publish() {
    // A port that was just free and is closed again: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let prism = Prism::start_with(|c| {
        c.auth.publish_url = Some(format!("http://127.0.0.1:{port}/hook?token={TOKEN}"));
    })
    .await;
    let key = "auth-unreachable-key";
    let (exit, stderr) = publish_and_capture(&test_flv(), &prism.url(&format!("live/{key}"))).await;
    assert!(!exit.success(), "the publish is refused");
    assert!(stderr.contains("publish authorization failed"), "{stderr}");
    assert!(prism.hub().stream("live", key).is_none());
    assert!(
        captured_logs().contains("the authorization callback could not be reached"),
        "the log names the reason"
    );
    assert_logs_hide(&[key, TOKEN]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_in_the_answer_are_started_beside_the_query_strings() {
    let custom = NginxSink::start("ingest").await;
    let presets = NginxSink::start("app").await;
    let keys = [
        "auth-dest-publisher-key",
        "cb-custom-dest-key",
        "cb-twitch-dest-key",
        "qs-youtube-dest-key",
    ];
    let answer = serde_json::json!({
        "destinations": [
            {"url": custom.stream_url(keys[1])},
            {"preset": "twitch", "key": keys[2]},
        ]
    });
    let callback = Callback::start(Reply::Answer(200, answer.to_string())).await;
    let prism = Prism::start_with(|c| {
        c.auth.publish_url = Some(callback.url());
        point_preset(c, "twitch", presets.url());
        point_preset(c, "youtube", presets.url());
    })
    .await;
    let clip = test_flv();
    let publisher = publish(
        &clip,
        &prism.url(&format!("live/{}?youtube={}", keys[0], keys[3])),
    );
    prism.wait_live("live", keys[0]).await;
    custom.wait_publishing(keys[1], WAIT).await;
    // The relay lists a stream once it has started all of its destinations, and the
    // first may reach its ingest before the last is started: wait for the list.
    let relay = prism.app.as_ref().unwrap().relay();
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        let status = relay.destinations("live", keys[0]);
        if !status.is_empty() || tokio::time::Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ids: Vec<_> = status.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        ids,
        ["custom", "twitch", "youtube"],
        "the callback's destinations, then the query string's"
    );
    assert!(status.iter().all(|d| !d.url.contains("dest-key")), "masked");

    let (exit, _) = finish(publisher).await;
    assert!(exit.success(), "publisher: {exit}");
    for (sink, key) in [(&custom, keys[1]), (&presets, keys[2]), (&presets, keys[3])] {
        assert!(
            sink.saw_clean_unpublish(key).await,
            "{key}: FCUnpublish/deleteStream before close"
        );
        let frames = recording_framemd5(&sink.recording(key));
        assert_eq!(
            assert_source_from_keyframe(&clip, &frames),
            0,
            "{key}: every packet from the first keyframe"
        );
    }
    assert_eq!(callback.requests().len(), 1);
    let mut secrets = keys.to_vec();
    secrets.push(TOKEN);
    assert_logs_hide(&secrets);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_switches_new_publishes_to_the_new_callback() {
    let refusing = Callback::start(Reply::Answer(403, String::new())).await;
    let allowing = Callback::start(Reply::Answer(204, String::new())).await;
    let prism = Prism::start_with(|c| c.auth.publish_url = Some(refusing.url())).await;
    let clip = clip(2);
    let url = prism.url("live/auth-reload-key");
    let (exit, _) = publish_and_capture(&clip, &url).await;
    assert!(!exit.success(), "the first callback refuses");

    let mut config = prism::Config::defaults();
    config.auth.publish_url = Some(allowing.url());
    prism.app.as_ref().unwrap().reload(&config).unwrap();
    let (exit, stderr) = publish_and_capture(&clip, &url).await;
    assert!(exit.success(), "the reloaded callback allows: {stderr}");
    assert_eq!(refusing.requests().len(), 1);
    assert_eq!(allowing.requests().len(), 1);
    assert_logs_hide(&["auth-reload-key", TOKEN]);
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_callback_is_trusted_only_with_its_ca() {
    let callback = Callback::start(Reply::Answer(200, String::new())).await;
    let tls = StunnelFront::start(callback.addr.port()).await;
    let url = format!(
        "https://localhost:{}/rtmp/publish?token={TOKEN}",
        tls.port()
    );
    let clip = clip(2);
    let key = "auth-https-key";

    let untrusting = Prism::start_with(|c| c.auth.publish_url = Some(url.clone())).await;
    let (exit, stderr) = publish_and_capture(&clip, &untrusting.url(&format!("live/{key}"))).await;
    assert!(!exit.success(), "an unknown issuer is refused");
    assert!(stderr.contains("publish authorization failed"), "{stderr}");
    assert!(
        callback.requests().is_empty(),
        "nothing reached the service"
    );
    untrusting.stop().await;

    let trusting = Prism::start_with(|c| {
        c.auth.publish_url = Some(url.clone());
        c.tls.ca_file = Some(tls.ca_pem_path());
    })
    .await;
    let (exit, stderr) = publish_and_capture(&clip, &trusting.url(&format!("live/{key}"))).await;
    assert!(
        exit.success(),
        "with [tls] ca_file the callback is reached: {stderr}"
    );
    let requests = callback.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["name"], key);
    assert_logs_hide(&[key, TOKEN]);
    trusting.stop().await;
}
