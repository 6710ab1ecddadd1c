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
//! 1. The sender starts with `window` bytes; it keeps what it `spent`, the consumer adds
//!    what it consumed to `returned`. Credit on hand = `window + returned − spent`.
//! 2. `acquire(n)`: if the consumer stopped, fail; if `n` fits, spend and return
//!    `Immediate`.
//! 3. Otherwise the sender stores its unparker, sets `waiting` (SeqCst) and checks again;
//!    still short, it parks, and repeats step 3 when woken. Once `n` fits it spends and
//!    returns `AfterWait`: exactly one backpressure episode, counted by the caller.
//! 4. The consumer adds to `returned` (SeqCst), or sets `stop`, or (the last giver
//!    dropped) `gone`, then reads `waiting`; if set, it takes the unparker and unparks.
//!    A sender short of credit fails with code 0 once the consumer is gone; credit it
//!    already has is still its to spend.
//!
//! # Invariants
//! - bytes in flight (spent and not yet returned) ≤ `window`, as long as every send acquires.
//! - No lost wake-up: the sender's `waiting` store and the consumer's `returned`/`stop`
//!   write are both SeqCst and each side reads the other's after its own, so either the
//!   sender sees the credit before parking or the consumer sees `waiting` and unparks it.
//! - `waiting` is true only while the sender is inside step 3. A stale unpark (the sender
//!   found the credit on its own) ends some later park early; every kcoro wait loops on
//!   its own condition.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, PoisonError};

use kcoro::park::{self, Unparker};

/// `stop` once the consumer stopped: this bit and the code in the low 32 bits.
const STOPPED: u64 = 1 << 32;

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
    /// Bytes consumed and handed back since the start.
    returned: AtomicU64,
    /// 0 while the consumer reads; `STOPPED | code` after.
    stop: AtomicU64,
    /// Every giver was dropped: no more credit will come.
    gone: AtomicBool,
    /// True while the sender is between registering and finishing a wait.
    waiting: AtomicBool,
    /// The waiting sender; taken by the consumer that wakes it.
    parked: Mutex<Option<Unparker>>,
}

impl Cell {
    fn stopped(&self) -> Option<u32> {
        let s = self.stop.load(SeqCst);
        (s & STOPPED != 0).then_some(s as u32)
    }

    /// Step 4's second half: wake the sender if it waits.
    fn wake_sender(&self) {
        if self.waiting.load(SeqCst) {
            let who = self.parked.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(who) = who {
                who.unpark();
            }
        }
    }

    /// Records that the consumer stopped (the first code wins) and wakes the sender.
    fn stop(&self, code: u32) {
        let _ = self.stop.compare_exchange(0, STOPPED | u64::from(code), SeqCst, SeqCst);
        self.wake_sender();
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
        self.0.gone.store(true, SeqCst);
        self.0.wake_sender();
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
        if self.try_spend(n) {
            return Ok(Acquired::Immediate);
        }
        on_wait();
        let cell = Arc::clone(&self.cell);
        let outcome = loop {
            *cell.parked.lock().unwrap_or_else(PoisonError::into_inner) = Some(park::current());
            cell.waiting.store(true, SeqCst);
            if let Some(code) = cell.stopped() {
                break Err(code);
            }
            if self.try_spend(n) {
                break Ok(Acquired::AfterWait);
            }
            if cell.gone.load(SeqCst) {
                break Err(0);
            }
            park::park();
        };
        cell.waiting.store(false, SeqCst);
        outcome
    }

    /// Spends `n` if the credit on hand covers it.
    fn try_spend(&mut self, n: u64) -> bool {
        let on_hand = self.window + self.cell.returned.load(SeqCst) - self.spent;
        let fits = on_hand >= n;
        if fits {
            self.spent += n;
        }
        fits
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
        self.0.waiting.load(Relaxed)
    }
}

impl CreditGiver {
    /// Returns `n` consumed bytes.
    pub(crate) fn grant(&self, n: u64) {
        self.cell.returned.fetch_add(n, SeqCst);
        self.cell.wake_sender();
    }

    /// Tells the producer no more will be read.
    pub(crate) fn stop(&self, code: u32) {
        self.cell.stop(code);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_comes_back_as_it_is_granted() {
        let (mut tx, giver) = credit(100);
        assert_eq!(tx.acquire(60, || unreachable!()), Ok(Acquired::Immediate));
        assert_eq!(tx.acquire(40, || unreachable!()), Ok(Acquired::Immediate));
        giver.grant(30);
        assert_eq!(tx.acquire(30, || unreachable!()), Ok(Acquired::Immediate));
        assert!(!tx.try_spend(1), "the window is spent");
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
        let mut waits = 0;
        for _ in 0..FRAMES {
            if tx.acquire(1, || waits += 1).unwrap() == Acquired::AfterWait {
                assert!(tx.spent - tx.cell.returned.load(SeqCst) <= 4);
            }
            frames_tx.send(1).unwrap();
        }
        consumer.join().unwrap();
        assert_eq!(tx.cell.returned.load(SeqCst), FRAMES);
    }
}
