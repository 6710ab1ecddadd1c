//! The hand-shake that lets a worker sleep in the reactor without losing a wake-up.
//!
//! A worker about to wait in `epoll_wait` announces it (`enter`) and then re-reads its
//! sleep state; a waker changes that state and then looks at the flag (`is_polling`),
//! writing the reactor's waker if it is set. Both sides store then load, SeqCst: either the
//! sleeper sees the new state and does not wait, or the waker sees the flag and interrupts
//! the wait (a wake written before the wait starts makes it return at once). The fences
//! make the store-then-load order explicit (as in `runtime::idle`), which is also what the
//! model checker sees. Modelled in `runtime/tests/loom_reactor.rs`.

use crate::loom::atomic::{AtomicBool, Ordering::SeqCst, fence};

#[derive(Default)]
pub(crate) struct ReactorFlag(AtomicBool);

impl ReactorFlag {
    /// Sleeper: announces the wait, then asks `still_sleeping` (which must read the sleep
    /// state SeqCst). Returns whether to wait; call `leave` afterwards either way.
    pub(crate) fn enter(&self, still_sleeping: impl FnOnce() -> bool) -> bool {
        self.0.store(true, SeqCst);
        fence(SeqCst);
        still_sleeping()
    }

    pub(crate) fn leave(&self) {
        self.0.store(false, SeqCst);
    }

    /// Waker, after changing the sleeper's state: must it interrupt the reactor?
    pub(crate) fn is_polling(&self) -> bool {
        fence(SeqCst);
        self.0.load(SeqCst)
    }
}
