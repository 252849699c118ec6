//! Three prism nodes (child processes on 127.0.0.2, .3 and .4) behind a real
//! HAProxy on 127.0.0.1 (TCP, leastconn, `send-proxy-v2`, health checks on
//! /healthz), sharing a real redis-server as their registry: a stream is held by
//! one node and listed, with that node, by every node's API; a second publish of
//! it is refused wherever it lands; control requests reach it from any node; a
//! killed node's stream goes live elsewhere once its lease lapses; and Redis lost
//! and restarted leaves live streams alone and the registry whole again.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::haproxy::{Backend, Haproxy};
use common::redis::RedisServer;
use common::sinks::NginxSink;
use common::*;
use serde_json::Value;
use tokio::time::Instant;

const TOKEN: &str = "cluster-test-admin-token";
const LEASE_SECS: u64 = 3;

/// The three nodes, their balancer, their registry and one ingest stand-in.
struct Cluster {
    nodes: Vec<Option<ChildPrism>>,
    haproxy: Haproxy,
    redis: RedisServer,
    sink: NginxSink,
}

impl Cluster {
    async fn start(tag: &str) -> Self {
        let redis = RedisServer::start().await;
        let sink = NginxSink::start("live").await;
        let mut nodes = Vec::new();
        for i in 0..3u8 {
            let config = format!(
                "[rtmp]\nproxy_protocol = true\n[http]\ntoken = \"{TOKEN}\"\n\
                 [cluster]\nredis_url = \"{}\"\nnode_id = \"node{i}\"\nlease_secs = {LEASE_SECS}\n\
                 [presets.youtube]\nurl = \"{}\"\n",
                redis.url(),
                sink.url()
            );
            let ip = Ipv4Addr::new(127, 0, 0, 2 + i);
            let tag = format!("cluster-{tag}-{i}");
            nodes.push(Some(ChildPrism::start_on(&tag, &config, &[], ip).await));
        }
        let backends: Vec<Backend> = nodes
            .iter()
            .flatten()
            .map(|n| Backend {
                rtmp: n.rtmp,
                health: Some(n.http),
            })
            .collect();
        let haproxy = Haproxy::start(&backends, None).await;
        Self {
            nodes,
            haproxy,
            redis,
            sink,
        }
    }

    fn node(&self, i: usize) -> &ChildPrism {
        self.nodes[i].as_ref().expect("the node runs")
    }

    fn running(&self) -> impl Iterator<Item = (usize, &ChildPrism)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    /// Which node lists a stream as its own (`?scope=node`), waiting for one.
    async fn holder(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for (i, node) in self.running() {
                let own: Value =
                    serde_json::from_str(&node.get("/api/v1/streams?scope=node").await).unwrap();
                if own["streams"].as_array().is_some_and(|s| !s.is_empty()) {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no node holds the stream");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every node's whole-cluster list, once all of them list `count` streams and
    /// every node answered.
    async fn views(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut views = Vec::new();
            for (_, node) in self.running() {
                views.push(
                    serde_json::from_str::<Value>(&node.get("/api/v1/streams").await).unwrap(),
                );
            }
            let whole = views.iter().all(|v| {
                v["streams"].as_array().is_some_and(|s| s.len() == count)
                    && v["unreachable_nodes"].as_array().is_some_and(Vec::is_empty)
            });
            if whole {
                return views;
            }
            assert!(
                Instant::now() < deadline,
                "the nodes' views did not agree: {views:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One more HAProxy per node, each in front of that node alone (same PROXY
    /// header): a client through `fronts[i]` lands on node `i`, which a shared
    /// balancer cannot promise.
    async fn fronts(&self) -> Vec<Haproxy> {
        let mut fronts = Vec::new();
        for (_, node) in self.running() {
            let backend = Backend {
                rtmp: node.rtmp,
                health: None,
            };
            fronts.push(Haproxy::start(&[backend], None).await);
        }
        fronts
    }

    async fn stop(mut self) {
        for node in self.nodes.iter_mut().filter_map(Option::take) {
            node.stop().await;
        }
        self.haproxy.stop().await;
        self.redis.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_holds_a_stream_every_node_lists_it_and_a_second_publish_is_refused() {
    let cluster = Cluster::start("one").await;
    let source = clip(10);
    let key = "cluster-key-one";
    let url = cluster
        .haproxy
        .url(&format!("live/{key}?youtube=cluster-out-one"));
    let publisher = publish(&source, &url);
    cluster
        .sink
        .wait_publishing("cluster-out-one", Duration::from_secs(20))
        .await;
    let holder = cluster.holder().await;
    let holder_id = format!("node{holder}");

    let views = cluster.views(1).await;
    for view in &views {
        let stream = &view["streams"][0];
        assert_eq!(stream["node"], holder_id.as_str(), "{view}");
        let from = stream["publisher"]["remote_addr"]
            .as_str()
            .unwrap_or_default();
        assert!(
            from.starts_with("127.0.0.1:"),
            "the encoder's address: {view}"
        );
    }
    let id = views[0]["streams"][0]["id"].as_str().unwrap().to_owned();

    // The same stream again, through the balancer: refused wherever it lands.
    for attempt in 0..3 {
        let (status, _) = finish(publish(
            &clip(2),
            &cluster.haproxy.url(&format!("live/{key}")),
        ))
        .await;
        assert!(
            !status.success(),
            "attempt {attempt} to publish the stream twice is refused"
        );
    }
    let refused_elsewhere = cluster
        .running()
        .filter(|(i, _)| *i != holder)
        .any(|(_, n)| n.count_logged("live on another node") > 0);
    assert!(
        refused_elsewhere,
        "another node refused it for the holder's lease"
    );

    // Control from a node that does not hold the stream is forwarded to it.
    let other = cluster.node((holder + 1) % 3);
    let response = http_client()
        .get(format!("http://{}/api/v1/streams/{id}", other.http))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-prism-node"], holder_id.as_str());

    let (status, _) = finish(publisher).await;
    assert!(status.success(), "publisher: {status}");
    let recording = cluster
        .sink
        .wait_recording("cluster-out-one", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        assert_source_from_keyframe(&source, &framemd5_of_file(&recording)),
        0,
        "the stream reached its destination intact"
    );
    // Its lease is released as it ends: the name is free for any node.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.redis.keys("prism:lease:*").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the ended stream's lease is released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for line in cluster
        .running()
        .flat_map(|(_, n)| n.lines.lock().unwrap().clone())
    {
        assert!(!line.contains(key), "no key in any node's log: {line}");
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_stream_goes_live_on_another_node_once_its_lease_lapses() {
    let mut cluster = Cluster::start("kill").await;
    let key = "cluster-key-kill";
    let url = cluster.haproxy.url(&format!("live/{key}"));
    let publisher = publish(&clip(30), &url);
    let holder = cluster.holder().await;
    let mut killed = cluster.nodes[holder].take().unwrap();
    let pid = libc::pid_t::try_from(killed.pid()).unwrap();
    // SAFETY: kill(2) on the PID of our own child, which has not been reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let killed_at = Instant::now();
    killed.child.wait().await.unwrap();
    let _ = finish(publisher).await;

    // The encoder reconnects, as OBS does, until a node takes it.
    let mut attempts = 0;
    let went_live_at = loop {
        attempts += 1;
        assert!(attempts < 100, "no node took the stream");
        let started = Instant::now();
        let (status, _) = finish(publish(&clip(2), &url)).await;
        if status.success() {
            break started;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let waited = went_live_at - killed_at;
    println!("live again on another node {waited:?} after the kill ({attempts} attempts)");
    assert!(
        waited <= Duration::from_secs(LEASE_SECS + 2),
        "live elsewhere within lease_secs + 2 s: {waited:?}"
    );
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_outlast_redis_and_the_registry_is_whole_again_when_it_returns() {
    let mut cluster = Cluster::start("redis").await;
    let source = clip(16);
    let url = cluster
        .haproxy
        .url("live/cluster-key-redis?youtube=cluster-out-redis");
    let publisher = publish(&source, &url);
    cluster
        .sink
        .wait_publishing("cluster-out-redis", Duration::from_secs(20))
        .await;
    let holder = cluster.holder().await;
    cluster.views(1).await;

    cluster.redis.kill().await;
    // A new publish while Redis is away goes ahead without a lease (the default).
    let (status, _) = finish(publish(
        &clip(2),
        &cluster.haproxy.url("live/cluster-key-away"),
    ))
    .await;
    assert!(
        status.success(),
        "published while the registry is away: {status}"
    );
    let unregistered = cluster
        .running()
        .any(|(_, n)| n.count_logged("publishing without a lease") > 0);
    assert!(unregistered, "the publish without a lease is logged");

    cluster.redis.restart().await;
    let views = cluster.views(1).await;
    for view in &views {
        assert_eq!(
            view["streams"][0]["node"],
            format!("node{holder}").as_str(),
            "{view}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leases = cluster.redis.keys("prism:lease:*").await;
        let nodes = cluster.redis.keys("prism:node:*").await;
        if leases.len() == 1 && nodes.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "registry after restart: {leases:?} {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (status, _) = finish(publisher).await;
    assert!(
        status.success(),
        "the live stream went on while Redis was away: {status}"
    );
    let recording = cluster
        .sink
        .wait_recording("cluster-out-redis", 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        assert_source_from_keyframe(&source, &framemd5_of_file(&recording)),
        0,
        "intact at its destination"
    );
    cluster.stop().await;
}

/// Log lines of every node that contain `part`.
fn count_logged(cluster: &Cluster, part: &str) -> usize {
    cluster.running().map(|(_, n)| n.count_logged(part)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_through_haproxy_on_every_node_get_the_stream_exactly() {
    let cluster = Cluster::start("play").await;
    // The publisher through node0's balancer, a player through each node's.
    let fronts = cluster.fronts().await;
    let source = clip(10);
    let key = "cluster-key-play";
    let publisher = publish(&source, &fronts[0].url(&format!("live/{key}")));
    let holder = cluster.holder().await;
    assert_eq!(holder, 0);
    let players: Vec<_> = fronts
        .iter()
        .map(|front| play_framemd5(&front.url(&format!("live/{key}"))))
        .collect();
    // Each node serves its player: the holder from its hub, the others from
    // a pull of the holder's stream. (Counting "playing" lines across nodes
    // does not tell: the holder logs one for each pull too.)
    let served = |i: usize, node: &ChildPrism| {
        if i == holder {
            node.count_logged("playing") > 0
        } else {
            node.count_logged("pulled from the node that holds the stream") > 0
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cluster.running().all(|(i, node)| served(i, node)) {
        let late: Vec<usize> = cluster
            .running()
            .filter(|(i, node)| !served(*i, node))
            .map(|(i, _)| i)
            .collect();
        assert!(
            Instant::now() < deadline,
            "nodes {late:?} served no player (holder: node{holder})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "publisher: {status}");
    for (n, player) in players.into_iter().enumerate() {
        let (status, out) = finish(player).await;
        assert!(status.success(), "player {n}: {status}");
        assert_eq!(
            assert_source_from_keyframe(&source, &parse_framemd5(&out)),
            0,
            "player {n} gets every packet from its first keyframe"
        );
    }
    // The pulls end with the origin's stream.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count_logged(&cluster, "the origin's stream ended") < 2 {
        assert!(Instant::now() < deadline, "both pulls ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for front in fronts {
        front.stop().await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_waiting_on_one_node_follows_its_stream_live_on_another() {
    // The player through node0's balancer, the publisher through node1's.
    let cluster = Cluster::start("follow").await;
    let fronts = cluster.fronts().await;
    let source = clip(8);
    let key = "cluster-key-follow";
    let player = play_framemd5(&fronts[0].url(&format!("live/{key}")));
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_logged(&cluster, "waiting for the stream to start") < 1 {
        assert!(Instant::now() < deadline, "the player waits");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let publisher = publish(&source, &fronts[1].url(&format!("live/{key}")));
    let holder = cluster.holder().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_logged(&cluster, "went live on another node") < 1 {
        assert!(
            Instant::now() < deadline,
            "the waiting player moves to the pull"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let followed = cluster
        .running()
        .any(|(i, n)| i != holder && n.count_logged("went live on another node") > 0);
    assert!(
        followed,
        "the player waited on another node than the holder"
    );
    let (status, _) = finish(publisher).await;
    assert!(status.success(), "publisher: {status}");
    let (status, out) = finish(player).await;
    assert!(status.success(), "player: {status}");
    assert_eq!(
        assert_source_from_keyframe(&source, &parse_framemd5(&out)),
        0,
        "the waiting player gets every packet from the first keyframe"
    );
    for front in fronts {
        front.stop().await;
    }
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_registry_down_refuse_a_publish_waits_for_redis() {
    let mut redis = RedisServer::start().await;
    redis.kill().await;
    let config = format!(
        "[cluster]\nredis_url = \"{}\"\nnode_id = \"lonely\"\non_registry_down = \"refuse\"\n",
        redis.url()
    );
    let node = ChildPrism::start("cluster-refuse", &config).await;
    let (status, _) = finish(publish(&clip(2), &node.url("live/cluster-key-refuse"))).await;
    assert!(!status.success(), "refused while Redis is away");
    node.wait_log(&["publish refused: the stream registry is unreachable"])
        .await;

    redis.restart().await;
    let (status, _) = finish(publish(&clip(2), &node.url("live/cluster-key-refuse"))).await;
    assert!(status.success(), "published once Redis is back: {status}");
    node.wait_log(&["registry reachable again"]).await;
    node.stop().await;
    redis.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_sent_to_any_node_ends_the_stream_on_its_holder() {
    let cluster = Cluster::start("kick").await;
    let key = "cluster-key-kick";
    let publisher = publish(&clip(30), &cluster.haproxy.url(&format!("live/{key}")));
    let holder = cluster.holder().await;
    let views = cluster.views(1).await;
    let id = views[0]["streams"][0]["id"].as_str().unwrap().to_owned();
    let other = cluster.node((holder + 2) % 3);
    let url = format!("http://{}/api/v1/streams/{id}", other.http);
    let refused = http_client().delete(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401, "the holder checks the token itself");
    let kicked = http_client()
        .delete(&url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert!(kicked.status().is_success(), "{kicked:?}");
    assert_eq!(
        kicked.headers()["x-prism-node"],
        format!("node{holder}").as_str()
    );
    let (status, _) = finish(publisher).await;
    assert!(!status.success(), "the publisher was disconnected");
    cluster
        .node(holder)
        .wait_log(&["publisher kicked by an operator"])
        .await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_node_serves_the_hls_of_a_stream_held_by_another() {
    let cluster = Cluster::start("hls").await;
    let publisher = publish(&clip(10), &cluster.haproxy.url("live/cluster-key-hls"));
    let holder = cluster.holder().await;
    let views = cluster.views(1).await;
    let id = views[0]["streams"][0]["id"].as_str().unwrap().to_owned();
    let other = cluster.node((holder + 1) % 3);
    let base = |node: &ChildPrism| format!("http://{}/hls/{id}", node.http);

    // The first request starts packaging on the holder and returns once a part exists.
    let playlist = http_client()
        .get(format!("{}/index.m3u8", base(other)))
        .send()
        .await
        .unwrap();
    assert_eq!(playlist.status(), 200);
    assert_eq!(
        playlist.headers()["x-prism-node"],
        format!("node{holder}").as_str()
    );
    assert_eq!(
        playlist.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let text = playlist.text().await.unwrap();
    assert!(text.starts_with("#EXTM3U"), "{text}");
    assert!(!text.contains("cluster-key-hls"), "no key in the playlist");
    // The init segment, through the other node and from the holder: the same bytes.
    let init = "src.init0.mp4";
    assert!(text.contains(init), "{text}");
    let fetch = async |url: String| {
        let response = http_client().get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap()
    };
    let through = fetch(format!("{}/{init}", base(other))).await;
    let direct = fetch(format!("{}/{init}", base(cluster.node(holder)))).await;
    assert!(!direct.is_empty());
    assert_eq!(through, direct, "the holder's init segment, byte for byte");
    let _ = finish(publisher).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_does_not_wait_for_the_streams_it_pulls_for_players() {
    // The publisher through node0's balancer, a player through node1's and node2's.
    let mut cluster = Cluster::start("drain-pull").await;
    let fronts = cluster.fronts().await;
    let key = "cluster-key-drain-pull";
    let mut publisher = publish(&clip(30), &fronts[0].url(&format!("live/{key}")));
    let holder = cluster.holder().await;
    let mut players = Vec::new();
    for front in &fronts[1..] {
        players.push(play_framemd5(&front.url(&format!("live/{key}"))));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let puller = loop {
        let found = cluster
            .running()
            .find(|(i, n)| *i != holder && n.count_logged("pulling for players here") > 0);
        if let Some((i, _)) = found {
            break i;
        }
        assert!(Instant::now() < deadline, "a node pulls the stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut node = cluster.nodes[puller].take().unwrap();
    assert_eq!(node.drain(Some(TOKEN)).await, 202);
    // It exits without waiting for the origin's stream.
    let status = node.exited(Duration::from_secs(20)).await;
    assert!(status.success(), "exit 0: {status}");
    assert!(
        publisher.try_wait().unwrap().is_none(),
        "the origin's stream is still live: the drain did not wait for it"
    );
    node.wait_log(&["drained: the last stream ended"]).await;
    let _ = publisher.kill().await;
    for mut player in players {
        let _ = player.kill().await;
    }
    for front in fronts {
        front.stop().await;
    }
    cluster.stop().await;
}
