//! A counting semaphore whose waiters park (coroutine or thread) and are served in order.
//!
//! Releasing hands permits straight to the first waiters that fit (see the protocol in
//! `waiter.rs`): a woken waiter already owns its permits, so nobody can take them in the
//! gap between its wake-up and its run, and a caller that arrives while others wait
//! queues behind them — even a `try_acquire` — instead of barging.
//!
//! # Invariants
//! - Waiters queued ⇒ `available <` what the first one wants (else it would have been
//!   granted when the permits came back).
//! - Permits are conserved: `available` + permits held by [`SemaphorePermit`]s + permits
//!   granted to waiters not yet returned = initial + added − forgotten. A waiter that gives
//!   up (cancel, timeout, unwind) either keeps a grant that beat it or takes none.

use std::fmt;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard, PoisonError};
use std::time::{Duration, Instant};

use super::waiter::{self, Owner, WaitError, WaitQueue, Waiter, Wakes};
use crate::coro::wait::{self, Wait};
use crate::sync::Cancelled;

/// A counting semaphore for coroutines and threads, with FIFO hand-off to waiters.
///
/// Waiting parks the coroutine (its worker runs others) or the thread, and gives up with
/// [`Cancelled`] when the caller's [ambient token](crate::sync::current_token) fires.
///
/// ```
/// use std::sync::Arc;
/// use kcoro::sync::Semaphore;
///
/// kcoro::run(|| {
///     let sem = Arc::new(Semaphore::new(2));
///     let handles: Vec<_> = (0..8)
///         .map(|_| {
///             let sem = Arc::clone(&sem);
///             kcoro::spawn(move || {
///                 let _permit = sem.acquire().unwrap(); // at most two hold one at a time
///                 kcoro::yield_now();
///             })
///         })
///         .collect();
///     handles.into_iter().for_each(|h| h.join().unwrap());
///     assert_eq!(sem.available_permits(), 2);
/// });
/// ```
pub struct Semaphore {
    /// Never held across a park or user code; a critical section is a few instructions.
    state: StdMutex<State>,
}

struct State {
    /// Permits not held and not granted.
    available: usize,
    queue: WaitQueue,
}

/// Permits held from a [`Semaphore`]; dropping it returns them (handing them to waiters
/// first in line).
#[must_use = "dropping the permit releases it at once"]
pub struct SemaphorePermit<'a> {
    sem: &'a Semaphore,
    n: usize,
}

impl Semaphore {
    /// A semaphore with `permits` permits.
    pub const fn new(permits: usize) -> Self {
        Self { state: StdMutex::new(State { available: permits, queue: WaitQueue::new() }) }
    }

    fn lock(&self) -> StdGuard<'_, State> {
        // Critical sections never panic between two writes: a poisoned state is consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a permit, waiting in line if none is free.
    pub fn acquire(&self) -> Result<SemaphorePermit<'_>, Cancelled> {
        waiter::untimed(self.acquire_inner(1, None))
    }

    /// Takes `n` permits at once, waiting in line until all `n` are free (a request for
    /// more than the semaphore will ever have waits until cancelled, and holds up the
    /// waiters behind it). `n == 0` succeeds at once.
    pub fn acquire_many(&self, n: usize) -> Result<SemaphorePermit<'_>, Cancelled> {
        waiter::untimed(self.acquire_inner(n, None))
    }

    /// Like [`acquire`](Self::acquire), giving up with [`WaitError::Timeout`] after
    /// `timeout` (a zero timeout is a try).
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SemaphorePermit<'_>, WaitError> {
        self.acquire_inner(1, waiter::deadline_after(timeout))
    }

    /// Like [`acquire`](Self::acquire), giving up with [`WaitError::Timeout`] at `deadline`.
    pub fn acquire_deadline(&self, deadline: Instant) -> Result<SemaphorePermit<'_>, WaitError> {
        self.acquire_inner(1, Some(deadline))
    }

    /// Like [`acquire_many`](Self::acquire_many), giving up with [`WaitError::Timeout`] at
    /// `deadline`; on either error it holds none of the `n`.
    pub fn acquire_many_deadline(
        &self,
        n: usize,
        deadline: Instant,
    ) -> Result<SemaphorePermit<'_>, WaitError> {
        self.acquire_inner(n, Some(deadline))
    }

    /// Takes a permit if one is free and nobody waits for it; never waits.
    pub fn try_acquire(&self) -> Option<SemaphorePermit<'_>> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are free and nobody waits ahead; never waits.
    pub fn try_acquire_many(&self, n: usize) -> Option<SemaphorePermit<'_>> {
        self.lock().try_take(n).then(|| SemaphorePermit { sem: self, n })
    }

    /// Permits free right now (a snapshot). Permits handed to a waiter that has not run
    /// yet are no longer counted.
    pub fn available_permits(&self) -> usize {
        self.lock().available
    }

    /// Adds `n` permits, handing them to waiters first in line.
    ///
    /// # Panics
    /// If the count of free permits would overflow `usize`.
    pub fn add_permits(&self, n: usize) {
        let mut st = self.lock();
        let Some(total) = st.available.checked_add(n) else {
            drop(st);
            panic!("Semaphore::add_permits: the permit count overflows usize")
        };
        st.available = total;
        let wakes = st.grant_waiters();
        drop(st);
        wakes.wake();
    }

    /// Fast path, else queue and wait (see the module docs).
    fn acquire_inner(&self, n: usize, deadline: Option<Instant>) -> Result<SemaphorePermit<'_>, WaitError> {
        let mut st = self.lock();
        if st.try_take(n) {
            return Ok(SemaphorePermit { sem: self, n });
        }
        if waiter::expired(deadline) {
            return Err(WaitError::Timeout);
        }
        let w = st.queue.push(n);
        drop(st);
        waiter::wait(self, &w, deadline, Wait::sync(wait::SYNC_LOCK))?;
        Ok(SemaphorePermit { sem: self, n })
    }
}

impl State {
    /// Takes `n` permits if free and no waiter is ahead (zero permits wait for nobody).
    fn try_take(&mut self, n: usize) -> bool {
        if n == 0 || (self.queue.is_empty() && self.available >= n) {
            self.available -= n;
            true
        } else {
            false
        }
    }

    /// Hands free permits to waiters in order, while the first one fits; restores the
    /// first invariant after permits come back or a waiter leaves the head.
    fn grant_waiters(&mut self) -> Wakes {
        let mut wakes = Wakes::default();
        while let Some(want) = self.queue.front_want() {
            if want > self.available {
                break;
            }
            self.available -= want;
            self.queue.grant_front(&mut wakes);
        }
        wakes
    }
}

impl Owner for Semaphore {
    fn withdraw(&self, w: &Arc<Waiter>) -> bool {
        let mut st = self.lock();
        if st.queue.withdraw(w) {
            return true;
        }
        // A head that wanted more than was free may have been holding up smaller requests.
        let wakes = st.grant_waiters();
        drop(st);
        wakes.wake();
        false
    }

    fn give_back(&self, w: &Waiter) {
        self.add_permits(w.want());
    }
}

impl SemaphorePermit<'_> {
    /// How many permits this holds.
    pub fn num_permits(&self) -> usize {
        self.n
    }

    /// Drops the permit without returning its permits: the semaphore has that many fewer.
    pub fn forget(mut self) {
        self.n = 0;
    }
}

impl Drop for SemaphorePermit<'_> {
    fn drop(&mut self) {
        if self.n > 0 {
            self.sem.add_permits(self.n);
        }
    }
}

impl Default for Semaphore {
    /// A semaphore with no permits.
    fn default() -> Self {
        Self::new(0)
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("Semaphore")
            .field("available", &st.available)
            .field("waiting", &!st.queue.is_empty())
            .finish()
    }
}

impl fmt::Debug for SemaphorePermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphorePermit").field("permits", &self.n).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sync::{CancelToken, with_token};

    /// Blocks this thread until `n` waiters are queued on `sem` (tests only).
    fn until_queued(sem: &Semaphore, n: usize) {
        while sem.lock().queue.len() < n {
            std::thread::yield_now();
        }
    }

    #[test]
    fn try_acquire_does_not_barge_past_a_waiter() {
        let sem = Arc::new(Semaphore::new(2));
        let (a, b) = (sem.try_acquire().unwrap(), sem.try_acquire().unwrap());
        let s2 = Arc::clone(&sem);
        let waiter = std::thread::spawn(move || s2.acquire_many(2).map(|p| p.num_permits()));
        until_queued(&sem, 1);
        drop(a);
        assert_eq!(sem.available_permits(), 1);
        assert!(sem.try_acquire().is_none(), "the free permit is kept for the waiter ahead");
        drop(b);
        assert_eq!(waiter.join().unwrap(), Ok(2));
        assert_eq!(sem.available_permits(), 2);
    }

    #[test]
    fn a_withdrawn_head_lets_smaller_requests_behind_it_in() {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.acquire().unwrap();
        let token = CancelToken::new();
        let (s2, t2) = (Arc::clone(&sem), token.clone());
        let big = std::thread::spawn(move || with_token(t2, || s2.acquire_many(2).map(|p| p.num_permits())));
        until_queued(&sem, 1);
        let s3 = Arc::clone(&sem);
        let small = std::thread::spawn(move || s3.acquire().map(|p| p.num_permits()));
        until_queued(&sem, 2);
        drop(held);
        assert_eq!(sem.available_permits(), 1, "one free permit: too few for the head");
        token.cancel();
        assert_eq!(big.join().unwrap(), Err(Cancelled));
        assert_eq!(small.join().unwrap(), Ok(1), "granted when the head withdrew");
        assert_eq!(sem.available_permits(), 1);
    }

    #[test]
    fn zero_timeout_is_a_try_and_forget_removes_permits() {
        let sem = Semaphore::new(1);
        let p = sem.acquire().unwrap();
        assert_eq!(sem.acquire_timeout(Duration::ZERO).unwrap_err(), WaitError::Timeout);
        assert!(sem.lock().queue.is_empty(), "a zero timeout never queues");
        p.forget();
        assert_eq!(sem.available_permits(), 0);
        sem.add_permits(3);
        assert_eq!(sem.acquire_many(3).unwrap().num_permits(), 3);
        assert_eq!(sem.acquire_many(0).unwrap().num_permits(), 0);
    }

    #[test]
    fn a_many_permit_wait_that_times_out_leaves_no_permits_taken_and_lets_others_in() {
        let sem = Arc::new(Semaphore::new(3));
        let held = sem.acquire_many(2).unwrap();
        let s2 = Arc::clone(&sem);
        // No look while it waits: a busy machine may let its deadline pass before any look.
        let deadline = Instant::now() + Duration::from_millis(50);
        let big = std::thread::spawn(move || s2.acquire_many_deadline(3, deadline).map(|p| p.num_permits()));
        assert_eq!(big.join().unwrap(), Err(WaitError::Timeout));
        assert!(sem.lock().queue.is_empty(), "the timed-out waiter left the queue");
        assert_eq!(sem.available_permits(), 1, "the timed-out head took nothing");
        assert_eq!(sem.try_acquire().map(|p| p.num_permits()), Some(1));
        drop(held);
        let p = sem.acquire_many_deadline(3, Instant::now() + Duration::from_secs(60)).unwrap();
        assert_eq!(p.num_permits(), 3);
    }
}
