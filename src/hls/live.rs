//! The packagers running: one per stream someone asked HLS of, started by the
//! first request, fed by a subscription to the stream, stopped when the stream
//! ends or no request came for `idle_secs`. Requests read a packager's window
//! under its lock (a playlist is a few kilobytes of text; a segment is handles
//! to its parts) and wait for the live edge to move through a watch channel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::HlsConfig;
use super::packager::Packager;
pub use super::rung::Rung;
use super::timeline::Timeline;
use crate::hub::{Hub, HubError, PacketKind, Subscriber, SubscriberKind};
use crate::timestamp::Rebaser;
use crate::transcode::EncoderStatus;
use crate::transcode::shared::SharedEncoders;

/// Every stream's packager, by the stream's hub key.
#[derive(Debug)]
pub struct HlsService {
    hub: Arc<Hub>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    config: HlsConfig,
    /// By stream id.
    running: Arc<DashMap<String, Arc<LiveHls>>>,
    /// Signs and checks access tokens.
    pub signer: super::token::Signer,
    started: Instant,
    /// The ABR ladder every stream gets, if any.
    ladder: Option<Arc<super::ladder::LadderSpec>>,
    /// Where the ladder's rungs lease their encodes.
    encoders: Arc<SharedEncoders>,
}

/// The broadcast a packager follows.
#[derive(Debug, Clone)]
pub struct Broadcast {
    /// Its stream id: one per broadcast, so a new publish never meets the last
    /// one's segments.
    pub id: String,
    /// Its app.
    pub app: String,
    /// Its key in the hub (never shown).
    pub key: String,
    /// The user it belongs to, if any.
    pub user: Option<String>,
}

/// One stream's packagers, as requests see them: the source's and, with a
/// ladder, one per rung.
#[derive(Debug)]
pub struct LiveHls {
    /// What it packages.
    pub broadcast: Broadcast,
    /// The ladder's renditions (none without one).
    pub rungs: Vec<Rung>,
    /// The statuses of the rungs' encoders, once leased.
    encoders: Mutex<Vec<Arc<EncoderStatus>>>,
    packager: Mutex<Packager>,
    /// Bumped each time the window changes (and when packaging ends).
    version: watch::Sender<u64>,
    /// Wall-clock time of decode time 0, for `EXT-X-PROGRAM-DATE-TIME`.
    anchor: Mutex<Option<SystemTime>>,
    /// Why packaging stopped, when it failed.
    error: Mutex<Option<String>>,
    /// When the last request came (ms since the service started).
    last_request: AtomicU64,
    /// Cancelled when packaging stopped.
    stopped: CancellationToken,
}

impl HlsService {
    /// The service; packagers are tasks of `tracker`, stopped by `shutdown`.
    pub fn new(
        hub: Arc<Hub>,
        config: HlsConfig,
        ladder: Option<super::ladder::LadderSpec>,
        encoders: Arc<SharedEncoders>,
        tracker: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let secret = match &config.token_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                let mut bytes = vec![0u8; 32];
                rand::fill(&mut bytes[..]);
                bytes
            }
        };
        Self {
            hub,
            tracker,
            shutdown,
            config,
            running: Arc::default(),
            signer: super::token::Signer::new(secret),
            started: Instant::now(),
            ladder: ladder.map(Arc::new),
            encoders,
        }
    }

    /// `[hls]`.
    pub fn config(&self) -> &HlsConfig {
        &self.config
    }

    /// Streams being packaged now (for metrics).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// What the API shows of broadcast `id`'s HLS.
    pub fn status(&self, id: &str) -> super::status::HlsStatus {
        match self.running.get(id) {
            Some(live) if !live.stopped.is_cancelled() || live.error().is_some() => {
                let error = live.error();
                super::status::HlsStatus::of(
                    id,
                    &live.packager(),
                    &live.rungs,
                    &live.encoders(),
                    error,
                )
            }
            _ => super::status::HlsStatus::idle(id),
        }
    }

    /// Bytes the windows of every packager hold (initialization segments, parts).
    pub fn window_bytes(&self) -> usize {
        self.running
            .iter()
            .map(|live| {
                let mut bytes = live.packager().held_bytes();
                for rung in &live.rungs {
                    bytes += rung.packager().held_bytes();
                }
                bytes
            })
            .sum()
    }

    /// The packager of `broadcast`, started if none runs.
    pub fn open(&self, broadcast: &Broadcast) -> Result<Arc<LiveHls>, HubError> {
        let now = self.now_ms();
        if let Some(live) = self.running.get(&broadcast.id)
            && live.usable()
        {
            live.last_request.store(now, Ordering::Relaxed);
            return Ok(Arc::clone(live.value()));
        }
        let subscriber =
            self.hub
                .subscribe_as(&broadcast.app, &broadcast.key, SubscriberKind::Relay)?;
        let timing = self.config.timing();
        let rungs = self.ladder.iter().flat_map(|l| &l.rungs).map(|r| {
            Rung::new(
                r.name.clone(),
                super::variant::nominal_bps(&r.args),
                Packager::new(timing),
            )
        });
        let live = Arc::new(LiveHls {
            broadcast: broadcast.clone(),
            rungs: rungs.collect(),
            encoders: Mutex::default(),
            packager: Mutex::new(Packager::new(timing)),
            version: watch::Sender::new(0),
            anchor: Mutex::new(None),
            error: Mutex::new(None),
            last_request: AtomicU64::new(now),
            stopped: CancellationToken::new(),
        });
        // Two first requests at once: the one inserted first wins, the other's
        // subscription is dropped unused.
        match self.running.entry(broadcast.id.clone()) {
            Entry::Occupied(slot) if slot.get().usable() => return Ok(Arc::clone(slot.get())),
            Entry::Occupied(mut slot) => {
                slot.insert(Arc::clone(&live));
            }
            Entry::Vacant(slot) => {
                slot.insert(Arc::clone(&live));
            }
        }
        tracing::debug!(app = %broadcast.app, stream_id = %broadcast.id, "HLS packaging started");
        let task = Packaging {
            live: Arc::clone(&live),
            idle_ms: self.config.idle_secs * 1000,
            started: self.started,
        };
        if let Some(spec) = &self.ladder {
            self.tracker.spawn(super::ladder::run(
                Arc::clone(&live) as Arc<dyn super::ladder::LadderTarget>,
                Arc::clone(&self.encoders),
                self.tracker.clone(),
                Arc::clone(spec),
                live.stopped.clone(),
            ));
        }
        let running = Arc::clone(&self.running);
        let stop = self.shutdown.clone();
        let ours = Arc::clone(&live);
        let linger = Duration::from_secs(3 * self.config.timing().target_duration_secs());
        self.tracker.spawn(async move {
            let ended = task.run(subscriber, stop.clone()).await;
            if ended {
                // The end stays fetchable a while: a player that saw
                // EXT-X-ENDLIST still fetches the last parts and segments.
                tokio::select! {
                    () = tokio::time::sleep(linger) => {}
                    () = stop.cancelled() => {}
                }
            }
            running.remove_if(&ours.broadcast.id, |_, v| Arc::ptr_eq(v, &ours));
        });
        Ok(live)
    }

    /// The packager of a broadcast that ended a moment ago, by its id or (for a
    /// user's stream) by app and user name, while its end stays fetchable.
    pub fn ended(&self, id: Option<&str>, user: Option<(&str, &str)>) -> Option<Arc<LiveHls>> {
        if let Some(id) = id {
            return self
                .running
                .get(id)
                .filter(|live| live.packager().ended())
                .map(|live| Arc::clone(live.value()));
        }
        let (app, name) = user?;
        self.running
            .iter()
            .filter(|live| {
                live.broadcast.app == app
                    && live.broadcast.user.as_deref() == Some(name)
                    && live.packager().ended()
            })
            .map(|live| Arc::clone(live.value()))
            .next()
    }

    fn now_ms(&self) -> u64 {
        ms_since(self.started)
    }
}

fn ms_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl LiveHls {
    /// Whether requests can use it: packaging, failed (the error is the
    /// answer), or ended a moment ago; not one stopped for want of requests.
    fn usable(&self) -> bool {
        !self.stopped.is_cancelled() || self.error().is_some() || self.packager().ended()
    }

    /// The rung named `name`, with a ladder.
    pub fn rung(&self, name: &str) -> Option<&Rung> {
        self.rungs.iter().find(|r| r.name == name)
    }

    /// Wakes the requests waiting for the window to move.
    pub fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// The packager's window, to read.
    pub fn packager(&self) -> MutexGuard<'_, Packager> {
        self.packager.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The statuses of the rungs' encoders (none without a ladder).
    pub fn encoders(&self) -> Vec<Arc<EncoderStatus>> {
        self.encoders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The wall-clock time of decode time 0, once media arrived.
    pub fn anchor(&self) -> Option<SystemTime> {
        *self.anchor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why packaging failed, if it did.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Rendition `name`'s packager (`src` or a rung's), to read.
    pub fn rendition(&self, name: &str) -> Option<MutexGuard<'_, Packager>> {
        if name == super::SOURCE {
            Some(self.packager())
        } else {
            self.rung(name).map(Rung::packager)
        }
    }

    /// Waits until `ready` holds for rendition `name`'s window, packaging stops,
    /// or `timeout` passes; returns whether `ready` held.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        mut ready: impl FnMut(&Packager) -> bool,
    ) -> bool {
        let mut changes = self.version.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if self.rendition(name).is_some_and(|p| ready(&p)) {
                return true;
            }
            if self.stopped.is_cancelled() || self.error().is_some() {
                return false;
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return false; },
                () = tokio::time::sleep_until(deadline) => return false,
                () = self.stopped.cancelled() => {}
            }
        }
    }
}

impl super::ladder::LadderTarget for LiveHls {
    fn hub_key(&self) -> (&str, &str) {
        (&self.broadcast.app, &self.broadcast.key)
    }

    fn stream_id(&self) -> &str {
        &self.broadcast.id
    }

    fn rungs(&self) -> &[Rung] {
        &self.rungs
    }

    fn set_encoders(&self, statuses: Vec<Arc<EncoderStatus>>) {
        *self.encoders.lock().unwrap_or_else(|e| e.into_inner()) = statuses;
    }

    fn changed(&self) {
        LiveHls::changed(self);
    }
}

/// The task feeding one packager.
struct Packaging {
    live: Arc<LiveHls>,
    idle_ms: u64,
    started: Instant,
}

impl Packaging {
    /// Packages until the stream ends (true) or packaging stops (false).
    async fn run(self, subscriber: Subscriber, stop: CancellationToken) -> bool {
        let live = &self.live;
        let mut rebaser = Rebaser::new();
        let mut timeline = Timeline::default();
        let mut batch = Vec::with_capacity(256);
        let mut idle_check = tokio::time::interval(Duration::from_secs(1));
        let mut warned_left_out = false;
        let ended = loop {
            tokio::select! {
                more = subscriber.recv_batch(&mut batch) => if !more { break true; },
                _ = idle_check.tick() => {
                    let last = live.last_request.load(Ordering::Relaxed);
                    if ms_since(self.started).saturating_sub(last) > self.idle_ms {
                        break false;
                    }
                    continue;
                }
                () = stop.cancelled() => break false,
            }
            if live.error().is_some() {
                // Failed: the subscription is kept (and emptied) until the stream
                // ends or goes unwatched, so requests meanwhile get the error
                // rather than starting a packager that fails again.
                batch.clear();
                continue;
            }
            let now = SystemTime::now();
            let mut changed = false;
            let mut failed = None;
            {
                let mut packager = live.packager();
                for packet in batch.drain(..) {
                    let dts = timeline.extend(packet.stamp(&mut rebaser));
                    if matches!(packet.kind, PacketKind::Audio | PacketKind::Video)
                        && !packet.sequence_header
                    {
                        self.settle_anchor(now, dts);
                    }
                    match packager.push(&packet, dts) {
                        Ok(moved) => changed |= moved,
                        Err(err) => {
                            failed = Some(err.to_string());
                            break;
                        }
                    }
                }
            }
            if !warned_left_out && let Some(codec) = live.packager().left_out() {
                warned_left_out = true;
                tracing::warn!(stream_id = %live.broadcast.id, "HLS is video only: {codec:?} audio is not carried in fragmented MP4");
            }
            if let Some(err) = failed {
                tracing::warn!("HLS packaging stopped, the stream goes on: {err}");
                *live.error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
                live.version.send_modify(|v| *v += 1);
                continue;
            }
            if changed {
                live.version.send_modify(|v| *v += 1);
            }
        };
        if ended && live.error().is_none() {
            let _ = live.packager().end();
            for rung in &live.rungs {
                let _ = rung.packager().end();
            }
        }
        live.stopped.cancel();
        live.version.send_modify(|v| *v += 1);
        tracing::debug!(ended, "HLS packaging stopped");
        ended
    }

    /// Decode time 0's wall-clock time is the earliest that any frame's arrival
    /// allows: frames from the GOP cache arrive late, live ones on time.
    fn settle_anchor(&self, now: SystemTime, dts: u64) {
        let Some(candidate) = now.checked_sub(Duration::from_millis(dts)) else {
            return;
        };
        let mut anchor = self.live.anchor.lock().unwrap_or_else(|e| e.into_inner());
        if anchor.is_none_or(|a| candidate < a) {
            *anchor = Some(candidate);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::packager::Timing;

    fn live() -> LiveHls {
        LiveHls {
            broadcast: Broadcast {
                id: "id".into(),
                app: "live".into(),
                key: "key".into(),
                user: None,
            },
            rungs: Vec::new(),
            encoders: Mutex::default(),
            packager: Mutex::new(Packager::new(Timing {
                segment_ms: 2000,
                part_ms: 500,
                window: 3,
            })),
            version: watch::Sender::new(0),
            anchor: Mutex::new(None),
            error: Mutex::new(None),
            last_request: AtomicU64::new(0),
            stopped: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn a_blocking_wait_times_out_cleanly_and_wakes_when_the_window_moves() {
        let live = Arc::new(live());
        let start = tokio::time::Instant::now();
        let timeout = Duration::from_millis(300);
        assert!(!live.wait_for("src", timeout, |p| p.ended()).await);
        assert!(start.elapsed() >= timeout);

        // A change wakes the waiter, which then sees the window as it is now.
        let waiter = tokio::spawn({
            let live = Arc::clone(&live);
            async move {
                live.wait_for("src", Duration::from_secs(60), |p| p.ended())
                    .await
            }
        });
        tokio::task::yield_now().await;
        live.packager().end().unwrap();
        live.version.send_modify(|v| *v += 1);
        assert!(waiter.await.unwrap());

        // Packaging that stops releases every waiter.
        let other = Arc::new(super::tests::live());
        let waiter = tokio::spawn({
            let other = Arc::clone(&other);
            async move {
                other
                    .wait_for("src", Duration::from_secs(60), |_| false)
                    .await
            }
        });
        tokio::task::yield_now().await;
        other.stopped.cancel();
        assert!(!waiter.await.unwrap());
    }
}
