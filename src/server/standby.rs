//! The standby slate, on the server's side: preparing it when a stream goes live,
//! and playing it into a stream in real time while no publisher is on air (a
//! dropped publisher's destinations, players waiting for a stream to start).
//!
//! The slate itself (what it must match, rendering it with ffmpeg, the cache) is
//! `crate::standby`'s; the hub decides when it is on air (`hub::inputs`). Playing it
//! costs a timer and a few packets a second, all shared `Bytes` from the cache.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::StandbyConfig;
use crate::hub::{Hub, Publisher, Stream};
use crate::standby::{Slate, SlateCache, SlateSpec, SlateUnavailable};
use crate::users::UserStandby;

/// How long after a stream goes live its parameters are read for the slate: the
/// encoder has sent its metadata and sequence headers by then.
const PREPARE_AFTER: Duration = Duration::from_secs(2);
/// How often, and how many times, a stream whose parameters are not complete yet
/// is read again.
const PREPARE_RETRY: Duration = Duration::from_secs(2);
const PREPARE_TRIES: u32 = 5;
/// How long a publisher may send nothing, its connection open, before its backup
/// or the slate stands in for it: longer than any pause an encoder makes between
/// two packets, shorter than platforms wait before they show viewers an error.
pub const SILENCE: Duration = Duration::from_secs(3);
/// How often the silence watchdog looks.
const WATCH_EVERY: Duration = Duration::from_millis(500);
/// How long a dropped publisher's stream waits for a slate still rendering.
pub const SLATE_WAIT: Duration = Duration::from_secs(3);

/// A stream's standby settings: `[standby]` with its user's overrides.
#[derive(Debug, Clone)]
pub struct StandbyPlan {
    /// Whether the slate plays for this stream.
    pub enabled: bool,
    /// Its longest run.
    pub max: Duration,
    /// The operator's image or video, or `None` for the generated card.
    pub file: Option<PathBuf>,
    /// The public name the card shows (the user's; never a key).
    pub title: String,
}

/// The slate cache and the settings, shared by every connection.
#[derive(Debug)]
pub struct Standby {
    config: StandbyConfig,
    cache: Arc<SlateCache>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Standby {
    /// Slates rendered with `ffmpeg`, their tasks in `tracker`.
    pub fn new(
        config: StandbyConfig,
        ffmpeg: PathBuf,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let cache = SlateCache::new(ffmpeg, tracker.clone(), shutdown.clone());
        Arc::new(Self {
            config,
            cache,
            tracker,
            shutdown,
        })
    }

    /// The settings for a stream of `user` (none: an anonymous stream).
    pub fn plan(&self, user: Option<(&str, &UserStandby)>) -> StandbyPlan {
        let overrides = user.map(|(_, standby)| standby);
        StandbyPlan {
            enabled: overrides
                .and_then(|o| o.enabled)
                .unwrap_or(self.config.enabled),
            max: Duration::from_secs(self.config.max_secs),
            file: overrides
                .and_then(|o| o.file.clone())
                .or_else(|| self.config.file.clone()),
            title: user.map(|(name, _)| name.to_owned()).unwrap_or_default(),
        }
    }

    /// What the slate for `stream` must match, from what its publisher sent.
    pub fn spec_of(stream: &Stream, plan: &StandbyPlan) -> Result<SlateSpec, String> {
        let (video, audio, media) = stream.decoder_config();
        SlateSpec::from_stream(video.as_deref(), audio.as_deref(), &media, &plan.title)
            .map_err(|err| err.to_string())
    }

    /// A stream went live: renders its slate in the background, once its
    /// parameters are known, so that it is ready when the publisher drops.
    pub fn prepare(self: &Arc<Self>, stream: Arc<Stream>, plan: StandbyPlan) {
        if !plan.enabled {
            return;
        }
        let this = Arc::clone(self);
        self.tracker.spawn(
            async move {
                tokio::select! {
                    () = tokio::time::sleep(PREPARE_AFTER) => {}
                    () = this.shutdown.cancelled() => return,
                }
                for attempt in 1..=PREPARE_TRIES {
                    match Self::spec_of(&stream, &plan) {
                        Ok(spec) => {
                            stream.set_standby_unavailable(None);
                            this.cache.prepare(spec, plan.file.clone());
                            return;
                        }
                        Err(reason) if attempt == PREPARE_TRIES => {
                            tracing::warn!("no standby slate for this stream: {reason}");
                            stream.set_standby_unavailable(Some(reason));
                        }
                        Err(_) => {}
                    }
                    tokio::select! {
                        () = tokio::time::sleep(PREPARE_RETRY) => {}
                        () = this.shutdown.cancelled() => return,
                    }
                }
            }
            .in_current_span(),
        );
    }

    /// Watches a live publisher for silence: an encoder whose network stalls
    /// (Wi-Fi, a tunnel) keeps its connection open and sends nothing, and prism
    /// would only see the drop after `rtmp.idle_timeout_secs`, long after the
    /// platforms gave up. After [`SILENCE`] without a packet, its backup (when
    /// connected) or the slate goes on air, until the encoder sends again (it goes
    /// back on air at its keyframe) or its connection ends (then the grace
    /// period's hold takes over). Ends with the publisher.
    pub fn watch(
        self: &Arc<Self>,
        hub: &Arc<Hub>,
        publisher: &Publisher,
        plan: StandbyPlan,
        kick: CancellationToken,
    ) {
        let (this, hub) = (Arc::clone(self), Arc::clone(hub));
        let stream = Arc::clone(publisher.stream());
        let id = publisher.input_id();
        self.tracker.spawn(
            async move {
                let Some(mut heard) = stream.primary_heard(id) else {
                    return;
                };
                let mut quiet_since = Instant::now();
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(WATCH_EVERY) => {}
                        () = this.shutdown.cancelled() => return,
                        () = kick.cancelled() => return,
                    }
                    let Some(now_heard) = stream.primary_heard(id) else {
                        return;
                    };
                    if now_heard != heard {
                        (heard, quiet_since) = (now_heard, Instant::now());
                        continue;
                    }
                    // Silence before the first packet is an encoder still starting.
                    if heard == 0 || quiet_since.elapsed() < SILENCE {
                        continue;
                    }
                    this.stand_in(&hub, &stream, id, &plan, &kick).await;
                    heard = stream.primary_heard(id).unwrap_or(heard);
                    quiet_since = Instant::now();
                }
            }
            .in_current_span(),
        );
    }

    /// The publisher `id` of `stream` is silent: its backup or the slate stands in
    /// for it until it sends again.
    async fn stand_in(
        &self,
        hub: &Arc<Hub>,
        stream: &Arc<Stream>,
        id: u64,
        plan: &StandbyPlan,
        kick: &CancellationToken,
    ) {
        // Until the publisher leaves (then the grace period's hold takes over).
        let ours = || stream.primary_heard(id).is_some();
        if stream.backup_connected() {
            tracing::warn!(silent = ?SILENCE, "the publisher sends nothing; its backup goes on air");
            stream.set_primary_silent(id);
            return;
        }
        if !plan.enabled {
            return;
        }
        let slate = match Self::spec_of(stream, plan) {
            Ok(spec) => self.slate(&spec, plan).await.map_err(|e| e.to_string()),
            Err(reason) => Err(reason),
        };
        let slate = match slate {
            Ok(slate) => slate,
            Err(reason) => {
                tracing::debug!("no slate for a silent publisher: {reason}");
                return;
            }
        };
        let Some(input) = hub.standby(stream.app(), stream.name()) else {
            return;
        };
        tracing::warn!(silent = ?SILENCE, "the publisher sends nothing; the standby slate goes on air");
        stream.set_primary_silent(id);
        let stop = [&self.shutdown, kick];
        if play(input, &slate, Some(plan.max), stop, ours).await == PlayEnd::Expired {
            tracing::warn!(max = ?plan.max, "the standby slate ran for its longest time; the publisher is still silent");
        }
    }

    /// The slate for `spec`, waiting a little for one still rendering.
    pub async fn slate(
        &self,
        spec: &SlateSpec,
        plan: &StandbyPlan,
    ) -> Result<Arc<Slate>, SlateUnavailable> {
        self.cache.get(spec, plan.file.as_deref(), SLATE_WAIT).await
    }

    /// A player waits for `app/name`, which is not live: plays the title card to
    /// it (and any other player of that name) until the stream goes live or the
    /// last player leaves. Does nothing when the slate is off or already playing.
    pub fn title_for_players(self: &Arc<Self>, hub: &Arc<Hub>, app: &str, name: &str) {
        if !self.config.enabled {
            return;
        }
        let Some(input) = hub.standby(app, name) else {
            return;
        };
        let this = Arc::clone(self);
        self.tracker.spawn(
            async move {
                let plan = this.plan(None);
                let spec = SlateSpec::title_card(&plan.title);
                match this.slate(&spec, &plan).await {
                    Ok(slate) => {
                        let stop = [&this.shutdown, &this.shutdown];
                        play(input, &slate, None, stop, || true).await;
                    }
                    Err(reason) => tracing::warn!("no title card for waiting players: {reason}"),
                }
            }
            .in_current_span(),
        );
    }
}

/// Why [`play`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayEnd {
    /// A publisher (or the backup) took over.
    Replaced,
    /// The slate ran for its longest allowed time.
    Expired,
    /// Shutdown, or the operator ended the stream.
    Stopped,
}

/// Plays `slate` into the stream through its standby `input`, looping, in real
/// time, until another input takes over (the hub switches at that input's keyframe,
/// so the slate plays until then), `max` has passed, or either of `stop` is
/// cancelled (shutdown, the operator's kick), or `keep` says no more. Timestamps
/// go on from loop to loop; the hub puts them on the stream's timeline.
pub async fn play(
    input: Publisher,
    slate: &Slate,
    max: Option<Duration>,
    stop: [&CancellationToken; 2],
    keep: impl Fn() -> bool,
) -> PlayEnd {
    let start = Instant::now();
    let deadline = max.map(|max| start + max);
    for header in &slate.headers {
        input.push_cached(header.clone());
    }
    let loop_ms = u64::from(slate.loop_ms.max(1));
    let mut round: u64 = 0;
    loop {
        let mut index = 0;
        while index < slate.media.len() {
            let at_ms = round * loop_ms + u64::from(slate.media[index].timestamp);
            let at = start + Duration::from_millis(at_ms);
            if deadline.is_some_and(|deadline| at >= deadline) {
                return PlayEnd::Expired;
            }
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = stop[0].cancelled() => return PlayEnd::Stopped,
                () = stop[1].cancelled() => return PlayEnd::Stopped,
            }
            if !input.standby_needed() || !keep() {
                return PlayEnd::Replaced;
            }
            // Every packet due by now, in one batch.
            while index < slate.media.len() {
                let due = round * loop_ms + u64::from(slate.media[index].timestamp);
                if due > at_ms {
                    break;
                }
                let mut packet = slate.media[index].clone();
                packet.timestamp = (due % (1 << 32)) as u32;
                input.push_cached(packet);
                index += 1;
            }
            input.flush();
        }
        round += 1;
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::hub::{HubLimits, Packet, PacketKind};
    use crate::stream_name::StreamName;

    /// A tiny slate: an AVC sequence header, then a keyframe and two frames
    /// 33 ms apart, looping every 100 ms.
    fn slate() -> Slate {
        let video = |keyframe: bool, header: bool, ts: u32| Packet {
            kind: PacketKind::Video,
            timestamp: ts,
            payload: Bytes::from(match (keyframe, header) {
                (_, true) => vec![0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe0, 0],
                (true, _) => vec![0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65],
                _ => vec![0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41],
            }),
            keyframe: keyframe && !header,
            sequence_header: header,
        };
        Slate {
            spec: SlateSpec::title_card(""),
            headers: vec![video(false, true, 0)],
            media: vec![
                video(true, false, 0),
                video(false, false, 33),
                video(false, false, 66),
            ],
            loop_ms: 100,
            bytes: 40,
            notes: Vec::new(),
        }
    }

    #[tokio::test]
    async fn the_title_card_stops_when_the_last_waiting_player_leaves_and_when_the_stream_starts() {
        let hub = Hub::new(HubLimits::default());
        let player = hub.subscribe("live", "soon").unwrap();
        let input = hub.standby("live", "soon").expect("a standby input");
        let never = CancellationToken::new();
        let slate = Arc::new(slate());
        let playing = {
            let slate = Arc::clone(&slate);
            let never = never.clone();
            tokio::spawn(async move { play(input, &slate, None, [&never, &never], || true).await })
        };
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), player.recv_batch(&mut got))
            .await
            .expect("the card reaches the player");
        assert!(got.iter().any(|p| p.keyframe), "{got:?}");
        drop(player);
        let end = tokio::time::timeout(Duration::from_secs(5), playing)
            .await
            .expect("no one to see it: the card stops")
            .unwrap();
        assert_eq!(end, PlayEnd::Replaced);

        // A publisher arrives: the card goes off air at once and stops.
        let player = hub.subscribe("live", "later").unwrap();
        let input = hub.standby("live", "later").unwrap();
        let playing = {
            let slate = Arc::clone(&slate);
            let never = never.clone();
            tokio::spawn(async move { play(input, &slate, None, [&never, &never], || true).await })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        let name = StreamName::parse("live", "", "later").unwrap();
        let _publisher = hub.publish(&name).unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), playing)
            .await
            .expect("the stream started: the card stops")
            .unwrap();
        assert_eq!(end, PlayEnd::Replaced);
        drop(player);
    }

    #[tokio::test]
    async fn a_users_settings_override_the_configuration_and_the_card_shows_no_key() {
        let config = StandbyConfig {
            enabled: true,
            max_secs: 120,
            file: Some(PathBuf::from("/srv/slate.png")),
        };
        let standby = Standby::new(
            config,
            PathBuf::from("ffmpeg"),
            TaskTracker::new(),
            CancellationToken::new(),
        );
        let anonymous = standby.plan(None);
        assert!(anonymous.enabled);
        assert_eq!(anonymous.max, Duration::from_secs(120));
        assert_eq!(
            anonymous.file.as_deref(),
            Some(std::path::Path::new("/srv/slate.png"))
        );
        assert_eq!(anonymous.title, "", "an anonymous stream's name is its key");
        let off = UserStandby {
            enabled: Some(false),
            file: None,
        };
        let plan = standby.plan(Some(("carol", &off)));
        assert!(!plan.enabled);
        assert_eq!(plan.title, "carol");
        assert_eq!(
            plan.file.as_deref(),
            Some(std::path::Path::new("/srv/slate.png"))
        );
        let own = UserStandby {
            enabled: None,
            file: Some(PathBuf::from("/home/dave/brb.mp4")),
        };
        let plan = standby.plan(Some(("dave", &own)));
        assert!(plan.enabled);
        assert_eq!(
            plan.file.as_deref(),
            Some(std::path::Path::new("/home/dave/brb.mp4"))
        );
    }
}
