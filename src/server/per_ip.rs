//! Connections per client address: one host (a misbehaving script, a flood) must
//! not take every connection slot from the others.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

/// Counts open connections per IP address.
#[derive(Debug)]
pub struct PerIpLimit {
    max: usize,
    open: DashMap<IpAddr, usize>,
}

/// One counted connection; uncounted when dropped.
#[derive(Debug)]
pub struct IpSlot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl PerIpLimit {
    /// At most `max` connections per address.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            open: DashMap::new(),
        })
    }

    /// A slot for `ip`, or `None` when it already has `max` connections open.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut count = self.open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limit: Arc::clone(self),
            ip,
        })
    }

    /// Connections open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.get(&ip).map_or(0, |c| *c)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        // Remove the entry when it reaches 0 so the map holds only active hosts.
        self.limit.open.remove_if_mut(&self.ip, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_address_and_frees_on_drop() {
        let limit = PerIpLimit::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = limit.acquire(a).unwrap();
        let _second = limit.acquire(a).unwrap();
        assert!(limit.acquire(a).is_none());
        assert!(
            limit.acquire(b).is_some(),
            "other addresses are not affected"
        );
        drop(first);
        assert_eq!(limit.open(a), 1);
        assert!(limit.acquire(a).is_some());
    }
}
