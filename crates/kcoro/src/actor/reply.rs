//! The reply half of `ask`: a one-shot slot the actor fills, and the asker's wait on it.
//!
//! # Invariants
//! - `value` is written at most once, before `signal.notify()`; dropping an unused
//!   [`Reply`] notifies with `value` empty, so an asker never waits for a reply that
//!   cannot come.
//! - The asker reads `value` only after observing the notification.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::AskError;
use crate::coro::wait::{self, Wait};
use crate::park::{self, Signal};
use crate::sync::WaitError;
use crate::sync::waiter::park_until;

struct Slot<R> {
    signal: Signal,
    value: Mutex<Option<R>>,
}

/// Where an actor sends the answer to an `ask`. Send at most once; dropping it unanswered
/// makes the asker's `ask` return [`AskError::NoReply`] at once.
pub struct Reply<R> {
    slot: Option<Arc<Slot<R>>>,
}

pub(crate) struct Pending<R> {
    slot: Arc<Slot<R>>,
}

pub(crate) fn pair<R>() -> (Reply<R>, Pending<R>) {
    let slot = Arc::new(Slot { signal: Signal::new(), value: Mutex::new(None) });
    (Reply { slot: Some(Arc::clone(&slot)) }, Pending { slot })
}

impl<R> Reply<R> {
    /// Answers the ask. If the asker gave up (timeout, cancel), the value is dropped.
    pub fn send(mut self, value: R) {
        if let Some(slot) = self.slot.take() {
            *slot.value.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
            slot.signal.notify();
        }
    }
}

impl<R> Drop for Reply<R> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.signal.notify(); // unanswered: the asker sees `NoReply`
        }
    }
}

impl<R> std::fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("answered", &self.slot.is_none()).finish()
    }
}

impl<R> Pending<R> {
    /// Waits for the reply until `deadline`, giving up early if the caller's ambient token
    /// is cancelled. Parks; never polls.
    pub(crate) fn wait(self, deadline: Option<Instant>) -> Result<R, AskError> {
        let s = &self.slot;
        if !s.signal.is_notified() && s.signal.register(park::current()) {
            park_until(|| s.signal.is_notified(), deadline, Wait::sync(wait::SYNC_ACTOR_REPLY)).map_err(
                |e| match e {
                    WaitError::Timeout => AskError::Timeout,
                    WaitError::Cancelled => AskError::Canceled,
                },
            )?;
        }
        s.value.lock().unwrap_or_else(|p| p.into_inner()).take().ok_or(AskError::NoReply)
    }
}
