//! The ABR ladder: `[hls] ladder = ["720p30", "480p30"]` gives each stream's HLS
//! one variant per rung besides the source. Each rung takes a lease on its
//! profile's encode of the stream ([`crate::transcode::shared`]): the rungs ask
//! together, so a ladder gets one ffmpeg process with one decode and one encode
//! per rung, and a rung whose profile a destination of the stream already uses
//! shares that encode instead of adding one. The profiles force keyframes at
//! the same times (every 2 s of the input's clock), so the rungs' keyframes,
//! and with them their segments, line up.
//!
//! The leases are held while the stream's HLS is packaged; the encoder is
//! restarted with backoff when it fails and keeps publishing each output as one
//! stream, whose timestamps each rung puts on its own continuing timeline, so
//! its playlist keeps counting.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::rung::Rung;
use super::timeline::Timeline;
use crate::hub::{Hub, SubscriberKind};
use crate::stream_name::StreamName;
use crate::timestamp::Rebaser;
use crate::transcode::EncoderStatus;
use crate::transcode::shared::{EncoderLease, SharedEncoders};

/// A rung: its name (the profile's) and the profile's ffmpeg output arguments.
#[derive(Debug, Clone)]
pub struct RungSpec {
    /// The rendition's name in URLs: the profile's name.
    pub name: String,
    /// The profile's output arguments.
    pub args: Vec<String>,
}

/// What a stream's ladder encodes.
#[derive(Debug, Clone)]
pub struct LadderSpec {
    /// The rungs, in the configured order.
    pub rungs: Vec<RungSpec>,
}

/// What the ladder feeds: a stream's rungs (a trait, so that this module does
/// not depend on the packagers' registry that starts it).
pub trait LadderTarget: Send + Sync {
    /// The source stream's app and hub key.
    fn hub_key(&self) -> (&str, &str);
    /// The stream id, for the log.
    fn stream_id(&self) -> &str;
    /// The rungs, in the ladder's order.
    fn rungs(&self) -> &[Rung];
    /// The encoders' statuses, one per rung, once they are leased.
    fn set_encoders(&self, statuses: Vec<Arc<EncoderStatus>>);
    /// Wakes the requests waiting for a window to move.
    fn changed(&self);
}

/// How often a rung looks for its encoder's output before there is one.
const OUTPUT_POLL: Duration = Duration::from_millis(100);

/// Feeds `live`'s rungs from their encodes until packaging stops (`stop`) or
/// the stream ends.
pub async fn run(
    live: Arc<dyn LadderTarget>,
    encoders: Arc<SharedEncoders>,
    tracker: TaskTracker,
    spec: Arc<LadderSpec>,
    stop: CancellationToken,
) {
    let (app, key) = live.hub_key();
    let source = StreamName {
        app: app.to_owned(),
        name: key.to_owned(),
        query: String::new(),
    };
    let leases: Vec<EncoderLease> = spec
        .rungs
        .iter()
        .map(|rung| encoders.lease(&tracker, &source, &rung.name, rung.args.clone()))
        .collect();
    live.set_encoders(leases.iter().map(|l| Arc::clone(&l.status)).collect());
    let feeds = leases
        .iter()
        .zip(live.rungs())
        .map(|(lease, rung)| feed_rung(live.as_ref(), &encoders, &source, lease, rung, &stop));
    futures_util::future::join_all(feeds).await;
}

/// Packages one rung's encode until it ends or `stop`.
async fn feed_rung(
    live: &dyn LadderTarget,
    encoders: &SharedEncoders,
    source: &StreamName,
    lease: &EncoderLease,
    rung: &Rung,
    stop: &CancellationToken,
) {
    let hub: &Arc<Hub> = encoders.output_hub();
    let output = &lease.output;
    // The encoder publishes its output once ffmpeg produced some.
    while !hub.is_live(&output.app, &output.name) {
        if !encoders.source_live(source) {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(OUTPUT_POLL) => {}
            () = stop.cancelled() => return,
        }
    }
    let Ok(subscriber) = hub.subscribe_as(&output.app, &output.name, SubscriberKind::Relay) else {
        return;
    };
    // A restarted encoder's output starts at 0 again; the rebaser keeps the
    // rung's clock going.
    let mut rebaser = Rebaser::new();
    let mut timeline = Timeline::default();
    let mut batch = Vec::with_capacity(256);
    loop {
        tokio::select! {
            more = subscriber.recv_batch(&mut batch) => if !more { return; },
            () = stop.cancelled() => return,
        }
        let mut changed = false;
        for packet in batch.drain(..) {
            let dts = timeline.extend(packet.stamp(&mut rebaser));
            match rung.push(&packet, dts) {
                Ok(moved) => changed |= moved,
                Err(err) => {
                    tracing::warn!(stream_id = %live.stream_id(), rung = %rung.name, "HLS rung stopped: {err}");
                    return;
                }
            }
        }
        if changed {
            live.changed();
        }
    }
}
