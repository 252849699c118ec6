//! PROXY protocol v2 on the RTMP listener (`[rtmp] proxy_protocol = true`), behind
//! a real HAProxy (`send-proxy-v2`): the encoder's address, not the balancer's, is
//! what the API, the log and the per-address limit see; media through the balancer
//! arrives exactly; connections that disagree with the listener about the header
//! (none where one is expected, one where none is, a v1 header, a malformed, huge
//! or late one) are refused with a log line while an honest stream goes on.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::haproxy::{Backend, Haproxy};
use common::*;
use ppp::v2::{Addresses, Builder, Command, Protocol, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The address HAProxy connects to prism from: prism must not report it.
const BALANCER_SOURCE: &str = "127.0.0.9";

/// A version 2 header saying `client` connected to `server`.
fn header(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        Addresses::from((client, server)),
    )
    .build()
    .unwrap()
}

/// An RTMP C0 and C1: a client's first bytes.
fn c0c1() -> Vec<u8> {
    let mut hello = vec![3u8];
    hello.extend_from_slice(&[0u8; 1536]);
    hello
}

/// Whether prism answers the RTMP handshake on `socket` (S0 arrives) or closes it.
async fn answered(socket: &mut TcpStream) -> bool {
    let mut s0 = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), socket.read(&mut s0)).await {
        Ok(Ok(1)) => s0[0] == 3,
        Ok(_) => false,
        Err(_) => panic!("prism neither answered nor closed the connection"),
    }
}

/// Waits (bounded) for a log line with every one of `parts`.
async fn wait_log(parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = captured_logs()
            .lines()
            .find(|l| parts.iter().all(|p| l.contains(p)))
        {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no log line with {parts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An honest stream through the balancer: a player of `key`, then its publisher,
/// live.
struct Honest {
    source: std::path::PathBuf,
    player: tokio::process::Child,
    publisher: tokio::process::Child,
}

impl Honest {
    async fn start(prism: &Prism, haproxy: &Haproxy, key: &str, seconds: u32) -> Self {
        let source = clip(seconds);
        let player = play_framemd5(&haproxy.url(&format!("live/{key}")));
        prism.wait_subscribers("live", key, 1).await;
        let publisher = publish(&source, &haproxy.url(&format!("live/{key}")));
        prism.wait_live("live", key).await;
        Self {
            source,
            player,
            publisher,
        }
    }

    /// Both ends finish cleanly and the player got every packet from a keyframe.
    async fn assert_intact(self) {
        let (status, _) = finish(self.publisher).await;
        assert!(status.success(), "publisher: {status}");
        let (status, out) = finish(self.player).await;
        assert!(status.success(), "player: {status}");
        assert_eq!(
            assert_source_from_keyframe(&self.source, &parse_framemd5(&out)),
            0,
            "the player behind the balancer gets every packet from the first keyframe"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_through_haproxy_is_seen_from_the_encoders_address_and_plays_exactly() {
    let prism = Prism::start_with(|c| c.rtmp.proxy_protocol = true).await;
    let backend = Backend {
        rtmp: prism.addr,
        health: None,
    };
    let haproxy = Haproxy::start(&[backend], Some(BALANCER_SOURCE.parse().unwrap())).await;
    let honest = Honest::start(&prism, &haproxy, "proxied-publish-key", 4).await;

    let streams = prism.streams_json().await;
    let publisher_addr = streams["streams"][0]["publisher"]["remote_addr"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        publisher_addr.starts_with("127.0.0.1:"),
        "the API shows the encoder's address, not the balancer's: {streams}"
    );
    wait_log(&[&format!("peer={publisher_addr}")]).await;
    honest.assert_intact().await;
    let logs = captured_logs();
    assert!(
        !logs.contains(&format!("peer={BALANCER_SOURCE}:")),
        "no connection is logged under the balancer's address"
    );
    haproxy.stop().await;
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_address_limit_counts_the_address_in_the_header() {
    let prism = Prism::start_with(|c| {
        c.rtmp.proxy_protocol = true;
        c.rtmp.max_connections_per_ip = 1;
    })
    .await;
    let client = |last: u8| SocketAddr::from(([198, 51, 100, last], 40_000));
    // Three connections from this test's one TCP address, as from a balancer.
    let connect = async |claimed: SocketAddr| {
        let mut socket = TcpStream::connect(prism.addr).await.unwrap();
        let mut hello = header(claimed, prism.addr);
        hello.extend(c0c1());
        socket.write_all(&hello).await.unwrap();
        socket
    };
    let mut first = connect(client(1)).await;
    assert!(answered(&mut first).await, "the first client is served");
    let mut second = connect(client(1)).await;
    assert!(
        !answered(&mut second).await,
        "a second connection of the same client is over its limit"
    );
    wait_log(&["peer=198.51.100.1:40000", "too many connections"]).await;
    let mut third = connect(client(2)).await;
    assert!(
        answered(&mut third).await,
        "another client behind the same balancer has its own limit"
    );
    drop((first, second, third));
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_good_header_are_refused_while_the_stream_goes_on() {
    let prism = Prism::start_with(|c| {
        c.rtmp.proxy_protocol = true;
        c.rtmp.handshake_timeout_secs = 2;
    })
    .await;
    let backend = Backend {
        rtmp: prism.addr,
        health: None,
    };
    let haproxy = Haproxy::start(&[backend], None).await;
    let honest = Honest::start(&prism, &haproxy, "proxied-honest-key", 6).await;

    let mut huge = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    let mut version3 = header(([203, 0, 113, 5], 1).into(), prism.addr);
    version3[12] = 0x31;
    let attacks: [(&str, Vec<u8>, &str); 5] = [
        ("no header", c0c1(), "no PROXY protocol v2 header"),
        (
            "v1",
            b"PROXY TCP4 203.0.113.5 127.0.0.1 1 1935\r\n".to_vec(),
            "only v2 is accepted",
        ),
        ("huge", huge, "too long"),
        ("version 3", version3, "invalid PROXY protocol header"),
        (
            "late",
            b"\r\n\r\n\0\r\n".to_vec(),
            "within the handshake deadline",
        ),
    ];
    for (name, bytes, logged) in attacks {
        let mut socket = TcpStream::connect(prism.addr).await.unwrap();
        let local = socket.local_addr().unwrap();
        socket.write_all(&bytes).await.unwrap();
        assert!(!answered(&mut socket).await, "{name}: refused");
        let line = wait_log(&[&format!("peer={local}"), logged]).await;
        assert!(line.contains("connection refused"), "{name}: {line}");
    }

    honest.assert_intact().await;
    haproxy.stop().await;
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_on_a_listener_that_does_not_expect_one_is_refused() {
    let prism = Prism::start().await;
    let mut socket = TcpStream::connect(prism.addr).await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut hello = header(([203, 0, 113, 9], 2).into(), prism.addr);
    hello.extend(c0c1());
    socket.write_all(&hello).await.unwrap();
    assert!(!answered(&mut socket).await, "refused");
    wait_log(&[&format!("peer={local}"), "does not expect one"]).await;

    let mut plain = TcpStream::connect(prism.addr).await.unwrap();
    plain.write_all(&c0c1()).await.unwrap();
    assert!(
        answered(&mut plain).await,
        "a plain client is served as before"
    );
    prism.stop().await;
}
