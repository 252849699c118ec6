//! A dropped publisher's grace period: the policy, in one place.
//!
//! An encoder's connection can drop for reasons of its own (a Wi-Fi hiccup, a
//! restarted router) and the encoder then publishes again within seconds. Ending the
//! stream at once would unpublish every destination, and a platform may end the
//! broadcast for that; so a publisher whose connection ended without it unpublishing
//! keeps its stream and destinations, and they keep receiving a stream:
//!
//! - **When**: the connection ended without an unpublish, and prism did not end it
//!   itself (shutdown, an operator's kick): those mean the stream is to end now.
//!   A `relay.publisher_grace_secs` of zero turns the hold off, slate included.
//! - **What goes out meanwhile**: the backup publisher's stream while one is
//!   connected; else the standby slate (`[standby]`, `server/standby.rs`) for at
//!   most `standby.max_secs`; else, when the slate is off or cannot be made for
//!   this stream, nothing, for `relay.publisher_grace_secs`.
//! - **What ends it**: the slate's longest run or the grace period running out,
//!   or shutdown, end the stream (its destinations drain and unpublish cleanly); a
//!   publisher of the same name takes it over before then, at its first keyframe,
//!   and the stream carries on.
//!
//! The mechanics have one home per layer: the hub keeps the stream and its
//! subscribers (`hub/grace.rs`, [`Publisher::detach`] and
//! [`Orphan`](crate::hub::Orphan)), the relay keeps the destinations and hands them
//! to the returning publisher (`relay/grace.rs`, [`RelayHandle::orphan`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::hub::{Hub, Orphan, Publisher};
use crate::relay::RelayHandle;
use crate::standby::{SlateSpec, SlateUnavailable};

use super::standby::{PlayEnd, Standby, StandbyPlan, play};

/// How often a held stream looks whether its backup is still there.
const BACKUP_POLL: Duration = Duration::from_millis(250);

/// How long a dropped publisher's stream waits for it, and the shutdown tree the
/// wait runs in: the wait outlives the connection's task, so it is a task of its
/// own, tracked like every other so that shutdown waits for it.
#[derive(Debug, Clone)]
pub struct PublisherGrace {
    period: Duration,
    tracker: TaskTracker,
    hub: Arc<Hub>,
    standby: Arc<Standby>,
}

impl PublisherGrace {
    /// Holds dropped publishers for `period` (zero: not at all, slate included),
    /// or on `standby`'s slate for its longest run, waiting on `tracker`, the
    /// server's shutdown tree.
    pub fn new(
        period: Duration,
        tracker: TaskTracker,
        hub: Arc<Hub>,
        standby: Arc<Standby>,
    ) -> Self {
        Self {
            period,
            tracker,
            hub,
            standby,
        }
    }

    /// How long a dropped publisher's stream waits for it without a slate.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The slate's side of the policy, for a stream going live.
    pub fn standby(&self) -> &Arc<Standby> {
        &self.standby
    }

    /// A publishing connection ended without an unpublish. Unless prism ended it
    /// itself (`shutdown` or the operator's `kick` cancelled) or the grace period is
    /// off, the stream and its destinations wait for the publisher to come back:
    /// on its backup while one is connected, else on the standby slate for up to
    /// its longest run (`plan`), else for the grace period; until shutdown at most.
    /// Otherwise they end now.
    pub fn publisher_left(
        &self,
        publisher: Publisher,
        relay: RelayHandle,
        plan: StandbyPlan,
        kick: &CancellationToken,
        shutdown: &CancellationToken,
    ) {
        let deliberate = shutdown.is_cancelled() || kick.is_cancelled();
        if deliberate || self.period.is_zero() {
            // The hub's queues end first, so live destinations drain and unpublish;
            // then the relay handle stops the rest.
            drop(publisher);
            drop(relay);
            return;
        }
        // What the slate must match, before the hub forgets the publisher's headers.
        let spec = plan
            .enabled
            .then(|| Standby::spec_of(publisher.stream(), &plan));
        // The relay first: a publisher that comes back must find its destinations.
        relay.orphan();
        let orphan = publisher.detach();
        tracing::warn!(
            grace = ?self.period,
            standby = plan.enabled,
            "publisher dropped; destinations wait for it to come back"
        );
        let hold = Hold {
            grace: self.period,
            hub: Arc::clone(&self.hub),
            standby: Arc::clone(&self.standby),
            shutdown: shutdown.clone(),
            kick: kick.clone(),
        };
        // In the connection's span: its line names the peer and counts against that
        // address's log rate limit, like the connection's own lines.
        self.tracker.spawn(
            async move {
                hold.run(&orphan, spec, &plan).await;
                if !orphan.taken_over() {
                    tracing::info!("publisher did not come back; ending the stream");
                }
                // The hub's queues end first, so destinations drain and unpublish.
                drop(orphan);
                drop(relay);
            }
            .in_current_span(),
        );
    }
}

/// One dropped publisher's hold on its stream.
struct Hold {
    grace: Duration,
    hub: Arc<Hub>,
    standby: Arc<Standby>,
    shutdown: CancellationToken,
    /// The operator's kick (the API's `DELETE` of the stream, the dashboard's
    /// button): during the hold it ends the stream, slate and all.
    kick: CancellationToken,
}

impl Hold {
    /// Returns when the stream is to end, or was taken over.
    async fn run(
        &self,
        orphan: &Orphan,
        spec: Option<Result<SlateSpec, String>>,
        plan: &StandbyPlan,
    ) {
        let stream = orphan.stream();
        // A slate still rendering (prism under load, a stream that dropped soon
        // after it went live) is asked for again while the grace period runs.
        let mut rendering = None;
        let mut slate = None;
        match spec {
            None => {}
            Some(Ok(spec)) => rendering = Some(spec),
            Some(Err(reason)) => self.unavailable(orphan, reason),
        }
        let grace_ends = Instant::now() + self.grace;
        let mut standby_left = plan.max;
        loop {
            if orphan.taken_over() || self.shutdown.is_cancelled() || self.kick.is_cancelled() {
                return;
            }
            if stream.backup_connected() {
                // The backup is on air, or goes on air at its next keyframe.
                self.pause(BACKUP_POLL).await;
                continue;
            }
            if let Some(spec) = &rendering {
                match self.standby.slate(spec, plan).await {
                    Ok(ready) => (slate, rendering) = (Some(ready), None),
                    Err(SlateUnavailable::Rendering) if Instant::now() < grace_ends => {
                        tracing::info!("the standby slate is still rendering; waiting for it");
                    }
                    Err(reason) => {
                        self.unavailable(orphan, reason.to_string());
                        rendering = None;
                    }
                }
                continue;
            }
            let input = slate
                .as_ref()
                .and_then(|_| self.hub.standby(stream.app(), stream.name()));
            match (slate.as_ref(), input) {
                (Some(slate), Some(input)) => {
                    let started = Instant::now();
                    let stop = [&self.shutdown, &self.kick];
                    match play(input, slate, Some(standby_left), stop, || true).await {
                        PlayEnd::Replaced => {
                            standby_left = standby_left.saturating_sub(started.elapsed())
                        }
                        PlayEnd::Expired => {
                            tracing::warn!(max = ?plan.max, "the standby slate ran for its longest time; ending the stream");
                            return;
                        }
                        PlayEnd::Stopped => return,
                    }
                }
                _ => {
                    let now = Instant::now();
                    if now >= grace_ends {
                        return;
                    }
                    self.pause(BACKUP_POLL.min(grace_ends - now)).await;
                }
            }
        }
    }

    fn unavailable(&self, orphan: &Orphan, reason: String) {
        tracing::warn!("no standby slate ({reason}); destinations wait without one");
        orphan.stream().set_standby_unavailable(Some(format!(
            "{reason}; the stream falls back to the grace period"
        )));
    }

    async fn pause(&self, period: Duration) {
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = self.shutdown.cancelled() => {}
            () = self.kick.cancelled() => {}
        }
    }
}
