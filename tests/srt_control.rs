//! Hostile SRT control packets: a caller that completes the handshake (written
//! here on srt-protocol's own handshake state machine over a raw UDP socket),
//! is admitted as a publisher, then sends control packets no encoder sends
//! (congestion warnings and peer errors, which srt-tokio 0.4 does not handle,
//! NAKs and drop requests for data never sent, ACK2s out of nowhere, garbage).
//! Its connection ends, logged as failed; the listener goes on taking callers,
//! and an honest caller's stream reaches the ingest intact, its link's
//! statistics logged at its end.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::sinks::NginxSink;
use common::srt::{srt_publish, srt_url};
use common::*;
use srt_protocol::packet::{
    ControlPacket, ControlTypes, FullAckSeqNumber, MsgNumber, Packet, ReceivePacketError,
    SeqNumber, SocketId, TimeStamp,
};
use srt_protocol::protocol::pending_connection::ConnectionResult;
use srt_protocol::protocol::pending_connection::connect::Connect;
use srt_protocol::settings::ConnInitSettings;
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(20);

/// Completes SRT's handshake with `server` as a caller naming `stream_id`, and
/// returns the socket and the listener's socket id for this connection.
async fn handshake(server: SocketAddr, stream_id: &str) -> (UdpSocket, SocketId) {
    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let settings = ConnInitSettings::default().copy_randomize();
    let local = udp.local_addr().unwrap().ip();
    let start = SeqNumber::new_truncate(1000);
    let mut connect = Connect::new(server, local, settings, Some(stream_id.into()), start);
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut result = connect.handle_tick(Instant::now());
    loop {
        match result {
            ConnectionResult::SendPacket((packet, to)) => send(&udp, &packet, to).await,
            ConnectionResult::Connected(packet, connection) => {
                if let Some((packet, to)) = packet {
                    send(&udp, &packet, to).await;
                }
                return (udp, connection.settings.remote_sockid);
            }
            ConnectionResult::Reject(_, reject) => panic!("refused: {reject:?}"),
            ConnectionResult::Failure(err) => panic!("handshake failed: {err}"),
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "no handshake");
        let mut buf = [0u8; 1500];
        let received = tokio::time::timeout(Duration::from_millis(250), udp.recv_from(&mut buf));
        result = match received.await {
            Ok(Ok((n, from))) => {
                let parsed = Packet::parse(&mut &buf[..n], false);
                let parsed = parsed.map(|p| (p, from)).map_err(ReceivePacketError::Parse);
                connect.handle_packet(parsed, Instant::now())
            }
            _ => connect.handle_tick(Instant::now()),
        };
    }
}

async fn send(udp: &UdpSocket, packet: &Packet, to: SocketAddr) {
    let mut out = BytesMut::new();
    packet.serialize(&mut out);
    udp.send_to(&out, to).await.unwrap();
}

/// The control packets no honest caller sends at this point.
fn hostile(dest: SocketId) -> Vec<Packet> {
    let control = |control_type| {
        Packet::Control(ControlPacket {
            timestamp: TimeStamp::from_micros(1_000),
            dest_sockid: dest,
            control_type,
        })
    };
    let far = SeqNumber::new_truncate(0x7fff_0000);
    vec![
        control(ControlTypes::Nak(
            [0, 5, 6, 7, 1000]
                .map(SeqNumber::new_truncate)
                .iter()
                .collect(),
        )),
        control(ControlTypes::DropRequest {
            msg_to_drop: MsgNumber::new_truncate(7),
            range: SeqNumber::new_truncate(1)..=far,
        }),
        control(ControlTypes::Ack2(FullAckSeqNumber::new(99_999).unwrap())),
        control(ControlTypes::KeepAlive),
        control(ControlTypes::CongestionWarning),
        control(ControlTypes::PeerError(4000)),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_control_packets_end_their_connection_alone() {
    let ingest = NginxSink::start("live2").await;
    let ingest_url = ingest.url();
    let prism = Prism::start_with(move |c| {
        point_preset(c, "youtube", ingest_url);
        c.srt.listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let server = prism.app.as_ref().unwrap().srt_addr().unwrap();
    for round in 0..3 {
        let key = format!("hostile-{round}");
        let (udp, dest) = handshake(server, &format!("live/{key}")).await;
        prism.wait_live("live", &key).await;
        for packet in hostile(dest) {
            send(&udp, &packet, server).await;
        }
        // A NAK whose loss list runs backwards and off the end, and bytes that
        // are no packet.
        let mut nak = vec![0x80, 0x03, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        nak.extend(dest.0.to_be_bytes());
        nak.extend([0xff, 0xff, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]);
        udp.send_to(&nak, server).await.unwrap();
        udp.send_to(&[0x80, 0, 0, 0xff, 1, 2, 3], server)
            .await
            .unwrap();
        // The connection ends (its publisher is gone; the stream waits for it
        // for the grace period, as for any drop).
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let streams = prism.streams_json().await;
            let streams = streams["streams"].as_array().unwrap();
            let gone = streams.iter().all(|s| s["publisher"].is_null());
            if gone {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: still served"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let failed = "the SRT connection failed on the caller's packets";
    assert_eq!(captured_logs().matches(failed).count(), 3, "each said why");
    // The listener still takes callers, and an honest one arrives intact.
    let source = test_flv();
    let url = srt_url(&prism, "live/honest?youtube=yt-honest", "");
    let publisher = srt_publish(&source, &url);
    let (status, _) = finish(publisher).await;
    assert!(status.success());
    ingest
        .wait_unpublished("yt-honest", Duration::from_secs(60))
        .await;
    assert_remuxed_intact(&source, &ingest.recording("yt-honest"), 500);
    // Its end logs how the link fared, as SRT counted it.
    let logs = captured_logs();
    let line = logs.lines().rfind(|l| l.contains("srt link statistics"));
    let line = line.expect("the link's statistics are logged at its end");
    let packets: u64 = line
        .split("packets=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next()?.parse().ok())
        .expect("a packet count");
    assert!(packets > 100, "{line}");
    assert!(
        line.contains(" lost=0 ") && line.contains("dropped_too_late=0"),
        "{line}"
    );
    prism.stop().await;
}
