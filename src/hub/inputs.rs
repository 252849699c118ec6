//! Which input a stream sends: its publisher (the primary), a backup publisher, or
//! the standby slate; and one continuous timeline across the switches between them.
//!
//! A platform ends a broadcast when its stream stops, and its decoder breaks when
//! timestamps jump or a frame arrives whose references it never had. So a stream
//! can have up to three inputs, and exactly one is on air:
//!
//! - the **primary** (the publisher that started the stream) whenever it is
//!   connected;
//! - else the **backup** (a second publisher that asked for `role=backup`);
//! - else the **standby** slate, which the server plays while the primary is away.
//!
//! When the input that should be on air changes, the switch waits for the new
//! input's next keyframe (a decoder can start there), and sends that input's
//! decoder configuration (metadata, sequence headers) just before it: until then
//! the old input stays on air, so nothing stops. Packets of inputs that are not on
//! air are dropped, except their configuration, which is kept for the switch.
//!
//! Each input stamps its packets with its own clock (an encoder that reconnects
//! starts again at zero, the slate loops from zero). At a switch the new input's
//! timestamps are offset so that its keyframe lands one frame interval after the
//! last video frame sent: subscribers see one stream whose timestamps never jump.
//! Audio of the new input stamped before the last audio sent is dropped, so no
//! track goes back. A stream that never switched keeps its publisher's timestamps
//! unchanged (offset zero), as before inputs existed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::packet::{Packet, PacketKind};

/// One of a stream's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputRole {
    /// The publisher that started the stream.
    Primary,
    /// A second publisher, on air while the primary is away.
    Backup,
    /// The standby slate, on air while no publisher is.
    Standby,
}

impl InputRole {
    /// Its name in status, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            InputRole::Primary => "primary",
            InputRole::Backup => "backup",
            InputRole::Standby => "standby",
        }
    }
}

/// What an input is and the decoder configuration it sent last.
#[derive(Debug)]
struct Slot {
    id: u64,
    /// Metadata, video sequence header, audio sequence header.
    config: [Option<Packet>; 3],
}

impl Slot {
    fn new(id: u64) -> Self {
        Self {
            id,
            config: [None, None, None],
        }
    }

    fn keep_config(&mut self, packet: &Packet) {
        let index = match packet.kind {
            PacketKind::Metadata => 0,
            PacketKind::Video => 1,
            _ => 2,
        };
        self.config[index] = Some(packet.clone());
    }
}

/// The stream's timeline: the offset of the input on air and what was sent last.
#[derive(Debug, Default)]
struct Timeline {
    /// Added (wrapping) to the on-air input's timestamps.
    offset: u32,
    last_video: Option<u32>,
    last_audio: Option<u32>,
    /// Milliseconds between the last two video frames sent.
    frame_interval: u32,
    /// After a switch: audio stamped before this is dropped (its track would go
    /// back). Cleared by the first audio frame at or after it.
    audio_floor: Option<u32>,
}

/// A frame interval used before two frames were seen.
const DEFAULT_FRAME_INTERVAL_MS: u32 = 33;
/// Steps between video frames above this are gaps, not the frame rate.
const MAX_FRAME_INTERVAL_MS: u32 = 200;

/// What becomes of a packet an input pushed.
#[derive(Debug)]
pub(super) enum Admission {
    /// Send it (its timestamp is now on the stream's timeline).
    OnAir,
    /// This input goes on air with this packet: send its configuration (on the
    /// stream's timeline), then the packet.
    SwitchTo([Option<Packet>; 3]),
    /// Not on air: dropped (configuration is kept for a later switch).
    Held,
    /// Not an input of this stream (any more).
    Stranger,
}

/// A stream's inputs and which one is on air.
#[derive(Debug, Default)]
pub(super) struct Inputs {
    primary: Option<Slot>,
    backup: Option<Slot>,
    standby: Option<Slot>,
    on_air: Option<u64>,
    timeline: Timeline,
    /// Whether anything was sent on this timeline yet.
    started: bool,
    /// Packets the primary pushed (see [`Inputs::primary_heard`]).
    primary_heard: u64,
    /// The primary is connected but sends nothing (see
    /// [`Inputs::set_primary_silent`]).
    primary_silent: bool,
    /// The latest times the slate was on air (start, end; end `None` while it is),
    /// newest last, for the standby time each destination saw.
    standby_periods: VecDeque<(Instant, Option<Instant>)>,
    /// Slate time of periods no longer in `standby_periods`.
    standby_older: Duration,
}

/// Slate periods kept for per-destination accounting; older ones only count in
/// the stream's total.
const STANDBY_PERIODS_KEPT: usize = 32;

impl Inputs {
    fn slot(&self, role: InputRole) -> &Option<Slot> {
        match role {
            InputRole::Primary => &self.primary,
            InputRole::Backup => &self.backup,
            InputRole::Standby => &self.standby,
        }
    }

    fn slot_mut(&mut self, role: InputRole) -> &mut Option<Slot> {
        match role {
            InputRole::Primary => &mut self.primary,
            InputRole::Backup => &mut self.backup,
            InputRole::Standby => &mut self.standby,
        }
    }

    /// The role of input `id`, if it is one of this stream's.
    pub(super) fn role_of(&self, id: u64) -> Option<InputRole> {
        [InputRole::Primary, InputRole::Backup, InputRole::Standby]
            .into_iter()
            .find(|role| self.slot(*role).as_ref().is_some_and(|s| s.id == id))
    }

    /// Whether an input has `role`.
    pub(super) fn has(&self, role: InputRole) -> bool {
        self.slot(role).is_some()
    }

    /// The role of the input on air now.
    pub(super) fn on_air(&self) -> Option<InputRole> {
        self.on_air.and_then(|id| self.role_of(id))
    }

    /// Whether input `id` is on air.
    pub(super) fn is_on_air(&self, id: u64) -> bool {
        self.on_air == Some(id)
    }

    /// Puts input `id` (or nothing) on air, timing the slate's periods.
    fn set_on_air(&mut self, id: Option<u64>) {
        let standby = self.standby.as_ref().map(|s| s.id);
        let was = self.on_air.is_some() && self.on_air == standby;
        let is = id.is_some() && id == standby;
        self.on_air = id;
        if was == is {
            return;
        }
        let now = Instant::now();
        if is {
            if self.standby_periods.len() == STANDBY_PERIODS_KEPT
                && let Some((start, Some(end))) = self.standby_periods.pop_front()
            {
                self.standby_older += end - start;
            }
            self.standby_periods.push_back((now, None));
        } else if let Some((_, end @ None)) = self.standby_periods.back_mut() {
            *end = Some(now);
        }
    }

    /// Time the slate was on air since `since` (all of it with `None`).
    pub(super) fn standby_time(&self, since: Option<Instant>) -> Duration {
        let now = Instant::now();
        let kept: Duration = self
            .standby_periods
            .iter()
            .map(|&(start, end)| {
                let start = since.map_or(start, |since| start.max(since));
                end.unwrap_or(now).saturating_duration_since(start)
            })
            .sum();
        match since {
            None => kept + self.standby_older,
            Some(_) => kept,
        }
    }

    /// The input that should be on air: the primary, else the backup, else the
    /// standby slate.
    fn wanted(&self) -> Option<u64> {
        self.primary
            .as_ref()
            .filter(|_| !self.primary_silent)
            .or(self.backup.as_ref())
            .or(self.standby.as_ref())
            .map(|s| s.id)
    }

    /// Whether the standby input `id` is wanted: no publisher is connected, or
    /// the primary fell silent and there is no backup.
    pub(super) fn standby_wanted(&self, id: u64) -> bool {
        self.standby.as_ref().is_some_and(|s| s.id == id) && self.wanted() == Some(id)
    }

    /// Packets the primary pushed so far (on air or not): a watchdog that sees
    /// this stand still knows the encoder went silent with its connection open.
    pub(super) fn primary_heard(&self) -> u64 {
        self.primary_heard
    }

    /// Marks the primary `id` silent (its connection is open but nothing comes):
    /// the backup or the slate is wanted instead until it sends again (its next
    /// packet clears the mark, and it goes back on air at its keyframe).
    pub(super) fn set_primary_silent(&mut self, id: u64) {
        if self.primary.as_ref().is_some_and(|s| s.id == id) {
            self.primary_silent = true;
        }
    }

    /// Adds input `id` as `role`. A primary on a stream that never sent anything
    /// goes on air at once, with its own timestamps (a stream's normal start);
    /// every other input waits for its keyframe.
    pub(super) fn join(&mut self, role: InputRole, id: u64) {
        *self.slot_mut(role) = Some(Slot::new(id));
        if role == InputRole::Primary {
            self.primary_silent = false;
        }
        if !self.started && role == InputRole::Primary {
            self.set_on_air(Some(id));
        }
    }

    /// Input `id` left: it is off air at once (the next wanted input goes on air at
    /// its keyframe).
    pub(super) fn leave(&mut self, id: u64) {
        if self.on_air == Some(id) {
            self.set_on_air(None);
        }
        if let Some(role) = self.role_of(id) {
            *self.slot_mut(role) = None;
            if role == InputRole::Primary {
                self.primary_silent = false;
            }
        }
    }

    /// Takes whatever is on air off air (the next input goes on air at its
    /// keyframe), keeping the timeline.
    pub(super) fn off_air(&mut self) {
        self.set_on_air(None);
    }

    /// Forgets every input and the timeline: the stream ended.
    pub(super) fn reset(&mut self) {
        self.set_on_air(None);
        let periods = std::mem::take(&mut self.standby_periods);
        let older = self.standby_older;
        *self = Self {
            standby_periods: periods,
            standby_older: older,
            ..Self::default()
        };
    }

    /// The latest timestamp the stream sent (audio or video, on the stream's
    /// timeline), while an input is on air: where something inserted now goes.
    pub(super) fn on_air_time(&self) -> Option<u32> {
        self.on_air?;
        match (self.timeline.last_video, self.timeline.last_audio) {
            (Some(video), Some(audio)) => {
                // The later of the two, across a wrap of the 32-bit clock.
                Some(if (audio.wrapping_sub(video) as i32) > 0 {
                    audio
                } else {
                    video
                })
            }
            (video, audio) => video.or(audio),
        }
    }

    /// Decides what happens to `packet` from input `id`, putting its timestamp on
    /// the stream's timeline when it is sent.
    pub(super) fn admit(&mut self, id: u64, packet: &mut Packet) -> Admission {
        if self.primary.as_ref().is_some_and(|s| s.id == id) {
            self.primary_heard = self.primary_heard.wrapping_add(1);
            self.primary_silent = false;
        }
        if self.on_air == Some(id) {
            if packet.is_config()
                && let Some(role) = self.role_of(id)
                && let Some(slot) = self.slot_mut(role)
            {
                // Kept for when this input comes back on air after another.
                slot.keep_config(packet);
            }
            // The input on air stays on air until the one that should replace it
            // reaches a keyframe.
            return self.place(packet);
        }
        let Some(role) = self.role_of(id) else {
            return Admission::Stranger;
        };
        if packet.is_config() {
            if let Some(slot) = self.slot_mut(role) {
                slot.keep_config(packet);
            }
            return Admission::Held;
        }
        if self.wanted() != Some(id) || !self.can_start(role, packet) {
            return Admission::Held;
        }
        // The switch: this input's keyframe follows the last frame sent.
        self.set_on_air(Some(id));
        if self.started {
            let target = match (self.timeline.last_video, self.timeline.last_audio) {
                (Some(video), _) => video.wrapping_add(self.timeline.frame_interval.max(1)),
                (None, Some(audio)) => audio.wrapping_add(1),
                (None, None) => packet.timestamp,
            };
            self.timeline.offset = target.wrapping_sub(packet.timestamp);
            self.timeline.audio_floor = self.timeline.last_audio;
        } else {
            self.timeline.offset = 0;
        }
        let at = packet.timestamp.wrapping_add(self.timeline.offset);
        let mut config = self
            .slot(role)
            .as_ref()
            .map(|s| s.config.clone())
            .unwrap_or_default();
        for packet in config.iter_mut().flatten() {
            packet.timestamp = at;
        }
        match self.place(packet) {
            Admission::OnAir => Admission::SwitchTo(config),
            other => other,
        }
    }

    /// Whether `packet` of an input waiting to go on air is where it may start: a
    /// video keyframe, or any audio frame of an input that has sent no video.
    fn can_start(&self, role: InputRole, packet: &Packet) -> bool {
        match packet.kind {
            PacketKind::Video => packet.keyframe,
            PacketKind::Audio => self
                .slot(role)
                .as_ref()
                .is_some_and(|s| s.config[1].is_none()),
            _ => false,
        }
    }

    /// Moves a packet of the on-air input onto the timeline.
    fn place(&mut self, packet: &mut Packet) -> Admission {
        let timeline = &mut self.timeline;
        let at = packet.timestamp.wrapping_add(timeline.offset);
        if packet.is_config() {
            packet.timestamp = at;
            return Admission::OnAir;
        }
        match packet.kind {
            PacketKind::Audio => {
                if let Some(floor) = timeline.audio_floor {
                    if (at.wrapping_sub(floor) as i32) < 0 {
                        return Admission::Held;
                    }
                    timeline.audio_floor = None;
                }
                timeline.last_audio = Some(at);
            }
            PacketKind::Video => {
                if let Some(last) = timeline.last_video {
                    let step = at.wrapping_sub(last);
                    if step > 0 && step <= MAX_FRAME_INTERVAL_MS {
                        timeline.frame_interval = step;
                    }
                } else {
                    timeline.frame_interval = DEFAULT_FRAME_INTERVAL_MS;
                }
                timeline.last_video = Some(at);
            }
            _ => {}
        }
        packet.timestamp = at;
        self.started = true;
        Admission::OnAir
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn video(ts: u32, keyframe: bool) -> Packet {
        Packet {
            kind: PacketKind::Video,
            timestamp: ts,
            payload: Bytes::from_static(b"v"),
            keyframe,
            sequence_header: false,
        }
    }

    fn audio(ts: u32) -> Packet {
        Packet {
            kind: PacketKind::Audio,
            timestamp: ts,
            payload: Bytes::from_static(b"a"),
            keyframe: false,
            sequence_header: false,
        }
    }

    fn header(ts: u32) -> Packet {
        Packet {
            sequence_header: true,
            ..video(ts, false)
        }
    }

    fn admit(inputs: &mut Inputs, id: u64, mut packet: Packet) -> (&'static str, u32) {
        let admission = match inputs.admit(id, &mut packet) {
            Admission::OnAir => "on air",
            Admission::SwitchTo(_) => "switch",
            Admission::Held => "held",
            Admission::Stranger => "stranger",
        };
        (admission, packet.timestamp)
    }

    #[test]
    fn a_stream_that_never_switches_keeps_its_timestamps() {
        let mut inputs = Inputs::default();
        inputs.join(InputRole::Primary, 1);
        assert_eq!(admit(&mut inputs, 1, header(0)), ("on air", 0));
        assert_eq!(admit(&mut inputs, 1, video(5_000, false)).1, 5_000);
        assert_eq!(admit(&mut inputs, 1, audio(5_010)).1, 5_010);
    }

    #[test]
    fn the_slate_continues_the_timeline_and_the_returning_publisher_continues_it_again() {
        let mut inputs = Inputs::default();
        inputs.join(InputRole::Primary, 1);
        for ts in (0..=990).step_by(33) {
            admit(&mut inputs, 1, video(ts, ts == 0));
            admit(&mut inputs, 1, audio(ts + 40));
        }
        // The publisher drops; the slate joins and starts at its keyframe.
        inputs.leave(1);
        inputs.join(InputRole::Standby, 2);
        assert_eq!(admit(&mut inputs, 2, header(0)).0, "held");
        let mut keyframe = video(0, true);
        let Admission::SwitchTo(config) = inputs.admit(2, &mut keyframe) else {
            panic!("the slate's keyframe switches")
        };
        let ts = keyframe.timestamp;
        assert_eq!(ts, 990 + 33, "one frame interval after the last frame");
        assert_eq!(config[1].as_ref().unwrap().timestamp, ts);
        // Its first audio, stamped before the last audio sent, is dropped.
        assert_eq!(admit(&mut inputs, 2, audio(0)).0, "held");
        assert_eq!(admit(&mut inputs, 2, audio(21)), ("on air", 990 + 33 + 21));
        assert_eq!(admit(&mut inputs, 2, video(33, false)).1, 990 + 66);
        // The publisher returns at 0: the slate stays on air until its keyframe.
        inputs.join(InputRole::Primary, 3);
        assert_eq!(admit(&mut inputs, 3, header(0)).0, "held");
        assert_eq!(admit(&mut inputs, 3, video(0, false)).0, "held");
        assert!(!inputs.standby_wanted(2));
        let (admission, ts) = admit(&mut inputs, 3, video(40, true));
        assert_eq!(admission, "switch");
        assert_eq!(ts, 990 + 66 + 33);
        assert_eq!(admit(&mut inputs, 2, video(66, false)).0, "held");
        assert_eq!(inputs.on_air(), Some(InputRole::Primary));
    }

    #[test]
    fn the_backup_goes_on_air_at_its_keyframe_and_back_off_when_the_primary_returns() {
        let mut inputs = Inputs::default();
        inputs.join(InputRole::Primary, 1);
        inputs.join(InputRole::Backup, 2);
        admit(&mut inputs, 1, video(100, true));
        assert_eq!(admit(&mut inputs, 2, video(7_000, true)).0, "held");
        inputs.leave(1);
        assert_eq!(admit(&mut inputs, 2, video(7_033, false)).0, "held");
        let (admission, ts) = admit(&mut inputs, 2, video(7_066, true));
        assert_eq!(admission, "switch");
        assert_eq!(ts, 133);
        assert_eq!(inputs.on_air(), Some(InputRole::Backup));
        inputs.join(InputRole::Primary, 3);
        assert_eq!(admit(&mut inputs, 2, video(7_099, false)).1, 166);
        assert_eq!(admit(&mut inputs, 3, video(0, true)).0, "switch");
        assert_eq!(admit(&mut inputs, 2, video(7_132, false)).0, "held");
    }

    #[test]
    fn a_silent_primary_gives_way_to_the_slate_and_comes_back_with_its_headers() {
        let mut inputs = Inputs::default();
        inputs.join(InputRole::Primary, 1);
        admit(&mut inputs, 1, header(0));
        admit(&mut inputs, 1, video(0, true));
        admit(&mut inputs, 1, video(33, false));
        let heard = inputs.primary_heard();
        assert_eq!(heard, 3);
        inputs.join(InputRole::Standby, 2);
        assert!(!inputs.standby_wanted(2), "the primary is on air");
        inputs.set_primary_silent(1);
        assert!(inputs.standby_wanted(2));
        admit(&mut inputs, 2, header(0));
        let (admission, ts) = admit(&mut inputs, 2, video(0, true));
        assert_eq!((admission, ts), ("switch", 66));
        // The encoder sends again: wanted at once, on air at its keyframe, with the
        // sequence header it sent while it was on air first.
        assert_eq!(admit(&mut inputs, 1, video(66, false)).0, "held");
        assert!(!inputs.standby_wanted(2));
        assert_eq!(admit(&mut inputs, 2, video(33, false)).0, "on air");
        let mut keyframe = video(99, true);
        let Admission::SwitchTo(config) = inputs.admit(1, &mut keyframe) else {
            panic!("the primary's keyframe switches back")
        };
        assert!(config[1].is_some(), "its sequence header is sent again");
        assert_eq!(keyframe.timestamp, 66 + 33 + 33);
    }

    #[test]
    fn an_input_of_another_stream_is_a_stranger() {
        let mut inputs = Inputs::default();
        inputs.join(InputRole::Primary, 1);
        assert_eq!(admit(&mut inputs, 9, video(0, true)).0, "stranger");
    }
}
