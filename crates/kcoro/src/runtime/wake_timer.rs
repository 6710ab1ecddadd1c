//! Timers that unpark: [`Handle::unpark_at`] arms an entry on the runtime's timer wheel
//! that uses an [`Unparker`] at its deadline, for code that schedules wake-ups of others
//! (the C API's `kc_sched_timer_wake_*`). A coroutine waiting with a deadline does not
//! need this: `park::park_deadline` arms and disarms its own entry.
//!
//! # Invariants
//! - A [`TimerId`] names its entry only until the entry fires or is cancelled; after that
//!   it is stale, and cancelling a stale id does nothing and reports `false`.

use std::time::Instant;

use crate::park::Unparker;
use crate::runtime::Handle;
use crate::runtime::timer::TimerKey;

/// Names a timer armed with [`Handle::unpark_at`]. Stale ids (fired, cancelled) are harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId(TimerKey);

impl TimerId {
    /// The id as one word, for handing through a C handle.
    pub fn into_raw(self) -> u64 {
        self.0.to_bits()
    }

    /// The inverse of [`into_raw`](Self::into_raw). Any word is accepted; one that names
    /// no timer armed on the runtime it is used with is stale. (A forged word may name
    /// another live timer of that runtime: pass back only words `into_raw` gave.)
    pub fn from_raw(raw: u64) -> Self {
        TimerId(TimerKey::from_bits(raw))
    }
}

impl Handle {
    /// Arms a timer on this runtime's wheel that calls `who.unpark()` at `deadline` (never
    /// before; a past deadline fires at the next turn of the wheel). Costs no thread: the
    /// workers fire it while they poll for timers and I/O.
    pub fn unpark_at(&self, deadline: Instant, who: Unparker) -> TimerId {
        TimerId(self.shared.driver.timer_insert(deadline, who))
    }

    /// Disarms a timer of this runtime. `true` if it was still armed (it will not fire);
    /// `false` if it had fired, was cancelled before, or is unknown.
    pub fn cancel_timer(&self, id: TimerId) -> bool {
        self.shared.driver.timer_cancel(id.0)
    }
}
