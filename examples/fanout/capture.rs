//! From a loopback packet capture to RTMP messages with wire times.
//!
//! A pcap file (tcpdump `-w`, any of the link types Linux gives loopback) is read
//! packet by packet; each TCP direction the benchmark cares about (publisher ->
//! relay, relay -> sink: the client side of each connection) is reassembled by
//! sequence number; its byte stream, after the 3073-byte client handshake
//! (C0 + C1 + C2), goes through prism's chunk decoder. Every audio and video
//! message is recorded with the capture time of the segment that completed it:
//! the instant its last byte was on the wire.
//!
//! Anything that would make the figures wrong is an error of the flow (a gap in
//! the sequence space, data before the SYN, an undecodable chunk stream), never
//! silently skipped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::hash::{DefaultHasher, Hasher};
use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use bytes::BytesMut;
use prism::rtmp::chunk::{ChunkDecoder, DecoderLimits, RawMessage};
use prism::rtmp::message::{Message, type_id};
use serde::Serialize;

use crate::error::BenchError;

/// Bytes a client sends before its first chunk: C0 (1) + C1 (1536) + C2 (1536).
pub const CLIENT_HANDSHAKE_LEN: usize = 1 + 1536 + 1536;

/// Out-of-order bytes held per direction before the flow is declared broken.
const MAX_OUT_OF_ORDER: usize = 64 * 1024 * 1024;

/// What a media message is, as far as the measurements care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// A coded video frame that is a keyframe.
    VideoKey,
    /// Any other coded video frame.
    VideoInter,
    /// A video sequence header (decoder configuration).
    VideoConfig,
    /// End of sequence, metadata and other video messages that carry no frame.
    VideoOther,
    /// A coded audio frame.
    AudioFrame,
    /// An audio sequence header.
    AudioConfig,
    /// Any other audio message.
    AudioOther,
}

impl Kind {
    /// A coded video frame (what latency is measured on).
    pub fn is_video_frame(self) -> bool {
        matches!(self, Kind::VideoKey | Kind::VideoInter)
    }

    /// A coded audio frame.
    pub fn is_audio_frame(self) -> bool {
        self == Kind::AudioFrame
    }
}

/// One audio or video message seen on the wire.
#[derive(Debug, Clone, Copy)]
pub struct MediaMessage {
    /// Capture time of the segment that completed the message, ns since the epoch.
    pub time_ns: u64,
    /// What it is.
    pub kind: Kind,
    /// Payload length in bytes.
    pub len: u32,
    /// A hash of the payload, so that the same message is recognised on another
    /// connection whatever timestamps and chunking the relay used.
    pub hash: u64,
}

impl MediaMessage {
    /// Identity of the payload across connections.
    pub fn key(&self) -> (u32, u64) {
        (self.len, self.hash)
    }
}

/// Which side of the relay a direction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    /// Publisher -> relay.
    Publisher,
    /// Relay -> sink.
    Sink,
}

/// One decoded client -> server direction.
#[derive(Debug, Serialize)]
pub struct Flow {
    /// Publisher or sink connection.
    pub role: Role,
    /// The client's (ephemeral) port.
    pub client_port: u16,
    /// The server's port.
    pub server_port: u16,
    /// The stream name of the `publish` command, once seen.
    pub stream: Option<String>,
    /// Capture time of the SYN, ns since the epoch.
    pub syn_ns: Option<u64>,
    /// TCP payload bytes in order (handshake included).
    pub stream_bytes: u64,
    /// What made this flow unusable, if anything.
    pub error: Option<String>,
    /// Audio and video messages in order.
    #[serde(skip)]
    pub media: Vec<MediaMessage>,
    /// Messages of other types by type id (commands, data, control).
    pub other_messages: BTreeMap<u8, u64>,
}

/// Packet-level facts of a capture.
#[derive(Debug, Default, Serialize)]
pub struct CaptureStats {
    /// Packets in the file.
    pub packets: u64,
    /// Packets of the relay's or the sinks' port.
    pub tcp_packets: u64,
    /// Packets cut short by the snap length (none expected: they would be gaps).
    pub truncated: u64,
    /// Segments that repeated bytes already seen (retransmissions).
    pub retransmitted_segments: u64,
}

/// Every interesting flow of a capture.
#[derive(Debug)]
pub struct Decoded {
    /// Client -> server directions, by order of their first packet.
    pub flows: Vec<Flow>,
    /// Packet-level facts.
    pub stats: CaptureStats,
}

/// Decodes `path`: flows to `relay_port` are the publisher's, flows to
/// `sink_port` are the relay's pushes.
pub fn decode_file(path: &Path, relay_port: u16, sink_port: u16) -> Result<Decoded, BenchError> {
    let file = File::open(path).map_err(|e| BenchError::io(path, e))?;
    decode(
        BufReader::with_capacity(1 << 20, file),
        relay_port,
        sink_port,
    )
    .map_err(|e| BenchError::Capture(format!("{}: {e}", path.display())))
}

/// Decodes a pcap stream (see [`decode_file`]).
fn decode(input: impl Read, relay_port: u16, sink_port: u16) -> Result<Decoded, String> {
    let mut reader = PcapReader::new(input)?;
    let mut directions: HashMap<(u32, u16, u32, u16), Direction> = HashMap::new();
    let mut order: Vec<(u32, u16, u32, u16)> = Vec::new();
    let mut stats = CaptureStats::default();
    let linktype = reader.linktype;
    while let Some(packet) = reader.next_packet()? {
        stats.packets += 1;
        if packet.truncated {
            stats.truncated += 1;
        }
        let Some(segment) = parse_tcp(linktype, packet.data) else {
            continue;
        };
        let role = if segment.dst_port == relay_port {
            Role::Publisher
        } else if segment.dst_port == sink_port {
            Role::Sink
        } else {
            continue;
        };
        stats.tcp_packets += 1;
        let key = (
            segment.src_ip,
            segment.src_port,
            segment.dst_ip,
            segment.dst_port,
        );
        let direction = directions.entry(key).or_insert_with(|| {
            order.push(key);
            Direction::new(role, segment.src_port, segment.dst_port)
        });
        if packet.truncated {
            direction.fail("a packet was truncated by the snap length".into());
        }
        direction.segment(&segment, packet.time_ns, &mut stats);
    }
    let flows = order
        .into_iter()
        .filter_map(|key| directions.remove(&key))
        .map(Direction::finish)
        .collect();
    Ok(Decoded { flows, stats })
}

// ---------------------------------------------------------------------------
// pcap

struct Packet<'a> {
    time_ns: u64,
    data: &'a [u8],
    truncated: bool,
}

/// A reader of the classic pcap format (microsecond or nanosecond, either byte order).
struct PcapReader<R> {
    inner: R,
    nanos: bool,
    swapped: bool,
    linktype: u32,
    buf: Vec<u8>,
}

impl<R: Read> PcapReader<R> {
    fn new(mut inner: R) -> Result<Self, String> {
        let mut header = [0u8; 24];
        inner
            .read_exact(&mut header)
            .map_err(|e| format!("pcap header: {e}"))?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let (nanos, swapped) = match magic {
            0xa1b2_c3d4 => (false, false),
            0xa1b2_3c4d => (true, false),
            0xd4c3_b2a1 => (false, true),
            0x4d3c_b2a1 => (true, true),
            _ => {
                return Err(format!(
                    "not a pcap file (magic {magic:#010x}; pcapng is not read)"
                ));
            }
        };
        let mut reader = Self {
            inner,
            nanos,
            swapped,
            linktype: 0,
            buf: Vec::with_capacity(1 << 16),
        };
        reader.linktype = reader.u32_at(&header, 20) & 0x0fff_ffff;
        Ok(reader)
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> u32 {
        let raw = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        if self.swapped {
            u32::from_be_bytes(raw)
        } else {
            u32::from_le_bytes(raw)
        }
    }

    fn next_packet(&mut self) -> Result<Option<Packet<'_>>, String> {
        let mut header = [0u8; 16];
        match self.inner.read_exact(&mut header) {
            Ok(()) => {}
            // tcpdump killed mid-write leaves a partial record: the capture ends there.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(format!("pcap record: {e}")),
        }
        let seconds = u64::from(self.u32_at(&header, 0));
        let fraction = u64::from(self.u32_at(&header, 4));
        let captured = self.u32_at(&header, 8) as usize;
        let original = self.u32_at(&header, 12) as usize;
        if captured > 1 << 20 {
            return Err(format!("pcap record of {captured} bytes: corrupt file"));
        }
        self.buf.resize(captured, 0);
        match self.inner.read_exact(&mut self.buf) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(format!("pcap record: {e}")),
        }
        let time_ns = seconds * 1_000_000_000
            + if self.nanos {
                fraction
            } else {
                fraction * 1000
            };
        Ok(Some(Packet {
            time_ns,
            data: &self.buf,
            truncated: captured < original,
        }))
    }
}

/// A TCP segment over IPv4.
struct Segment<'a> {
    src_ip: u32,
    dst_ip: u32,
    src_port: u16,
    dst_port: u16,
    seq: u32,
    syn: bool,
    payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

/// The IPv4 packet inside a link-layer frame, for the link types of Linux loopback
/// captures.
fn ip_packet(linktype: u32, frame: &[u8]) -> Option<&[u8]> {
    const IPV4: u16 = 0x0800;
    match linktype {
        // Ethernet (what `tcpdump -i lo` records).
        1 => (be16(frame, 12)? == IPV4).then(|| frame.get(14..))?,
        // Linux cooked capture v1 and v2 (`-i any`).
        113 => (be16(frame, 14)? == IPV4).then(|| frame.get(16..))?,
        276 => (be16(frame, 0)? == IPV4).then(|| frame.get(20..))?,
        // BSD loopback: a 4-byte address family in host order (2 = AF_INET).
        0 => (frame.get(..4)? == 2u32.to_ne_bytes()).then(|| frame.get(4..))?,
        // Raw IP.
        12 | 101 | 228 => Some(frame),
        _ => None,
    }
}

fn parse_tcp(linktype: u32, frame: &[u8]) -> Option<Segment<'_>> {
    let ip = ip_packet(linktype, frame)?;
    let first = *ip.first()?;
    if first >> 4 != 4 || *ip.get(9)? != 6 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    // The total length drops the Ethernet padding of short frames.
    let total = usize::from(be16(ip, 2)?).min(ip.len());
    // Loopback never fragments; a fragment here would not be a whole segment.
    if be16(ip, 6)? & 0x3fff != 0 {
        return None;
    }
    let tcp = ip.get(header_len..total)?;
    let data_offset = usize::from(*tcp.get(12)? >> 4) * 4;
    Some(Segment {
        src_ip: be32(ip, 12)?,
        dst_ip: be32(ip, 16)?,
        src_port: be16(tcp, 0)?,
        dst_port: be16(tcp, 2)?,
        seq: be32(tcp, 4)?,
        syn: tcp.get(13)? & 0x02 != 0,
        payload: tcp.get(data_offset..)?,
    })
}

// ---------------------------------------------------------------------------
// TCP reassembly and RTMP decoding of one direction

struct Direction {
    flow: Flow,
    /// Sequence number of the first payload byte (the SYN's + 1).
    base: Option<u32>,
    /// Offset (from `base`) of the next byte the stream needs.
    next: u64,
    /// Segments past a gap, by offset: (capture time, bytes).
    pending: BTreeMap<u64, (u64, Vec<u8>)>,
    pending_bytes: usize,
    rtmp: RtmpStream,
}

impl Direction {
    fn new(role: Role, client_port: u16, server_port: u16) -> Self {
        Self {
            flow: Flow {
                role,
                client_port,
                server_port,
                stream: None,
                syn_ns: None,
                stream_bytes: 0,
                error: None,
                media: Vec::new(),
                other_messages: BTreeMap::new(),
            },
            base: None,
            next: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            rtmp: RtmpStream::new(),
        }
    }

    fn fail(&mut self, error: String) {
        if self.flow.error.is_none() {
            self.flow.error = Some(error);
        }
    }

    fn segment(&mut self, segment: &Segment<'_>, time_ns: u64, stats: &mut CaptureStats) {
        if segment.syn {
            if self.base.is_none() {
                self.base = Some(segment.seq.wrapping_add(1));
                self.flow.syn_ns = Some(time_ns);
            }
            return;
        }
        if segment.payload.is_empty() || self.flow.error.is_some() {
            return;
        }
        let Some(base) = self.base else {
            self.fail("data before the SYN: the capture started mid-connection".into());
            return;
        };
        // Offsets within one connection stay below 4 GiB, so a wrapping difference
        // is the offset even when the sequence numbers wrap.
        let offset = u64::from(segment.seq.wrapping_sub(base));
        let end = offset + segment.payload.len() as u64;
        if end <= self.next {
            stats.retransmitted_segments += 1;
            return;
        }
        if offset > self.next {
            self.pending_bytes += segment.payload.len();
            if let Some((_, old)) = self
                .pending
                .insert(offset, (time_ns, segment.payload.to_vec()))
            {
                self.pending_bytes -= old.len();
            }
            if self.pending_bytes > MAX_OUT_OF_ORDER {
                self.fail(format!(
                    "a gap at stream byte {} never filled: the capture lost packets",
                    self.next
                ));
            }
            return;
        }
        let skip = (self.next - offset) as usize;
        if skip > 0 {
            stats.retransmitted_segments += 1;
        }
        self.deliver(time_ns, &segment.payload[skip..]);
        // Segments that were waiting for this one.
        while let Some(entry) = self.pending.first_entry() {
            let offset = *entry.key();
            if offset > self.next {
                break;
            }
            let (time, bytes) = entry.remove();
            self.pending_bytes -= bytes.len();
            let end = offset + bytes.len() as u64;
            if end > self.next {
                let skip = (self.next - offset) as usize;
                // Bytes become available when the segment that filled the gap
                // arrived, not when this later one was captured.
                self.deliver(time.max(time_ns), &bytes[skip..]);
            }
        }
    }

    fn deliver(&mut self, time_ns: u64, bytes: &[u8]) {
        self.next += bytes.len() as u64;
        self.flow.stream_bytes += bytes.len() as u64;
        if let Err(error) = self.rtmp.feed(time_ns, bytes, &mut self.flow) {
            self.fail(error);
        }
    }

    fn finish(mut self) -> Flow {
        if !self.pending.is_empty() {
            self.fail(format!(
                "a gap at stream byte {} never filled: the capture lost packets",
                self.next
            ));
        }
        self.flow
    }
}

/// The RTMP side of one client -> server byte stream.
struct RtmpStream {
    handshake_left: usize,
    buf: BytesMut,
    chunks: ChunkDecoder,
}

impl RtmpStream {
    fn new() -> Self {
        Self {
            handshake_left: CLIENT_HANDSHAKE_LEN,
            buf: BytesMut::with_capacity(1 << 16),
            chunks: ChunkDecoder::new(DecoderLimits::default()),
        }
    }

    fn feed(&mut self, time_ns: u64, mut bytes: &[u8], flow: &mut Flow) -> Result<(), String> {
        if self.handshake_left > 0 {
            let skip = self.handshake_left.min(bytes.len());
            self.handshake_left -= skip;
            bytes = &bytes[skip..];
        }
        self.buf.extend_from_slice(bytes);
        while let Some(message) = self
            .chunks
            .decode(&mut self.buf)
            .map_err(|e| format!("chunk stream: {e}"))?
        {
            self.message(time_ns, message, flow)?;
        }
        Ok(())
    }

    fn message(
        &mut self,
        time_ns: u64,
        message: RawMessage,
        flow: &mut Flow,
    ) -> Result<(), String> {
        let kind = match message.type_id {
            type_id::VIDEO => video_kind(&message.payload),
            type_id::AUDIO => audio_kind(&message.payload),
            other => {
                *flow.other_messages.entry(other).or_default() += 1;
                match Message::decode(other, message.payload) {
                    Ok(Message::SetChunkSize(size)) => self
                        .chunks
                        .set_chunk_size(size)
                        .map_err(|e| format!("set chunk size: {e}"))?,
                    Ok(Message::Abort(csid)) => self.chunks.abort(csid),
                    Ok(Message::Command(command)) if command.name == "publish" => {
                        flow.stream = command.first_string_arg().map(str::to_owned);
                    }
                    _ => {}
                }
                return Ok(());
            }
        };
        let mut hasher = DefaultHasher::new();
        hasher.write(&message.payload);
        flow.media.push(MediaMessage {
            time_ns,
            kind,
            len: message.payload.len() as u32,
            hash: hasher.finish(),
        });
        Ok(())
    }
}

/// Classifies an FLV video tag body (legacy and enhanced RTMP headers).
fn video_kind(payload: &[u8]) -> Kind {
    let Some(&first) = payload.first() else {
        return Kind::VideoOther;
    };
    let frame_type = (first >> 4) & 0x07;
    if frame_type == 5 {
        // Video info / command frame.
        return Kind::VideoOther;
    }
    let frame = if frame_type == 1 {
        Kind::VideoKey
    } else {
        Kind::VideoInter
    };
    if first & 0x80 != 0 {
        // Enhanced RTMP: the packet type is the low nibble.
        return match first & 0x0f {
            0 => Kind::VideoConfig,
            1 | 3 => frame,
            _ => Kind::VideoOther,
        };
    }
    match first & 0x0f {
        // AVC and legacy HEVC: AVCPacketType follows.
        7 | 12 => match payload.get(1) {
            Some(0) => Kind::VideoConfig,
            Some(1) => frame,
            _ => Kind::VideoOther,
        },
        _ => frame,
    }
}

/// Classifies an FLV audio tag body.
fn audio_kind(payload: &[u8]) -> Kind {
    let Some(&first) = payload.first() else {
        return Kind::AudioOther;
    };
    match first >> 4 {
        // AAC: AACPacketType follows.
        10 => match payload.get(1) {
            Some(0) => Kind::AudioConfig,
            Some(1) => Kind::AudioFrame,
            _ => Kind::AudioOther,
        },
        // Enhanced RTMP audio: the packet type is the low nibble.
        9 => match first & 0x0f {
            0 => Kind::AudioConfig,
            1 => Kind::AudioFrame,
            _ => Kind::AudioOther,
        },
        _ => Kind::AudioFrame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use prism::rtmp::amf0::Amf0Value;
    use prism::rtmp::chunk::{ChunkEncoder, MessageHeader, OutBuf};
    use prism::rtmp::message::Command;

    const CLIENT: u16 = 40000;
    const RELAY: u16 = 1935;
    const SINK: u16 = 1940;

    fn drain(out: &mut OutBuf) -> Vec<u8> {
        let mut bytes = Vec::new();
        while !out.is_empty() {
            let mut slices = [std::io::IoSlice::new(&[]); 64];
            let count = out.io_slices(&mut slices);
            let n: usize = slices[..count].iter().map(|s| s.len()).sum();
            for slice in &slices[..count] {
                bytes.extend_from_slice(slice);
            }
            out.advance(n);
        }
        bytes
    }

    /// What a publisher sends: handshake, Set Chunk Size 4096, publish, a video
    /// sequence header, a 10 kB keyframe, an AAC frame. Returns the bytes and
    /// the offset just past the keyframe's last byte.
    fn client_stream() -> (Vec<u8>, usize) {
        let mut encoder = ChunkEncoder::new();
        let mut out = OutBuf::new();
        let header = |csid, type_id, stream_id| MessageHeader {
            csid,
            timestamp: 0,
            type_id,
            stream_id,
        };
        let mut bytes = vec![3u8; CLIENT_HANDSHAKE_LEN];
        encoder.encode(
            &header(2, 1, 0),
            &Bytes::from_static(&[0, 0, 16, 0]),
            &mut out,
        );
        encoder.set_chunk_size(4096);
        let publish = Command::new(
            "publish",
            5.0,
            Amf0Value::Null,
            vec![
                Amf0Value::String("sink7".into()),
                Amf0Value::String("live".into()),
            ],
        );
        encoder.encode(&header(3, 20, 1), &publish.encode(), &mut out);
        encoder.encode(
            &header(6, 9, 1),
            &Bytes::from_static(&[0x17, 0, 0, 0, 0, 1]),
            &mut out,
        );
        let keyframe: Vec<u8> = [0x17, 1, 0, 0, 0]
            .into_iter()
            .chain((0..10_000u32).map(|i| i as u8))
            .collect();
        encoder.encode(&header(6, 9, 1), &Bytes::from(keyframe), &mut out);
        bytes.extend(drain(&mut out));
        let keyframe_end = bytes.len();
        encoder.encode(
            &header(4, 8, 1),
            &Bytes::from_static(&[0xaf, 1, 9, 9]),
            &mut out,
        );
        bytes.extend(drain(&mut out));
        (bytes, keyframe_end)
    }

    fn packet(pcap: &mut Vec<u8>, time_ns: u64, seq: u32, syn: bool, payload: &[u8]) {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        let total = (20 + 20 + payload.len()) as u16;
        frame.extend_from_slice(&[0x45, 0]);
        frame.extend_from_slice(&total.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        frame.extend_from_slice(&CLIENT.to_be_bytes());
        frame.extend_from_slice(&RELAY.to_be_bytes());
        frame.extend_from_slice(&seq.to_be_bytes());
        frame.extend_from_slice(&[
            0,
            0,
            0,
            0,
            0x50,
            if syn { 0x02 } else { 0x18 },
            0xff,
            0xff,
            0,
            0,
            0,
            0,
        ]);
        frame.extend_from_slice(payload);
        pcap.extend_from_slice(&((time_ns / 1_000_000_000) as u32).to_le_bytes());
        pcap.extend_from_slice(&((time_ns % 1_000_000_000) as u32).to_le_bytes());
        pcap.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        pcap.extend_from_slice(&frame);
    }

    fn pcap_header() -> Vec<u8> {
        let mut pcap = Vec::new();
        pcap.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        pcap.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        pcap.extend_from_slice(&262_144u32.to_le_bytes());
        pcap.extend_from_slice(&1u32.to_le_bytes());
        pcap
    }

    #[test]
    fn reassembles_out_of_order_and_retransmitted_segments() {
        let (stream, keyframe_end) = client_stream();
        let isn = u32::MAX - 100; // sequence numbers wrap inside the stream
        let mut pcap = pcap_header();
        packet(&mut pcap, 1_000, isn, true, &[]);
        let segments: Vec<(usize, &[u8])> = stream
            .chunks(1448)
            .enumerate()
            .map(|(i, s)| (i * 1448, s))
            .collect();
        // The segment holding the keyframe's last byte arrives before the one
        // before it, which is also retransmitted.
        let last = segments
            .iter()
            .position(|(offset, s)| offset + s.len() >= keyframe_end)
            .unwrap();
        let mut order: Vec<usize> = (0..segments.len()).collect();
        order.swap(last - 1, last);
        order.insert(last + 1, last - 1);
        for (i, &index) in order.iter().enumerate() {
            let (offset, bytes) = segments[index];
            let seq = isn.wrapping_add(1).wrapping_add(offset as u32);
            packet(&mut pcap, 2_000 + i as u64, seq, false, bytes);
        }
        let decoded = decode(pcap.as_slice(), RELAY, SINK).unwrap();
        assert_eq!(decoded.flows.len(), 1);
        let flow = &decoded.flows[0];
        assert_eq!(flow.error, None);
        assert_eq!(flow.role, Role::Publisher);
        assert_eq!(flow.stream.as_deref(), Some("sink7"));
        assert_eq!(flow.stream_bytes, stream.len() as u64);
        assert_eq!(decoded.stats.retransmitted_segments, 1);
        let kinds: Vec<Kind> = flow.media.iter().map(|m| m.kind).collect();
        assert_eq!(kinds, [Kind::VideoConfig, Kind::VideoKey, Kind::AudioFrame]);
        let keyframe = flow.media[1];
        assert_eq!(keyframe.len, 10_005);
        // Complete only once the late segment filled the gap: the keyframe's
        // time is that segment's, not the earlier capture of its last bytes.
        let filler_time = 2_000 + order.iter().position(|&i| i == last - 1).unwrap() as u64;
        assert_eq!(keyframe.time_ns, filler_time);
    }

    #[test]
    fn a_missing_segment_is_an_error() {
        let (stream, _) = client_stream();
        let mut pcap = pcap_header();
        packet(&mut pcap, 1_000, 0, true, &[]);
        for (i, bytes) in stream.chunks(1448).enumerate().filter(|(i, _)| *i != 5) {
            packet(
                &mut pcap,
                2_000 + i as u64,
                1 + (i * 1448) as u32,
                false,
                bytes,
            );
        }
        let decoded = decode(pcap.as_slice(), RELAY, SINK).unwrap();
        let error = decoded.flows[0].error.as_deref().unwrap();
        assert!(error.contains("lost packets"), "{error}");
    }

    #[test]
    fn data_without_a_syn_is_an_error() {
        let (stream, _) = client_stream();
        let mut pcap = pcap_header();
        packet(&mut pcap, 2_000, 1, false, &stream[..1000]);
        let decoded = decode(pcap.as_slice(), RELAY, SINK).unwrap();
        let error = decoded.flows[0].error.as_deref().unwrap();
        assert!(error.contains("before the SYN"), "{error}");
    }

    #[test]
    fn classifies_avc_and_aac() {
        assert_eq!(video_kind(&[0x17, 0, 0, 0, 0]), Kind::VideoConfig);
        assert_eq!(video_kind(&[0x17, 1, 0, 0, 0]), Kind::VideoKey);
        assert_eq!(video_kind(&[0x27, 1, 0, 0, 0]), Kind::VideoInter);
        assert_eq!(video_kind(&[0x17, 2, 0, 0, 0]), Kind::VideoOther);
        assert_eq!(audio_kind(&[0xaf, 0]), Kind::AudioConfig);
        assert_eq!(audio_kind(&[0xaf, 1, 7]), Kind::AudioFrame);
    }
}
