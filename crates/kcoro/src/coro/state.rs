//! The park state of one coroutine: two bits and the transitions between them.
//!
//! A coroutine parks by switching back to its worker; the worker then publishes "parked".
//! An unpark from any thread either finds it parked (and becomes the one caller that
//! schedules it) or leaves a token that the next park consumes, like `std::thread::park`.
//!
//! ```text
//!  state \ event   | park() (on the coroutine) | after switch-out (worker) | unpark() (any thread)
//!  ----------------+---------------------------+---------------------------+----------------------
//!  RUNNABLE (0)    | switch out                | -> PARKED                 | -> NOTIFIED, no schedule
//!  NOTIFIED        | -> RUNNABLE, return       | -> RUNNABLE, reschedule   | unchanged
//!  PARKED          | impossible (not running)  | impossible                | -> RUNNABLE, schedule
//! ```
//!
//! # Invariants
//! - `PARKED` ⇒ the coroutine is suspended and sits in no run queue.
//! - Exactly one `unpark` observes `PARKED` and schedules; every other returns `Noted`.
//! - `PARKED` and `NOTIFIED` are never both set.
//!
//! The loom model in `runtime/tests/loom_park.rs` checks the exactly-once and no-lost-wakeup
//! claims over every interleaving of one parker and two unparkers.

use crate::loom::atomic::{AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Relaxed};

/// Neither parked nor holding a token: running, queued, or about to switch out.
const RUNNABLE: u8 = 0b00;
/// Suspended waiting for an unpark. Set by the worker after the switch-out
/// (`transition_to_parked`); cleared by the single `unpark` that reschedules. Excludes `NOTIFIED`.
const PARKED: u8 = 0b01;
/// An unpark arrived while not parked. Set by `unpark`; consumed by the next park
/// (`take_notification` or `transition_to_parked`). Excludes `PARKED`.
const NOTIFIED: u8 = 0b10;

#[derive(Debug, Default)]
pub(crate) struct ParkState(AtomicU8);

/// What the worker must do after a coroutine switched out to park.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParkOutcome {
    /// The coroutine is parked; an unpark will schedule it. The worker drops its reference.
    Parked,
    /// An unpark raced in before the switch completed: run the coroutine again.
    Notified,
}

/// What an unparker must do.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum UnparkOutcome {
    /// This caller took the coroutine out of `PARKED`: it must schedule it, exactly once.
    Schedule,
    /// The coroutine was not parked; a token is left (or already was) for its next park.
    Noted,
}

impl ParkState {
    pub(crate) fn new() -> Self {
        Self(AtomicU8::new(RUNNABLE))
    }

    /// Whether the coroutine is parked now. Acquire: pairs with the worker's CAS into
    /// `PARKED`, so what the coroutine wrote before parking is visible (`coro::wait`).
    pub(crate) fn is_parked(&self) -> bool {
        self.0.load(Acquire) == PARKED
    }

    /// Called by the running coroutine before switching out: consumes a pending token.
    /// Returns `true` if there was one, in which case the coroutine must not park.
    #[inline]
    pub(crate) fn take_notification(&self) -> bool {
        // Looked at first: a park usually finds no token, and a failing compare-exchange
        // is still a locked instruction. A token the look misses (one landing just after
        // it) is not lost: the worker's `transition_to_parked` consumes it.
        // Acquire on the exchange: pairs with the AcqRel in `unpark`, so what the unparker
        // wrote before unparking is visible when park returns.
        self.0.load(Relaxed) == NOTIFIED
            && self.0.compare_exchange(NOTIFIED, RUNNABLE, AcqRel, Acquire).is_ok()
    }

    /// Called by the worker once the coroutine has switched out to park.
    #[inline]
    pub(crate) fn transition_to_parked(&self) -> ParkOutcome {
        loop {
            match self.0.compare_exchange(RUNNABLE, PARKED, AcqRel, Acquire) {
                Ok(_) => return ParkOutcome::Parked,
                // Consume the token with an RMW, not a store: an unparker that re-notified
                // meanwhile (its own RMW) must be acquired too, or the coroutine could run
                // without seeing what that unparker published and park for good.
                Err(NOTIFIED) => {
                    if self.0.compare_exchange(NOTIFIED, RUNNABLE, AcqRel, Acquire).is_ok() {
                        return ParkOutcome::Notified;
                    }
                }
                Err(s) => {
                    panic!("ParkState::transition_to_parked: coroutine already parked (state {s:#04b})")
                }
            }
        }
    }

    /// Called from any thread.
    ///
    /// Always a read-modify-write, even when a token is already pending: the next
    /// consumer of the token (an AcqRel RMW) then acquires every unparker's prior writes
    /// through the release sequence. A plain load that saw `NOTIFIED` and returned would
    /// let the coroutine consume an older token, re-check its condition without seeing
    /// this unparker's write, and park with no wake-up coming.
    #[inline]
    pub(crate) fn unpark(&self) -> UnparkOutcome {
        let mut cur = self.0.load(Acquire);
        loop {
            let (next, outcome) = match cur {
                PARKED => (RUNNABLE, UnparkOutcome::Schedule),
                _ => (NOTIFIED, UnparkOutcome::Noted),
            };
            match self.0.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => return outcome,
                Err(actual) => cur = actual,
            }
        }
    }
}
