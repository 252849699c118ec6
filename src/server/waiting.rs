//! Players waiting for streams that are not live: a bounded list, oldest first.
//!
//! A player may connect before its publisher (nginx-rtmp's players do the same), so
//! prism lets it wait. Without a bound, anyone could fill every connection slot with
//! players of names nobody publishes, and a publisher whose connection dropped could
//! not come back. So at most `max` players wait at once (the configuration keeps
//! that below half of the connection slots), and one more makes the one that has
//! waited longest give up its place: waiting players can only ever displace each
//! other, never a publisher or a player of a live stream. Each also waits at most
//! `rtmp.play_wait_secs` (enforced by its connection).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

/// The players waiting now, oldest first.
#[derive(Debug)]
pub struct WaitingPlayers {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    /// (ticket number, the token that makes that player give up), oldest first.
    waiting: VecDeque<(u64, CancellationToken)>,
    /// Players made to give up their place so far.
    evicted: u64,
}

/// A player's place in the list; it leaves the list when dropped (the stream went
/// live, or the player left).
#[derive(Debug)]
pub struct WaitingTicket {
    list: Arc<WaitingPlayers>,
    number: u64,
    /// Cancelled when a newer player took this one's place.
    evicted: CancellationToken,
}

impl WaitingPlayers {
    /// At most `max` waiting players (at least 1).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a waiting player. When the list is full, the one that has waited longest
    /// is told to give up (its ticket's [`WaitingTicket::evicted`] fires) and leaves
    /// the list at once, so the count never passes `max`.
    pub fn enter(self: &Arc<Self>) -> WaitingTicket {
        let evicted = CancellationToken::new();
        let mut inner = self.lock();
        while inner.waiting.len() >= self.max {
            let Some((_, oldest)) = inner.waiting.pop_front() else {
                break;
            };
            oldest.cancel();
            inner.evicted += 1;
        }
        let number = inner.next;
        inner.next += 1;
        inner.waiting.push_back((number, evicted.clone()));
        WaitingTicket {
            list: Arc::clone(self),
            number,
            evicted,
        }
    }

    /// Players waiting now.
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Whether no player waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Players that gave up their place to a newer one, so far.
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }

    /// The most players that may wait at once.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl WaitingTicket {
    /// Fires when a newer waiting player took this one's place.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }
}

impl Drop for WaitingTicket {
    fn drop(&mut self) {
        let mut inner = self.list.lock();
        if let Some(index) = inner.waiting.iter().position(|(n, _)| *n == self.number) {
            inner.waiting.remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_waiting_player_makes_room_and_leaving_frees_a_place() {
        let list = WaitingPlayers::new(2);
        let first = list.enter();
        let second = list.enter();
        assert_eq!(list.len(), 2);
        let third = list.enter();
        assert!(
            first.evicted().is_cancelled(),
            "the oldest gives up its place"
        );
        assert!(!second.evicted().is_cancelled());
        assert_eq!(list.len(), 2, "never more than the limit");
        assert_eq!(list.evicted(), 1);
        // The evicted player's ticket is no longer in the list: dropping it frees
        // nothing more.
        drop(first);
        assert_eq!(list.len(), 2);
        drop(second);
        assert_eq!(list.len(), 1);
        let fourth = list.enter();
        assert!(!third.evicted().is_cancelled(), "there was room");
        drop((third, fourth));
        assert!(list.is_empty());
    }
}
