//! A dropped publisher's grace period: the policy, in one place.
//!
//! An encoder's connection can drop for reasons of its own (a Wi-Fi hiccup, a
//! restarted router) and the encoder then publishes again within seconds. Ending the
//! stream at once would unpublish every destination, and a platform may end the
//! broadcast for that; so a publisher whose connection ended without it unpublishing
//! keeps its stream and destinations for `relay.publisher_grace_secs`:
//!
//! - **When**: the connection ended without an unpublish, and prism did not end it
//!   itself (shutdown, an operator's kick): those mean the stream is to end now.
//!   A period of zero turns the grace period off.
//! - **For how long**: the configured period.
//! - **What ends it**: the period running out, or shutdown, end the stream (its
//!   destinations drain and unpublish cleanly); a publisher of the same name
//!   takes it over before then, and the stream carries on.
//!
//! The mechanics have one home per layer: the hub keeps the stream and its
//! subscribers (`hub/grace.rs`, [`Publisher::detach`] and
//! [`Orphan`](crate::hub::Orphan)), the relay keeps the destinations and hands them
//! to the returning publisher (`relay/grace.rs`, [`RelayHandle::orphan`]).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::hub::Publisher;
use crate::relay::RelayHandle;

/// How long a dropped publisher's stream waits for it, and the shutdown tree the
/// wait runs in: the wait outlives the connection's task, so it is a task of its
/// own, tracked like every other so that shutdown waits for it.
#[derive(Debug, Clone)]
pub struct PublisherGrace {
    period: Duration,
    tracker: TaskTracker,
}

impl PublisherGrace {
    /// Holds dropped publishers for `period` (zero: not at all), waiting on
    /// `tracker`, the server's shutdown tree.
    pub fn new(period: Duration, tracker: TaskTracker) -> Self {
        Self { period, tracker }
    }

    /// How long a dropped publisher's stream waits for it.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// A publishing connection ended without an unpublish. Unless prism ended it
    /// itself (`shutdown` or the operator's `kick` cancelled) or the grace period is
    /// off, the stream and its destinations wait for the publisher to come back,
    /// until the period runs out or `shutdown`. Otherwise they end now.
    pub fn publisher_left(
        &self,
        publisher: Publisher,
        relay: RelayHandle,
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
        // The relay first: a publisher that comes back must find its destinations.
        relay.orphan();
        let orphan = publisher.detach();
        let grace = self.period;
        tracing::warn!(
            ?grace,
            "publisher dropped; destinations wait for it to come back"
        );
        let shutdown = shutdown.clone();
        // In the connection's span: its line names the peer and counts against that
        // address's log rate limit, like the connection's own lines.
        self.tracker.spawn(
            async move {
                tokio::select! {
                    () = tokio::time::sleep(grace) => {}
                    () = shutdown.cancelled() => {}
                }
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
