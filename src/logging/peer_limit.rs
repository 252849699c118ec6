//! The log rate limit for lines that client connections cause.
//!
//! prism listens where anyone may connect, and every bad connection gets a log
//! line: without a limit, a flood of connections is a flood of log (12 MB in 10 s
//! was measured). Lines are attributed to the client address of the connection
//! they belong to: the `peer` field of an enclosing span (`rtmp{peer=...}`,
//! `rtmps{peer=...}`) or of the event itself (the listener's refusals). Each
//! address has a token bucket (a burst, then a steady rate) so that one noisy
//! address cannot drown the others, and all addresses together share one more
//! bucket, the ceiling an attacker with hundreds of addresses meets. Lines that
//! no client caused (start, reload, destinations, shutdown, the summaries) are
//! never limited. What was suppressed is counted for `/metrics` and summarised
//! in a periodic line, so the operator learns that lines are missing and from
//! where.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};

use crate::rate::TokenBucket as Bucket;
use tracing::span::{Attributes, Id};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// The name of the field that carries a client's address, on connection spans and
/// on the few events logged outside them.
pub const PEER_FIELD: &str = "peer";

/// Addresses with a bucket of their own. Beyond this (an attacker with thousands
/// of addresses, all active) new addresses only meet the shared ceiling, so the
/// table's memory stays bounded.
const MAX_TRACKED_PEERS: usize = 4096;

/// How often a full table may be searched for idle addresses to forget.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// The budgets, from `[log]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    /// Lines one address may cause at once.
    pub peer_burst: u32,
    /// Lines per second one address may cause after its burst.
    pub peer_per_sec: f64,
    /// Lines all addresses together may cause at once.
    pub all_burst: u32,
    /// Lines per second all addresses together may cause after the burst.
    pub all_per_sec: f64,
}

impl Budgets {
    /// The budgets of a configuration's `[log]` section.
    pub fn from_config(log: &crate::config::LogConfig) -> Self {
        Self {
            peer_burst: log.peer_burst,
            peer_per_sec: f64::from(log.peer_lines_per_minute) / 60.0,
            all_burst: log.all_peers_burst,
            all_per_sec: f64::from(log.all_peers_lines_per_sec),
        }
    }
}

#[derive(Debug)]
struct Peer {
    bucket: Bucket,
    /// Lines suppressed since the last summary.
    suppressed: u64,
}

/// What the limit suppressed since the previous summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Suppressed {
    /// Lines suppressed.
    pub lines: u64,
    /// Addresses whose lines were suppressed (those beyond the tracked table are
    /// counted in `lines` only).
    pub addresses: u64,
    /// The address with the most suppressed lines, and how many.
    pub top: Option<(IpAddr, u64)>,
}

/// The buckets, free of I/O and of the clock (the caller passes the time).
#[derive(Debug)]
pub struct Limits {
    budgets: Budgets,
    all: Bucket,
    peers: HashMap<IpAddr, Peer>,
    last_prune: Option<Instant>,
    /// Lines suppressed since the last summary, tracked addresses or not.
    suppressed: u64,
    /// Addresses with suppressed lines that were forgotten before the summary.
    forgotten: u64,
}

impl Limits {
    /// Full buckets at `now`.
    pub fn new(budgets: Budgets, now: Instant) -> Self {
        Self {
            budgets,
            all: Bucket::full(budgets.all_burst, now),
            peers: HashMap::new(),
            last_prune: None,
            suppressed: 0,
            forgotten: 0,
        }
    }

    /// Whether a line caused by `peer` may be written at `now`. It takes a token
    /// from the address's bucket and from the shared one, or from neither.
    pub fn admit(&mut self, peer: IpAddr, now: Instant) -> bool {
        let b = self.budgets;
        self.all.refill(b.all_burst, b.all_per_sec, now);
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_TRACKED_PEERS {
            self.forget_idle(now);
        }
        let tracked = self.peers.len() < MAX_TRACKED_PEERS || self.peers.contains_key(&peer);
        let peer_entry = tracked.then(|| {
            self.peers.entry(peer).or_insert_with(|| Peer {
                bucket: Bucket::full(b.peer_burst, now),
                suppressed: 0,
            })
        });
        match peer_entry {
            Some(entry) => {
                entry.bucket.refill(b.peer_burst, b.peer_per_sec, now);
                if entry.bucket.has_one() && self.all.has_one() {
                    entry.bucket.take();
                    self.all.take();
                    return true;
                }
                entry.suppressed += 1;
            }
            None => {
                if self.all.has_one() {
                    self.all.take();
                    return true;
                }
            }
        }
        self.suppressed += 1;
        false
    }

    /// Forgets addresses whose bucket has refilled (idle for a while), at most
    /// once per [`PRUNE_EVERY`].
    fn forget_idle(&mut self, now: Instant) {
        if self
            .last_prune
            .is_some_and(|last| now.saturating_duration_since(last) < PRUNE_EVERY)
        {
            return;
        }
        self.last_prune = Some(now);
        let b = self.budgets;
        let mut forgotten = 0;
        self.peers.retain(|_, peer| {
            peer.bucket.refill(b.peer_burst, b.peer_per_sec, now);
            let idle = peer.bucket.is_full(b.peer_burst);
            if idle && peer.suppressed > 0 {
                forgotten += 1;
            }
            !idle
        });
        self.forgotten += forgotten;
    }

    /// What was suppressed since the previous call, and starts counting anew.
    pub fn take_suppressed(&mut self) -> Suppressed {
        let mut summary = Suppressed {
            lines: std::mem::take(&mut self.suppressed),
            addresses: std::mem::take(&mut self.forgotten),
            top: None,
        };
        for (ip, peer) in &mut self.peers {
            let n = std::mem::take(&mut peer.suppressed);
            if n == 0 {
                continue;
            }
            summary.addresses += 1;
            if summary.top.is_none_or(|(_, most)| n > most) {
                summary.top = Some((*ip, n));
            }
        }
        summary
    }

    /// Addresses with a bucket now (for tests of the table's bound).
    pub fn tracked(&self) -> usize {
        self.peers.len()
    }
}

/// The rate limit shared by the log filter and the summary.
#[derive(Debug)]
pub struct PeerLimit {
    limits: Mutex<Limits>,
    /// Every line suppressed since start, for `/metrics`.
    total: AtomicU64,
}

impl PeerLimit {
    /// A limit with full buckets.
    pub fn new(budgets: Budgets) -> Arc<Self> {
        Arc::new(Self {
            limits: Mutex::new(Limits::new(budgets, Instant::now())),
            total: AtomicU64::new(0),
        })
    }

    /// Lines suppressed since start.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// What was suppressed since the previous call.
    pub fn take_suppressed(&self) -> Suppressed {
        self.lock().take_suppressed()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Limits> {
        self.limits.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(&self, peer: IpAddr) -> bool {
        let admitted = self.lock().admit(peer, Instant::now());
        if !admitted {
            self.total.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// The layer that applies this limit.
    pub fn layer(self: &Arc<Self>) -> PeerLimitLayer {
        PeerLimitLayer(Arc::clone(self))
    }
}

/// A span's client address, kept in the span's extensions.
#[derive(Debug, Clone, Copy)]
struct PeerAddr(IpAddr);

/// Finds the `peer` field among a span's or an event's fields.
#[derive(Default)]
struct PeerVisitor(Option<IpAddr>);

impl Visit for PeerVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == PEER_FIELD {
            self.0 = parse_peer(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == PEER_FIELD {
            // `%peer` records the Display form, which Debug of the wrapper prints.
            self.0 = parse_peer(&format!("{value:?}"));
        }
    }
}

/// `1.2.3.4:5678`, `[::1]:5678` or a bare address.
fn parse_peer(text: &str) -> Option<IpAddr> {
    text.parse::<SocketAddr>()
        .map(|addr| addr.ip())
        .or_else(|_| text.parse::<IpAddr>())
        .ok()
}

/// The layer that enforces the limit: it notes the client address of every
/// span that has one, and disables events caused by a client address that is
/// over its budget (or whose lines all addresses together are over theirs).
/// Level filtering is another layer's business. A plain layer rather than a
/// per-layer filter: tracing-subscriber's per-layer filters do not expect a
/// filter to turn an event down in `event_enabled` (debug builds assert, and
/// an event enabled and then not dispatched can swallow the next one).
#[derive(Debug, Clone)]
pub struct PeerLimitLayer(Arc<PeerLimit>);

impl<S> Layer<S> for PeerLimitLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn event_enabled(&self, event: &Event<'_>, cx: Context<'_, S>) -> bool {
        let mut visitor = PeerVisitor::default();
        event.record(&mut visitor);
        let peer = visitor.0.or_else(|| {
            cx.event_scope(event)?
                .find_map(|span| span.extensions().get::<PeerAddr>().map(|p| p.0))
        });
        match peer {
            Some(peer) => self.0.admit(peer),
            None => true,
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        if !is_peer_span(attrs.metadata()) {
            return;
        }
        let mut visitor = PeerVisitor::default();
        attrs.record(&mut visitor);
        if let (Some(ip), Some(span)) = (visitor.0, cx.span(id)) {
            span.extensions_mut().replace(PeerAddr(ip));
        }
    }
}

/// Whether `meta` is a span that carries a client's address.
pub fn is_peer_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.fields().field(PEER_FIELD).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGETS: Budgets = Budgets {
        peer_burst: 5,
        peer_per_sec: 1.0,
        all_burst: 20,
        all_per_sec: 10.0,
    };

    fn ip(a: u8, b: u8) -> IpAddr {
        IpAddr::from([127, 1, a, b])
    }

    #[test]
    fn one_address_gets_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut limits = Limits::new(BUDGETS, t0);
        let admitted = (0..100).filter(|_| limits.admit(ip(0, 1), t0)).count();
        assert_eq!(admitted, 5, "the burst");
        // Another address is not held back by the first one's flood.
        assert!(limits.admit(ip(0, 2), t0));
        // Ten seconds later: ten more lines at one a second (no more, however many
        // it tries), not a new burst on top.
        let t10 = t0 + Duration::from_secs(10);
        let mut admitted = 0;
        for second in 1..=10 {
            let now = t0 + Duration::from_secs(second);
            admitted += (0..50).filter(|_| limits.admit(ip(0, 1), now)).count();
        }
        assert_eq!(admitted, 10);
        let summary = limits.take_suppressed();
        assert_eq!(summary.lines, 95 + 490);
        assert_eq!(summary.addresses, 1);
        assert_eq!(summary.top, Some((ip(0, 1), 585)));
        assert_eq!(limits.take_suppressed(), Suppressed::default(), "reset");
        assert!(!limits.admit(ip(0, 1), t10), "still out of tokens");
    }

    #[test]
    fn many_addresses_meet_the_shared_ceiling() {
        let t0 = Instant::now();
        let mut limits = Limits::new(BUDGETS, t0);
        // 1000 addresses, 5 lines each: within each one's own burst, but only the
        // shared burst of 20 gets through, then 10 a second.
        let mut admitted = 0;
        for n in 0..1000u16 {
            let addr = ip((n / 200) as u8, (n % 200) as u8);
            admitted += (0..5).filter(|_| limits.admit(addr, t0)).count();
        }
        assert_eq!(admitted, 20);
        let t1 = t0 + Duration::from_secs(1);
        let later = (0..1000u16)
            .filter(|n| limits.admit(ip(5 + (n / 200) as u8, (n % 200) as u8), t1))
            .count();
        assert_eq!(later, 10);
        let summary = limits.take_suppressed();
        assert_eq!(summary.lines, 5000 - 20 + 1000 - 10);
        assert!(summary.addresses > 1000, "{summary:?}");
    }

    #[test]
    fn the_table_of_addresses_stays_bounded() {
        let t0 = Instant::now();
        let budgets = Budgets {
            all_burst: 1_000_000,
            all_per_sec: 1_000_000.0,
            ..BUDGETS
        };
        let mut limits = Limits::new(budgets, t0);
        for n in 0..20_000u32 {
            let addr = IpAddr::from((0x7f00_0000 + n).to_be_bytes());
            // Each spends a token, so none is idle: the table stops growing and
            // the rest meet only the shared bucket.
            assert!(limits.admit(addr, t0));
        }
        assert_eq!(limits.tracked(), MAX_TRACKED_PEERS);
        // Once the early ones are idle (their buckets refilled), new addresses
        // take their places.
        let later = t0 + Duration::from_secs(60);
        assert!(limits.admit(ip(9, 9), later));
        assert_eq!(limits.tracked(), 1);
    }

    #[test]
    fn peer_fields_parse_as_addresses() {
        assert_eq!(parse_peer("127.1.2.3:4567"), Some(ip(2, 3)));
        assert_eq!(
            parse_peer("[::1]:1935"),
            Some(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]))
        );
        assert_eq!(parse_peer("10.0.0.1"), Some(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(parse_peer("somewhere"), None);
    }
}
