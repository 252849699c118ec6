//! Cross-check of the capture decoder against an independent one: Wireshark's
//! RTMPT dissector (tshark). One short run per relay with two sinks; the audio
//! messages and the video messages of every client -> server direction must
//! appear in both, in the same order, with the same length and the same capture
//! time (tshark reports a message in the frame that completes it, as this tool
//! does). Audio and video are compared as two sequences because tshark's field
//! output groups a frame's messages by field, not by order.

use std::collections::BTreeMap;
use std::process::Command;

use crate::capture::{self, Kind};
use crate::error::BenchError;
use crate::run::{self, Plan, Relay};

/// (payload length, capture time in ns) of one message.
type Entry = (u32, u64);

/// Client port and message type (8 audio, 9 video).
type FlowType = (u16, u8);

/// Runs one short capture per relay and compares the two decoders; the pcap
/// files are removed afterwards unless `keep`.
pub fn run(plan: &Plan, relays: &[Relay], keep: bool) -> Result<(), BenchError> {
    let mut failures = 0;
    for &relay in relays {
        let record = run::run_once(plan, relay, 2, 0, 0, true);
        if let Some(error) = &record.error {
            return Err(BenchError::Setup(format!("{} run: {error}", relay.name())));
        }
        let pcap = record.dir.join("capture.pcap");
        let decoded = capture::decode_file(&pcap, record.relay_port, record.sink_port)?;
        let mut ours: BTreeMap<FlowType, Vec<Entry>> = BTreeMap::new();
        for flow in &decoded.flows {
            for m in &flow.media {
                let type_id = match m.kind {
                    Kind::AudioFrame | Kind::AudioConfig | Kind::AudioOther => 8,
                    _ => 9,
                };
                ours.entry((flow.client_port, type_id))
                    .or_default()
                    .push((m.len, m.time_ns));
            }
        }
        let theirs = tshark(&pcap, record.relay_port, record.sink_port);
        if !keep {
            let _ = std::fs::remove_file(&pcap);
        }
        let theirs = theirs?;
        println!(
            "{}: {} ({} flows x types here, {} in tshark)",
            relay.name(),
            pcap.display(),
            ours.len(),
            theirs.len()
        );
        for key in ours
            .keys()
            .chain(theirs.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let (port, type_id) = *key;
            let empty = Vec::new();
            let a = ours.get(key).unwrap_or(&empty);
            let b = theirs.get(key).unwrap_or(&empty);
            let first_difference = a.iter().zip(b).position(|(x, y)| x != y);
            let same = a.len() == b.len() && first_difference.is_none();
            println!(
                "  client port {port}, {}: {} messages here, {} in tshark: {}",
                if type_id == 8 { "audio" } else { "video" },
                a.len(),
                b.len(),
                if same {
                    "identical (length, capture time)".to_owned()
                } else {
                    failures += 1;
                    match first_difference {
                        Some(i) => format!("DIFFER at message {i}: {:?} vs {:?}", a[i], b[i]),
                        None => "DIFFER in count".to_owned(),
                    }
                }
            );
        }
    }
    if failures > 0 {
        return Err(BenchError::Capture(format!(
            "{failures} flows decode differently here and in tshark"
        )));
    }
    println!("the capture decoder agrees with tshark on every message");
    Ok(())
}

/// Audio and video messages per client port, as tshark's RTMPT dissector sees
/// them (reassembly limit raised to the largest RTMP message). A message's length
/// is its control byte plus its data field.
fn tshark(
    pcap: &std::path::Path,
    relay_port: u16,
    sink_port: u16,
) -> Result<BTreeMap<FlowType, Vec<Entry>>, BenchError> {
    let filter = format!(
        "(tcp.dstport == {relay_port} || tcp.dstport == {sink_port}) && \
         (rtmpt.audio.control || rtmpt.video.control)"
    );
    let output = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-o", "rtmpt.max_packet_size:16777215"])
        .args(["-o", "tcp.desegment_tcp_streams:TRUE"])
        .args(["-d", &format!("tcp.port=={relay_port},rtmpt")])
        .args(["-d", &format!("tcp.port=={sink_port},rtmpt")])
        .args(["-Y", &filter, "-T", "fields"])
        .args(["-e", "frame.time_epoch", "-e", "tcp.srcport"])
        .args(["-e", "rtmpt.audio.data", "-e", "rtmpt.video.data"])
        .args(["-E", "occurrence=a", "-E", "aggregator=;"])
        .output()
        .map_err(|source| BenchError::Spawn {
            program: "tshark".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(BenchError::Setup(format!(
            "tshark failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let bad = |line: &str| {
        BenchError::Capture(format!(
            "unexpected tshark line {:?}",
            line.chars().take(120).collect::<String>()
        ))
    };
    let mut flows: BTreeMap<FlowType, Vec<Entry>> = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [time, port, audio, video] = fields[..] else {
            return Err(bad(line));
        };
        let (seconds, fraction) = time.split_once('.').ok_or_else(|| bad(line))?;
        let time_ns = seconds.parse::<u64>().map_err(|_| bad(line))? * 1_000_000_000
            + format!("{fraction:0<9}")[..9]
                .parse::<u64>()
                .map_err(|_| bad(line))?;
        let port: u16 = port.parse().map_err(|_| bad(line))?;
        for (type_id, data) in [(8u8, audio), (9u8, video)] {
            for hex in data.split(';').filter(|h| !h.is_empty()) {
                let len = 1 + hex.len() as u32 / 2;
                flows
                    .entry((port, type_id))
                    .or_default()
                    .push((len, time_ns));
            }
        }
    }
    Ok(flows)
}
