//! Credit-based flow control: the sender spends credit (bytes) before it sends, the
//! receiver returns credit as it consumes. With no credit left the sender parks, a real
//! parked coroutine (or thread), so the producer stops where the consumer stops. Used by
//! stream halves and by the local ingress buffer.
//!
//! Credit is a counter, not a channel of grants: a grant is one atomic add, and the
//! sender reads what came back with one load, so a frame costs no lock on either side.
//! Only a sender out of credit registers itself and parks.
//!
//! # Protocol
//! `state` holds the bytes handed back (`returned`, shifted left by one) and the sender's
//! `WAITING` bit; every step that decides about a wake-up is a read-modify-write of it.
//! 1. The sender starts with `window` bytes and counts what it `spent`. Credit on hand =
//!    `window + returned − spent`.
//! 2. `acquire(n)`: if the consumer stopped, fail; if `n` fits, spend and return
//!    `Immediate`.
//! 3. Otherwise the sender stores its unparker, sets `WAITING` with `fetch_or` (which also
//!    reads `returned`), then reads `stop`: stopped, fail; `n` fits, spend; the consumer
//!    gone, fail with code 0; else park, and repeat step 3 when woken. Leaving, it clears
//!    `WAITING`. A wait that ends with the credit returns `AfterWait`: exactly one
//!    backpressure episode, counted by the caller.
//! 4. The consumer adds to `state` (`fetch_add`), or writes `stop` and then touches `state`
//!    with a `fetch_add(0)`; if the value it read had `WAITING`, it takes the unparker and
//!    unparks it.
//!
//! # Invariants
//! - bytes in flight (spent and not yet returned) ≤ `window`, as long as every send acquires.
//! - No lost wake-up: the sender's `fetch_or` and the consumer's read-modify-write are
//!   ordered in `state`'s modification order. Consumer first: the sender's `fetch_or`
//!   acquires it, so it sees the credit or the stop. Sender first: the consumer reads
//!   `WAITING` and the unparker stored before it, and unparks. (Model-checked with loom,
//!   `loom_credit_*`, scripts/loom.sh.)
//! - `WAITING` is set only while the sender is inside step 3. A stale unpark (the sender
//!   found the credit on its own) ends some later park early; every kcoro wait loops on
//!   its own condition.
//! - `returned` wraps after 2⁶³ bytes handed back on one half: not a concern.

use std::sync::{Arc, PoisonError};

#[cfg(loom)]
use loom::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering::*},
};
#[cfg(not(loom))]
use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering::*},
};

use park::Unparker;

/// kcoro's parking; loom's threads under `cfg(loom)`, so the model checks this protocol.
#[cfg(not(loom))]
mod park {
    pub(super) use kcoro::park::{Unparker, current, park};
}
#[cfg(loom)]
mod park {
    pub(super) use loom::thread::{Thread as Unparker, current, park};
}

/// `state`: the sender is in step 3.
const WAITING: u64 = 1;
/// `state`: `returned` starts above the `WAITING` bit.
const RETURNED_SHIFT: u32 = 1;
/// `stop`: the consumer stopped; its code is in the low 32 bits.
const STOPPED: u64 = 1 << 32;
/// `stop`: every giver was dropped, no more credit will come.
const GONE: u64 = 1 << 33;

/// How `acquire` got its credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub(crate) enum Acquired {
    /// Enough credit was there.
    Immediate,
    /// The sender parked until the consumer returned enough: one backpressure episode.
    AfterWait,
}

/// What both sides share.
#[derive(Debug, Default)]
struct Cell {
    /// `returned << RETURNED_SHIFT | WAITING`.
    state: AtomicU64,
    /// `STOPPED | code` once the consumer stopped (the first code wins); `GONE` once no
    /// giver is left.
    stop: AtomicU64,
    /// The waiting sender; taken by the consumer that wakes it.
    parked: Mutex<Option<Unparker>>,
}

impl Cell {
    fn stopped(&self) -> Option<u32> {
        let s = self.stop.load(Acquire);
        (s & STOPPED != 0).then_some(s as u32)
    }

    fn is_gone(&self) -> bool {
        self.stop.load(Acquire) & GONE != 0
    }

    /// Step 4, after a write to `stop`: a read-modify-write of `state`, and the wake-up if
    /// the sender waits.
    fn poke(&self) {
        let before = self.state.fetch_add(0, AcqRel);
        self.wake_if_waiting(before);
    }

    fn wake_if_waiting(&self, state: u64) {
        if state & WAITING != 0 {
            let who = self.parked.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(who) = who {
                who.unpark();
            }
        }
    }

    /// Records that the consumer stopped (the first code wins) and wakes the sender.
    fn stop(&self, code: u32) {
        let mut cur = self.stop.load(Acquire);
        while cur & STOPPED == 0 {
            match self.stop.compare_exchange_weak(cur, cur | STOPPED | u64::from(code), AcqRel, Acquire) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        self.poke();
    }
}

/// The producer's side: what it spent, and the shared cell.
#[derive(Debug)]
pub(crate) struct CreditSender {
    window: u64,
    spent: u64,
    cell: Arc<Cell>,
}

/// The consumer's side: hands credit back. Clones share it; when the last one is dropped
/// the sender's waits fail with code 0.
#[derive(Debug, Clone)]
pub(crate) struct CreditGiver {
    cell: Arc<Cell>,
    _alive: Arc<GiverAlive>,
}

/// Dropped with the last [`CreditGiver`]: the consumer is gone.
#[derive(Debug)]
struct GiverAlive(Arc<Cell>);

impl Drop for GiverAlive {
    fn drop(&mut self) {
        self.0.stop.fetch_or(GONE, AcqRel);
        self.0.poke();
    }
}

/// A credit pair with `window` bytes to start.
pub(crate) fn credit(window: u64) -> (CreditSender, CreditGiver) {
    let cell = Arc::new(Cell::default());
    let alive = Arc::new(GiverAlive(Arc::clone(&cell)));
    (CreditSender { window, spent: 0, cell: Arc::clone(&cell) }, CreditGiver { cell, _alive: alive })
}

impl CreditSender {
    /// Spends `n` bytes of credit, parking until the consumer returns enough.
    /// `Err(code)` when the consumer stopped (or vanished: code 0).
    /// `on_wait` runs once, just before the first park: the place to count the event.
    pub(crate) fn acquire(&mut self, n: u64, on_wait: impl FnOnce()) -> Result<Acquired, u32> {
        if let Some(code) = self.cell.stopped() {
            return Err(code);
        }
        if self.try_spend(n, self.cell.state.load(Acquire)) {
            return Ok(Acquired::Immediate);
        }
        on_wait();
        let outcome = loop {
            *self.cell.parked.lock().unwrap_or_else(PoisonError::into_inner) = Some(park::current());
            let state = self.cell.state.fetch_or(WAITING, AcqRel);
            if let Some(code) = self.cell.stopped() {
                break Err(code);
            }
            if self.try_spend(n, state) {
                break Ok(Acquired::AfterWait);
            }
            if self.cell.is_gone() {
                break Err(0);
            }
            park::park();
        };
        self.cell.state.fetch_and(!WAITING, AcqRel);
        outcome
    }

    /// Spends `n` if the credit on hand, with `state` read from the cell, covers it.
    fn try_spend(&mut self, n: u64, state: u64) -> bool {
        let returned = state >> RETURNED_SHIFT;
        let fits = self.window + returned - self.spent >= n;
        if fits {
            self.spent += n;
        }
        fits
    }

    /// Bytes spent and not yet handed back.
    #[cfg(all(test, not(loom)))]
    fn in_flight(&self) -> u64 {
        self.spent - (self.cell.state.load(Acquire) >> RETURNED_SHIFT)
    }

    /// A probe that reads true while the producer is parked for credit.
    pub(crate) fn wait_probe(&self) -> WaitProbe {
        WaitProbe(Arc::clone(&self.cell))
    }
}

/// Observes, from anywhere, whether a producer is parked waiting for credit.
#[derive(Debug, Clone)]
pub struct WaitProbe(Arc<Cell>);

impl WaitProbe {
    /// True while the producer is parked.
    pub fn is_waiting(&self) -> bool {
        self.0.state.load(Relaxed) & WAITING != 0
    }
}

impl CreditGiver {
    /// Returns `n` consumed bytes.
    pub(crate) fn grant(&self, n: u64) {
        let before = self.cell.state.fetch_add(n << RETURNED_SHIFT, AcqRel);
        self.cell.wake_if_waiting(before);
    }

    /// Tells the producer no more will be read.
    pub(crate) fn stop(&self, code: u32) {
        self.cell.stop(code);
    }
}

#[cfg(all(test, loom))]
mod loom_models {
    use super::*;

    // The sender runs on a spawned thread and checks its own outcome: a stale unpark
    // (allowed by the protocol) would trip loom's `join`, which parks the joining thread.
    // loom runs every thread to its end, and reports a sender parked forever as a deadlock.

    /// A sender that is one byte short while the consumer grants in two steps and then
    /// stops: in every interleaving the sender ends with the credit or the stop code.
    #[test]
    fn loom_credit_wait_ends_with_credit_or_stop() {
        loom::model(|| {
            let (mut tx, giver) = credit(1);
            assert_eq!(tx.acquire(1, || {}), Ok(Acquired::Immediate));
            loom::thread::spawn(move || {
                let got = tx.acquire(2, || {});
                assert!(matches!(got, Ok(Acquired::Immediate | Acquired::AfterWait) | Err(5)), "{got:?}");
                assert!(!tx.wait_probe().is_waiting());
            });
            giver.grant(1);
            giver.grant(1);
            giver.stop(5);
        });
    }

    /// The consumer vanishes instead: a sender short of credit ends with code 0.
    #[test]
    fn loom_credit_wait_ends_when_the_consumer_is_dropped() {
        loom::model(|| {
            let (mut tx, giver) = credit(1);
            assert_eq!(tx.acquire(1, || {}), Ok(Acquired::Immediate));
            loom::thread::spawn(move || {
                assert_eq!(tx.acquire(1, || {}), Err(0));
            });
            drop(giver);
        });
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn credit_comes_back_as_it_is_granted() {
        let (mut tx, giver) = credit(100);
        assert_eq!(tx.acquire(60, || unreachable!()), Ok(Acquired::Immediate));
        assert_eq!(tx.acquire(40, || unreachable!()), Ok(Acquired::Immediate));
        giver.grant(30);
        assert_eq!(tx.acquire(30, || unreachable!()), Ok(Acquired::Immediate));
        assert_eq!(tx.in_flight(), 100, "the window is spent");
    }

    #[test]
    fn with_the_consumer_gone_credit_on_hand_is_still_spent() {
        let (mut tx, giver) = credit(10);
        drop(giver);
        assert_eq!(tx.acquire(10, || unreachable!()), Ok(Acquired::Immediate));
        assert_eq!(tx.acquire(1, || {}), Err(0), "short of credit, nobody to return it");
    }

    #[test]
    fn a_stop_fails_the_sender_even_with_credit_on_hand() {
        let (mut tx, giver) = credit(100);
        giver.stop(7);
        giver.stop(9);
        assert_eq!(tx.acquire(1, || unreachable!()), Err(7), "the first code wins");
    }

    #[test]
    fn dropping_the_last_giver_fails_a_parked_sender_with_code_zero() {
        let (mut tx, giver) = credit(10);
        let second = giver.clone();
        assert_eq!(tx.acquire(10, || unreachable!()), Ok(Acquired::Immediate));
        let probe = tx.wait_probe();
        let sender = std::thread::spawn(move || tx.acquire(5, || {}));
        while !probe.is_waiting() {
            std::thread::yield_now();
        }
        drop(giver);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!sender.is_finished(), "one giver is still alive");
        drop(second);
        assert_eq!(sender.join().unwrap(), Err(0));
    }

    /// Many grants racing a sender that keeps running dry: every wait ends (no lost
    /// wake-up) and no more than the window is ever out.
    #[test]
    fn a_sender_and_a_granting_consumer_never_lose_a_wake_up() {
        const FRAMES: u64 = 20_000;
        let (mut tx, giver) = credit(4);
        let (frames_tx, frames_rx) = std::sync::mpsc::channel::<u64>();
        let consumer = std::thread::spawn(move || {
            for _ in 0..FRAMES {
                let n = frames_rx.recv().unwrap();
                giver.grant(n);
            }
        });
        let (mut on_wait_calls, mut after_waits) = (0, 0);
        for _ in 0..FRAMES {
            if tx.acquire(1, || on_wait_calls += 1).unwrap() == Acquired::AfterWait {
                after_waits += 1;
            }
            assert!(tx.in_flight() <= 4);
            frames_tx.send(1).unwrap();
        }
        assert_eq!(on_wait_calls, after_waits, "one backpressure episode per wait");
        consumer.join().unwrap();
        assert_eq!(tx.in_flight(), 0);
    }
}
