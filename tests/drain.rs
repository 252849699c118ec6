//! Draining a node (`POST /api/v1/drain`, SIGUSR1): it refuses new publishes and
//! answers 503 on /healthz, so that a real HAProxy's health check sends new
//! encoders to the other node, while its own stream goes on, intact at its
//! destination, to the end; then it exits 0 by itself. A drain that outlasts
//! `[cluster] drain_timeout_secs` ends the node anyway, also with 0.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::haproxy::{Backend, Haproxy};
use common::sinks::NginxSink;
use common::*;

const TOKEN: &str = "drain-test-admin-token";

fn node_config(sink: &NginxSink, extra: &str) -> String {
    format!(
        "[rtmp]\nproxy_protocol = true\n[http]\ntoken = \"{TOKEN}\"\n\
         [presets.youtube]\nurl = \"{}\"\n{extra}",
        sink.url()
    )
}

async fn healthz(node: &ChildPrism) -> (reqwest::StatusCode, String) {
    let response = http_client()
        .get(format!("http://{}/healthz", node.http))
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_gets_no_new_publishes_and_exits_when_its_stream_ends() {
    let sink = NginxSink::start("live").await;
    let config = node_config(&sink, "");
    let mut nodes = Vec::new();
    for ip in [[127, 0, 0, 2], [127, 0, 0, 3]] {
        nodes.push(ChildPrism::start_on("drain", &config, &[], Ipv4Addr::from(ip)).await);
    }
    let backends: Vec<Backend> = nodes
        .iter()
        .map(|n| Backend {
            rtmp: n.rtmp,
            health: Some(n.http),
        })
        .collect();
    let haproxy = Haproxy::start(&backends, None).await;

    let source = clip(8);
    let first = publish(
        &source,
        &haproxy.url("live/drain-first?youtube=drain-first-out"),
    );
    sink.wait_publishing("drain-first-out", Duration::from_secs(20))
        .await;
    let mut holder = None;
    for (i, node) in nodes.iter().enumerate() {
        if !node.streams().await.is_empty() {
            holder = Some(i);
        }
    }
    let holder = holder.expect("one node holds the stream");
    let mut draining = nodes.remove(holder);
    let other = nodes.remove(0);

    assert_eq!(healthz(&draining).await.0, 200);
    assert_eq!(draining.drain(None).await, 401, "draining needs the token");
    assert_eq!(draining.drain(Some(TOKEN)).await, 202);
    assert_eq!(
        draining.drain(Some(TOKEN)).await,
        202,
        "asking again is fine"
    );
    assert_eq!(
        healthz(&draining).await,
        (reqwest::StatusCode::SERVICE_UNAVAILABLE, "draining".into())
    );
    haproxy.wait_log(&format!("node{holder} is DOWN")).await;

    // New encoders, through the balancer, all land on the other node.
    let short = clip(2);
    for n in 0..3 {
        let url = haproxy.url(&format!("live/drain-new-{n}"));
        let (status, _) = finish(publish(&short, &url)).await;
        assert!(
            status.success(),
            "publish {n} through the balancer: {status}"
        );
    }
    other.wait_log_count("publishing", 3).await;
    assert!(
        draining.count_logged("publish refused") == 0,
        "the balancer sent the draining node nothing"
    );

    let (status, _) = finish(first).await;
    assert!(
        status.success(),
        "the draining node's stream ran to its end: {status}"
    );
    let status = draining.exited(Duration::from_secs(20)).await;
    assert!(status.success(), "the drained node exits 0: {status}");
    draining.wait_log(&["drained: the last stream ended"]).await;
    let recording = sink
        .wait_recording("drain-first-out", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        assert_source_from_keyframe(&source, &framemd5_of_file(&recording)),
        0,
        "the stream reached its destination intact while the node drained"
    );
    other.stop().await;
    haproxy.stop().await;
    drop(sink);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_drains_and_the_drain_timeout_ends_what_is_still_live() {
    let sink = NginxSink::start("live").await;
    let config = format!(
        "[http]\ntoken = \"{TOKEN}\"\n[cluster]\ndrain_timeout_secs = 2\n\
         [presets.youtube]\nurl = \"{}\"\n",
        sink.url()
    );
    let mut node = ChildPrism::start("drain-usr1", &config).await;
    let long = clip(30);
    let publisher = publish(&long, &node.url("live/drain-long?youtube=drain-long-out"));
    sink.wait_publishing("drain-long-out", Duration::from_secs(20))
        .await;

    let pid = libc::pid_t::try_from(node.pid()).unwrap();
    // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGUSR1) }, 0);
    node.wait_log(&["draining (SIGUSR1)"]).await;
    assert_eq!(healthz(&node).await.0, 503);
    let (status, _) = finish(publish(&clip(2), &node.url("live/drain-late"))).await;
    assert!(!status.success(), "a new publish is refused while draining");
    node.wait_log(&["publish refused: this node is draining"])
        .await;

    let status = node.exited(Duration::from_secs(20)).await;
    assert!(
        status.success(),
        "the node exits 0 at the drain timeout: {status}"
    );
    node.wait_log(&["drain timeout: 1 streams still live"])
        .await;
    let (_, _) = finish(publisher).await;
    let lines = node.lines.lock().unwrap().join("\n");
    assert!(!lines.contains("drain-long-out"), "no key in the log");
    drop(sink);
}
