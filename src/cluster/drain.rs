//! Draining: a node about to stop (a rolling upgrade, a scale-down, a Kubernetes
//! pod's preStop) takes no new publishes and says so on `/healthz` (503), so that
//! the balancer's health check sends new connections elsewhere, while the streams
//! it has go on to their end; then it exits. An encoder whose stream must move
//! sooner is moved by its own reconnect, which the balancer sends to another node.

use std::sync::Arc;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// How often a draining node looks whether its last stream has ended. Streams end
/// rarely and a second's delay in exiting costs nothing.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// Whether this node drains, since when, and for how long at most.
#[derive(Debug)]
pub struct Drain {
    began: CancellationToken,
    at: OnceLock<Instant>,
    timeout: Duration,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// The node's last stream ended.
    Empty,
    /// `drain_timeout_secs` passed with streams still live.
    TimedOut {
        /// Streams live when the time ran out.
        live: usize,
    },
}

impl Drain {
    /// Not draining; once begun, live streams get at most `timeout` to end.
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            began: CancellationToken::new(),
            at: OnceLock::new(),
            timeout,
        })
    }

    /// Begins draining (again: nothing changes); `why` is logged. Whether this
    /// call began it.
    pub fn begin(&self, why: &str) -> bool {
        let mut began = false;
        self.at.get_or_init(|| {
            began = true;
            Instant::now()
        });
        if began {
            tracing::info!(
                "draining ({why}): new publishes are refused and /healthz answers 503; \
                 live streams have up to {:?} to end",
                self.timeout
            );
            self.began.cancel();
        }
        began
    }

    /// Whether the node drains: new publishes are refused.
    pub fn is_draining(&self) -> bool {
        self.began.is_cancelled()
    }

    /// How long the node has drained, if it does.
    pub fn elapsed(&self) -> Option<Duration> {
        self.at.get().map(Instant::elapsed)
    }

    /// Resolves once draining has begun and then the hub's last live stream has
    /// ended (a publisher's grace period counts as live), or the timeout passed.
    /// `pulled` says how many of the hub's live streams are pulls from other nodes
    /// (`cluster::origin`): those are not this node's streams, and their players
    /// find them again through the balancer on another node.
    pub async fn finished(&self, hub: &Hub, pulled: impl Fn() -> usize) -> DrainEnd {
        self.began.cancelled().await;
        let deadline = *self.at.get().unwrap_or(&Instant::now()) + self.timeout;
        loop {
            let live = hub.live_count().saturating_sub(pulled());
            if live == 0 {
                return DrainEnd::Empty;
            }
            if Instant::now() >= deadline {
                return DrainEnd::TimedOut { live };
            }
            tokio::time::sleep(CHECK_EVERY.min(deadline - Instant::now())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubLimits;
    use crate::stream_name::StreamName;

    #[tokio::test]
    async fn ends_when_the_last_stream_ends_or_when_the_time_is_up() {
        let hub = Hub::new(HubLimits::default());
        let drain = Drain::new(Duration::from_secs(60));
        assert!(!drain.is_draining());
        let publisher = hub
            .publish(&StreamName::parse("live", "", "a").unwrap())
            .unwrap();
        assert!(drain.begin("test"));
        assert!(!drain.begin("again"), "a second request changes nothing");
        assert!(drain.is_draining());
        let ended = tokio::spawn({
            let drain = Arc::clone(&drain);
            let hub = Arc::clone(&hub);
            async move { drain.finished(&hub, || 0).await }
        });
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!ended.is_finished(), "the stream is still live");
        drop(publisher);
        assert_eq!(ended.await.unwrap(), DrainEnd::Empty);

        let drain = Drain::new(Duration::from_millis(300));
        let _publisher = hub
            .publish(&StreamName::parse("live", "", "b").unwrap())
            .unwrap();
        drain.begin("test");
        assert_eq!(
            drain.finished(&hub, || 0).await,
            DrainEnd::TimedOut { live: 1 }
        );
        assert!(drain.elapsed().unwrap() >= Duration::from_millis(300));
    }
}
