//! A budget of bytes for partial messages, shared by every inbound connection.
//!
//! [`DecoderLimits::max_pending_bytes`](super::DecoderLimits::max_pending_bytes) bounds what
//! one peer can make prism hold in messages it has started and not finished, but not what all
//! of them can: a hundred connections that each start thirty big messages and never end them
//! would hold gigabytes within their per-connection limits. A [`PendingBudget`] caps the sum.
//! Each server connection's decoder holds a [`BudgetAccount`] and reserves from it before it
//! grows a reassembly buffer, and gives the bytes back when the message completes, is aborted,
//! or the connection ends.
//!
//! **Who is closed when the budget runs out.** Closing whichever connection asks next would
//! let an attacker who fills the budget and then sits on it close every honest publisher in
//! turn: an encoder asks for a little memory for nearly every video frame, while the
//! attacker's connections, once full, ask for nothing. So the budget closes the *largest*
//! holder instead: a connection that asks for more than is free is refused when it would hold
//! more than any other connection (it is the one to go), and otherwise the connection holding
//! the most is evicted: its [`BudgetAccount::evicted`] token is cancelled, its decoder fails
//! on its next use, and its driver closes it at once. An honest publisher holds at most the
//! frame it is receiving; to make it the largest holder, an attacker would have to spread the
//! budget over so many connections that each holds less than one frame.
//!
//! **The overdraft.** An evicted connection's memory is freed a moment later, when its task
//! notices the token and drops its decoder (prism's driver ends an evicted connection at once,
//! whatever it was waiting for), so the request that caused the eviction is granted at once
//! against the memory being freed: the small asker never waits and never fails because the
//! budget is held by others. Until the evicted tasks have run, the total may exceed the budget,
//! by at most the overdraft given to [`PendingBudget::new`]; a request that would go further is
//! refused. The overdraft is a backstop for evicted connections that cannot close (prism gives
//! it the size of the budget), not a second budget: normally it is touched for microseconds.
//!
//! The budget is plain shared state behind a mutex, with no I/O and no clock, so the decoder
//! that uses it stays sans-I/O. The lock is taken only when a reassembly buffer grows or is
//! given back (a few times per video frame, never per chunk) and when a connection starts or
//! ends. The eviction signal is a [`CancellationToken`], the one primitive both the decoder
//! (which only asks whether it is cancelled) and the async driver (which waits on it) can use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// Bytes for partial messages shared by every connection that holds an account; clones share
/// the same budget.
#[derive(Debug, Clone)]
pub struct PendingBudget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    max: usize,
    overdraft: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes reserved by every account, evicted ones included.
    used: usize,
    /// The part of `used` held by evicted accounts: memory that is about to be freed.
    releasing: usize,
    next_id: u64,
    holders: HashMap<u64, Holder>,
}

#[derive(Debug)]
struct Holder {
    held: usize,
    evicted: CancellationToken,
}

/// One connection's share of a [`PendingBudget`]. Dropping it gives back everything it holds.
#[derive(Debug)]
pub struct BudgetAccount {
    shared: Arc<Shared>,
    id: u64,
    evicted: CancellationToken,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetRefusal {
    /// The budget is spent and no other connection holds more than this one would.
    Exhausted {
        /// Bytes this account would have held with the reservation.
        would_hold: usize,
        /// The budget.
        max: usize,
    },
    /// This account was evicted to make room for another connection.
    Evicted {
        /// Bytes this account holds.
        held: usize,
        /// The budget.
        max: usize,
    },
}

impl PendingBudget {
    /// A budget of `max` bytes, which may be exceeded by up to `overdraft` bytes while evicted
    /// connections close (see the module docs).
    pub fn new(max: usize, overdraft: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                max,
                overdraft,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The budget in bytes.
    pub fn max(&self) -> usize {
        self.shared.max
    }

    /// Bytes reserved right now by every account (for metrics and tests).
    pub fn used(&self) -> usize {
        self.shared.lock().used
    }

    /// Opens an account for one connection.
    pub fn account(&self) -> BudgetAccount {
        let evicted = CancellationToken::new();
        let mut state = self.shared.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.holders.insert(
            id,
            Holder {
                held: 0,
                evicted: evicted.clone(),
            },
        );
        BudgetAccount {
            shared: Arc::clone(&self.shared),
            id,
            evicted,
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while the lock is held; should it ever, the counts are still
        // consistent (each update is a few integer operations), so carry on.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BudgetAccount {
    /// Reserves `bytes` more, evicting larger holders if that is what it takes.
    pub fn reserve(&self, bytes: usize) -> Result<(), BudgetRefusal> {
        let (max, ceiling) = (
            self.shared.max,
            self.shared.max.saturating_add(self.shared.overdraft),
        );
        let mut state = self.shared.lock();
        let held = state.holders.get(&self.id).map_or(0, |h| h.held);
        if self.evicted.is_cancelled() {
            return Err(BudgetRefusal::Evicted { held, max });
        }
        let would_hold = held.saturating_add(bytes);
        let after = state.used.saturating_add(bytes);
        if after > ceiling {
            // Evicting frees nothing at once: too much is still held by evicted connections
            // (or the budget is spent and there is no overdraft).
            return Err(BudgetRefusal::Exhausted { would_hold, max });
        }
        loop {
            if after.saturating_sub(state.releasing) <= max {
                state.used = after;
                if let Some(holder) = state.holders.get_mut(&self.id) {
                    holder.held = would_hold;
                }
                return Ok(());
            }
            // The largest holder that holds more than this account would: it goes first.
            let victim = state
                .holders
                .iter()
                .filter(|(id, h)| **id != self.id && !h.evicted.is_cancelled())
                .filter(|(_, h)| h.held > would_hold)
                .max_by_key(|(_, h)| h.held)
                .map(|(id, _)| *id);
            let Some(victim) = victim.and_then(|id| state.holders.get(&id)) else {
                return Err(BudgetRefusal::Exhausted { would_hold, max });
            };
            let freed = victim.held;
            victim.evicted.cancel();
            state.releasing = state.releasing.saturating_add(freed);
        }
    }

    /// Gives back `bytes` of what this account holds.
    pub fn release(&self, bytes: usize) {
        let mut state = self.shared.lock();
        let evicted = self.evicted.is_cancelled();
        let Some(holder) = state.holders.get_mut(&self.id) else {
            return;
        };
        let bytes = bytes.min(holder.held);
        holder.held -= bytes;
        state.used = state.used.saturating_sub(bytes);
        if evicted {
            state.releasing = state.releasing.saturating_sub(bytes);
        }
    }

    /// Bytes this account holds.
    pub fn held(&self) -> usize {
        self.shared
            .lock()
            .holders
            .get(&self.id)
            .map_or(0, |h| h.held)
    }

    /// Cancelled when this account is evicted to make room for another connection: its
    /// decoder refuses to go on from then, and its driver should close the connection.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    /// The budget this account draws from, in bytes.
    pub fn budget(&self) -> usize {
        self.shared.max
    }
}

impl Drop for BudgetAccount {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(holder) = state.holders.remove(&self.id) {
            state.used = state.used.saturating_sub(holder.held);
            // Eviction happens under this lock too, so the token says whether this
            // holder's bytes were counted as releasing.
            if holder.evicted.is_cancelled() {
                state.releasing = state.releasing.saturating_sub(holder.held);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_within_the_budget_are_granted_and_given_back() {
        let budget = PendingBudget::new(1000, 0);
        let (a, b) = (budget.account(), budget.account());
        a.reserve(600).unwrap();
        b.reserve(400).unwrap();
        assert_eq!(budget.used(), 1000);
        a.release(100);
        assert_eq!((a.held(), budget.used()), (500, 900));
        drop(b);
        assert_eq!(budget.used(), 500);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn the_largest_asker_is_refused_when_nobody_holds_more() {
        let budget = PendingBudget::new(1000, 1000);
        let (a, b) = (budget.account(), budget.account());
        a.reserve(500).unwrap();
        b.reserve(400).unwrap();
        // a would hold 700 > b's 400: a is the largest, so a is refused, b untouched.
        assert_eq!(
            a.reserve(200),
            Err(BudgetRefusal::Exhausted {
                would_hold: 700,
                max: 1000
            })
        );
        assert!(!b.evicted().is_cancelled());
        assert_eq!(budget.used(), 900);
    }

    #[test]
    fn a_small_asker_evicts_the_largest_holder_and_is_granted_at_once() {
        let budget = PendingBudget::new(1000, 1000);
        let (big, medium, small) = (budget.account(), budget.account(), budget.account());
        big.reserve(600).unwrap();
        medium.reserve(350).unwrap();
        // 50 bytes are free; small asks for 100.
        small.reserve(100).unwrap();
        assert!(
            big.evicted().is_cancelled(),
            "the largest holder was evicted"
        );
        assert!(!medium.evicted().is_cancelled());
        // big can neither grow nor go on.
        assert_eq!(
            big.reserve(1),
            Err(BudgetRefusal::Evicted {
                held: 600,
                max: 1000
            })
        );
        drop(big);
        assert_eq!(budget.used(), 450);
    }

    #[test]
    fn the_overdraft_bounds_memory_held_by_evicted_connections() {
        let budget = PendingBudget::new(1000, 500);
        let holders: Vec<_> = (0..4).map(|_| budget.account()).collect();
        for holder in &holders {
            holder.reserve(250).unwrap();
        }
        let small = budget.account();
        // One eviction frees 250 (within the overdraft of 500): granted.
        small.reserve(100).unwrap();
        assert_eq!(
            holders
                .iter()
                .filter(|h| h.evicted().is_cancelled())
                .count(),
            1
        );
        assert_eq!(budget.used(), 1100);
        // The evicted one has not closed yet: 450 more would pass the ceiling of 1500, and
        // evicting frees nothing at once, so nobody else is evicted for it.
        let other = budget.account();
        assert!(matches!(
            other.reserve(450),
            Err(BudgetRefusal::Exhausted { .. })
        ));
        assert_eq!(
            holders
                .iter()
                .filter(|h| h.evicted().is_cancelled())
                .count(),
            1
        );
        // 200 fits under the ceiling once a second holder is evicted.
        other.reserve(200).unwrap();
        assert_eq!(
            holders
                .iter()
                .filter(|h| h.evicted().is_cancelled())
                .count(),
            2
        );
        assert_eq!(budget.used(), 1300);
        // As the evicted connections close, their bytes leave the count.
        drop(holders);
        assert_eq!(budget.used(), 300);
    }

    #[test]
    fn an_evicted_holder_that_gives_back_bytes_keeps_the_counts_straight() {
        let budget = PendingBudget::new(100, 100);
        let (big, small) = (budget.account(), budget.account());
        big.reserve(80).unwrap();
        small.reserve(30).unwrap();
        assert!(big.evicted().is_cancelled());
        // The evicted decoder completes a message before it notices: 30 of its 80 back.
        big.release(30);
        // 50 still releasing, 30 held by small: 20 more fit without another eviction.
        let third = budget.account();
        third.reserve(20).unwrap();
        drop(big);
        assert_eq!(budget.used(), 50);
        // Nothing is left releasing: the budget is exactly 100 again.
        third.reserve(50).unwrap();
        assert_eq!(
            third.reserve(1),
            Err(BudgetRefusal::Exhausted {
                would_hold: 71,
                max: 100
            })
        );
        assert!(
            !small.evicted().is_cancelled(),
            "small holds less than third"
        );
    }
}
