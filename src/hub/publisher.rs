//! The publishing side of a stream: classifies each message (sequence header,
//! keyframe, a frame that came before its decoder's configuration), keeps what
//! joiners need, and fans the packet out to every subscriber's queue.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::{Bytes, BytesMut};

use super::arena::PayloadArena;
use super::directory::Directory;
use super::inputs::{Admission, InputRole};
use super::packet::{Packet, PacketKind};
use super::stream::Stream;
use crate::flv::TagType;
use crate::rtmp::amf0::{self, Amf0Value};

/// The publishing side of a stream: its publisher, a backup publisher or the
/// standby slate (see [`InputRole`]). Dropping the primary ends the stream for its
/// subscribers; dropping another input only takes it off the stream.
#[derive(Debug)]
pub struct Publisher {
    pub(super) hub: Arc<Directory>,
    pub(super) stream: Arc<Stream>,
    pub(super) id: u64,
    pub(super) role: InputRole,
    /// Where its small media payloads are copied (see [`PayloadArena`]).
    arena: Mutex<PayloadArena>,
}

impl Publisher {
    pub(super) fn new(hub: Arc<Directory>, stream: Arc<Stream>, id: u64, role: InputRole) -> Self {
        Self {
            hub,
            stream,
            id,
            role,
            arena: Mutex::default(),
        }
    }

    /// Its id among the stream's inputs (see [`Stream::primary_heard`]).
    pub fn input_id(&self) -> u64 {
        self.id
    }

    /// For the standby slate: whether to go on playing it. It is wanted while no
    /// publisher is on air (none connected, or the one connected is silent), and
    /// stays on air until the input replacing it reaches its keyframe; either way
    /// only while someone is there to see it (the stream is in its grace period,
    /// or has subscribers: destinations, players waiting). The slate's player
    /// stops when this turns false.
    pub fn standby_needed(&self) -> bool {
        let state = self.stream.lock();
        let audience = state.in_grace || !state.subscribers.is_empty();
        audience && (state.inputs.is_on_air(self.id) || state.inputs.standby_wanted(self.id))
    }

    /// The stream this publisher feeds.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// Records the publisher's address for status.
    pub fn set_peer(&self, peer: SocketAddr) {
        self.stream.lock().peer = Some(peer);
    }

    /// Replaces the stream's metadata and sends it to subscribers.
    pub fn set_metadata(&self, metadata: &Amf0Value, timestamp: u32) {
        self.stream.lock().media.on_metadata(metadata);
        let mut body = BytesMut::with_capacity(256);
        amf0::encode(&Amf0Value::from("onMetaData"), &mut body);
        amf0::encode(metadata, &mut body);
        self.push(Packet {
            kind: PacketKind::Metadata,
            timestamp,
            payload: body.freeze(),
            keyframe: false,
            sequence_header: false,
        });
    }

    /// Classifies and pushes an audio message. A frame whose codec needs a sequence
    /// header (AAC, Opus, FLAC) that has not arrived yet is dropped: no decoder can
    /// use it, and a platform that gets raw AAC before its configuration may show the
    /// stream as live without media.
    pub fn push_audio(&self, timestamp: u32, payload: Bytes) {
        let (packet, needs_header) = Packet::audio(timestamp, payload);
        self.push_checked(packet, needs_header);
    }

    /// Classifies and pushes a video message (see [`Packet::video`]).
    pub fn push_video(&self, timestamp: u32, payload: Bytes) {
        let (packet, needs_header) = Packet::video(timestamp, payload);
        self.push_checked(packet, needs_header);
    }

    /// Pushes another data message (cue points, captions) as is.
    pub fn push_data(&self, timestamp: u32, payload: Bytes) {
        self.push(Packet {
            kind: PacketKind::Data,
            timestamp,
            payload,
            keyframe: false,
            sequence_header: false,
        });
    }

    /// Pushes one FLV tag as the RTMP message it carries: audio, video, the
    /// stream's metadata (`onMetaData`) or another data message. For inputs that
    /// arrive as FLV (an encoder's output, an HTTP push).
    pub fn push_flv_tag(&self, tag_type: TagType, timestamp: u32, data: Bytes) {
        match tag_type {
            TagType::Audio => self.push_audio(timestamp, data),
            TagType::Video => self.push_video(timestamp, data),
            TagType::Script => match amf0::decode_all(&data) {
                Ok(values) if values.first().and_then(Amf0Value::as_str) == Some("onMetaData") => {
                    if let Some(metadata) = values.get(1) {
                        self.set_metadata(metadata, timestamp);
                    }
                }
                _ => self.push_data(timestamp, data),
            },
        }
    }

    /// Delivers what was pushed since the last flush to every subscriber (see
    /// [`SubscriberQueue::flush`](super::SubscriberQueue::flush)). The publisher's
    /// connection calls it once per batch it read, so a subscriber is woken, or
    /// written to, once per batch rather than once per packet. Never waits on a
    /// subscriber.
    ///
    /// The writes to destinations that keep up happen here, outside the stream's
    /// lock: the status API and joiners never wait for N sockets (see
    /// `subscriber_list`).
    pub fn flush(&self) {
        let subscribers = {
            let state = self.stream.lock();
            if !state.inputs.is_on_air(self.id) {
                return;
            }
            state.subscribers.share()
        };
        for queue in subscribers.iter() {
            queue.flush();
        }
    }

    /// Queues one packet for every subscriber; [`flush`](Self::flush) delivers it.
    /// Never waits on a subscriber.
    pub fn push(&self, packet: Packet) {
        self.push_checked(packet, false);
    }

    /// Pushes a packet whose payload is held elsewhere for good (the standby slate's
    /// cache), so it is shared as it is, never copied (see
    /// [`Packet::own_small_payload`]).
    pub fn push_cached(&self, packet: Packet) {
        self.admit(packet, false);
    }

    /// [`push`](Self::push) for a frame that, when `needs_header`, is dropped while
    /// its track has no sequence header yet (see [`push_audio`](Self::push_audio)).
    fn push_checked(&self, mut packet: Packet, needs_header: bool) {
        // Before the stream's lock: the copy, when there is one, is the
        // publisher's alone (its arena is locked by no one else).
        let mut arena = self.arena.lock().unwrap_or_else(PoisonError::into_inner);
        packet.own_small_payload(&mut arena);
        drop(arena);
        self.admit(packet, needs_header);
    }

    /// Hands `packet` to the stream when this input is on air (or goes on air with
    /// it), and queues it for every subscriber.
    fn admit(&self, mut packet: Packet, needs_header: bool) {
        let mut guard = self.stream.lock();
        let state = &mut *guard;
        match state.inputs.admit(self.id, &mut packet) {
            Admission::OnAir => {}
            Admission::Held | Admission::Stranger => return,
            Admission::SwitchTo(config) => {
                tracing::info!(
                    stream = %crate::mask::Masked(&self.stream.name),
                    input = self.role.as_str(),
                    "input on air"
                );
                for mut config_packet in config.into_iter().flatten() {
                    state.record(&mut config_packet);
                    state.fan_out(&self.stream.name, &config_packet);
                }
            }
        }
        if needs_header {
            let header = match packet.kind {
                PacketKind::Audio => &state.audio_header,
                _ => &state.video_header,
            };
            if header.is_none() {
                state.early_frames += 1;
                if state.early_frames == 1 {
                    tracing::warn!(
                        stream = %crate::mask::Masked(&self.stream.name),
                        track = ?packet.track(),
                        "a frame arrived before its track's sequence header; such frames \
                         are dropped (no decoder can use them)"
                    );
                }
                return;
            }
        }
        state.record(&mut packet);
        state.fan_out(&self.stream.name, &packet);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.flush();
        {
            let mut state = self.stream.lock();
            if self.role != InputRole::Primary {
                state.inputs.leave(self.id);
                return;
            }
            if state.publisher != Some(self.id) {
                return;
            }
            state.publisher = None;
            state.end();
        }
        self.hub.release_live();
        self.hub.remove_if_idle(&self.stream);
    }
}
