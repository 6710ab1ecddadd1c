//! A wait group (Go's `sync.WaitGroup`): a counter that waiters wait to see reach zero.
//!
//! `add` raises the count, `done` lowers it by one, and when it reaches zero every queued
//! waiter is granted at once (see the protocol in `waiter.rs`) and unparked. A wait that
//! finds the count at zero returns at once; the group can then be reused for another
//! round.
//!
//! # Invariants
//! - Waiters queued ⇒ `count > 0`: reaching zero grants and empties the queue in the same
//!   critical section.
//! - `count` never goes below zero: a `done` that would take it there panics (caller
//!   misuse) and leaves the group unchanged.

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard, PoisonError};
use std::time::{Duration, Instant};

use super::waiter::{self, Owner, WaitError, WaitQueue, Waiter, Wakes};
use crate::coro::wait::{self, Wait};
use crate::sync::Cancelled;

/// Waits for a set of coroutines (or threads) to finish. Clones share the group.
///
/// Waiting parks the coroutine or thread, and gives up with [`Cancelled`] when the
/// caller's [ambient token](crate::sync::current_token) fires.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use kcoro::sync::WaitGroup;
///
/// kcoro::run(|| {
///     let wg = WaitGroup::new();
///     let hits = Arc::new(AtomicUsize::new(0));
///     for _ in 0..10 {
///         wg.add(1);
///         let (wg, hits) = (wg.clone(), Arc::clone(&hits));
///         kcoro::spawn(move || {
///             hits.fetch_add(1, Ordering::Relaxed);
///             wg.done();
///         });
///     }
///     wg.wait().unwrap();
///     assert_eq!(hits.load(Ordering::Relaxed), 10);
/// });
/// ```
#[derive(Clone, Default)]
pub struct WaitGroup {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Never held across a park or user code; a critical section is a few instructions.
    state: StdMutex<State>,
}

#[derive(Default)]
struct State {
    /// Outstanding `add`s not yet matched by `done`.
    count: usize,
    /// Waiters for `count == 0`; each wants nothing counted out (`want == 0`).
    queue: WaitQueue,
}

impl WaitGroup {
    /// A group with count zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to the count.
    ///
    /// # Panics
    /// If the count would overflow `usize`.
    pub fn add(&self, n: usize) {
        let mut st = self.inner.lock();
        let Some(count) = st.count.checked_add(n) else {
            drop(st);
            panic!("WaitGroup::add: the count overflows usize")
        };
        st.count = count;
    }

    /// Lowers the count by one; at zero, wakes every waiter.
    ///
    /// # Panics
    /// If the count is already zero (more `done`s than `add`s): a bug in the caller. The
    /// group is left unchanged.
    pub fn done(&self) {
        let mut st = self.inner.lock();
        if st.count == 0 {
            drop(st);
            panic!("WaitGroup::done called with the count at zero (more done() than add())");
        }
        st.count -= 1;
        let mut wakes = Wakes::default();
        if st.count == 0 {
            st.queue.grant_all(&mut wakes);
        }
        drop(st);
        wakes.wake();
    }

    /// The count right now (a snapshot).
    pub fn count(&self) -> usize {
        self.inner.lock().count
    }

    /// Waits until the count is zero; returns at once if it is.
    pub fn wait(&self) -> Result<(), Cancelled> {
        waiter::untimed(self.wait_inner(None))
    }

    /// Like [`wait`](Self::wait), giving up with [`WaitError::Timeout`] after `timeout`
    /// (a zero timeout just checks the count).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<(), WaitError> {
        self.wait_inner(waiter::deadline_after(timeout))
    }

    /// Like [`wait`](Self::wait), giving up with [`WaitError::Timeout`] at `deadline`.
    pub fn wait_deadline(&self, deadline: Instant) -> Result<(), WaitError> {
        self.wait_inner(Some(deadline))
    }

    fn wait_inner(&self, deadline: Option<Instant>) -> Result<(), WaitError> {
        let mut st = self.inner.lock();
        if st.count == 0 {
            return Ok(());
        }
        if waiter::expired(deadline) {
            return Err(WaitError::Timeout);
        }
        let w = st.queue.push(0);
        drop(st);
        waiter::wait(&*self.inner, &w, deadline, Wait::sync(wait::SYNC_WAIT_GROUP))
    }
}

impl Inner {
    fn lock(&self) -> StdGuard<'_, State> {
        // Critical sections never panic between two writes: a poisoned state is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Owner for Inner {
    fn withdraw(&self, w: &Arc<Waiter>) -> bool {
        self.lock().queue.withdraw(w)
    }

    fn give_back(&self, _: &Waiter) {
        // Seeing zero takes nothing from the group: there is nothing to give back.
    }
}

impl fmt::Debug for WaitGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitGroup").field("count", &self.count()).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::{CancelToken, with_token};

    #[test]
    fn threads_wait_for_the_count_to_reach_zero() {
        let wg = WaitGroup::new();
        assert_eq!(wg.wait(), Ok(()), "zero count: returns at once");
        wg.add(3);
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let wg = wg.clone();
                std::thread::spawn(move || wg.wait())
            })
            .collect();
        for _ in 0..3 {
            wg.done();
        }
        for w in waiters {
            assert_eq!(w.join().unwrap(), Ok(()));
        }
        assert_eq!(wg.count(), 0);
        assert!(wg.inner.lock().queue.is_empty());
    }

    #[test]
    fn cancelled_and_timed_out_waiters_leave_the_queue() {
        let wg = WaitGroup::new();
        wg.add(1);
        assert_eq!(wg.wait_timeout(Duration::ZERO), Err(WaitError::Timeout));
        assert_eq!(wg.wait_timeout(Duration::from_millis(2)), Err(WaitError::Timeout));
        let token = CancelToken::new();
        token.cancel();
        assert_eq!(with_token(token, || wg.wait()), Err(Cancelled));
        assert!(wg.inner.lock().queue.is_empty());
        wg.done();
        assert_eq!(wg.wait_timeout(Duration::ZERO), Ok(()));
    }

    #[test]
    #[should_panic(expected = "more done() than add()")]
    fn done_below_zero_panics() {
        let wg = WaitGroup::new();
        wg.add(1);
        wg.done();
        wg.done();
    }
}
