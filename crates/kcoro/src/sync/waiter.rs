//! The wait queue behind [`WaitGroup`](super::WaitGroup), [`Semaphore`](super::Semaphore)
//! and [`Mutex`](super::Mutex): FIFO waiters granted under their owner's lock, and the park
//! loop that waits for the grant without polling.
//!
//! # Protocol
//! 1. *Enqueue*: under the owner's lock, a caller that cannot proceed pushes a [`Waiter`]
//!    carrying its unparker and what it wants (a permit count), then unlocks.
//! 2. *Grant*: under the owner's lock, a releaser pops the first waiter, hands it what it
//!    wants (permits leave the pool there and then: hand-off, no barging), sets `granted`
//!    and, after unlocking, unparks it ([`Wakes`]).
//! 3. *Park*: the waiter registers on its ambient token, then parks until `granted`, the
//!    token fires or the deadline passes. Each of those unparks it, so it never polls;
//!    a spurious return just goes round the loop.
//! 4. *Withdraw*: a waiter that gave up (cancel, timeout, unwind) takes the owner's lock.
//!    If `granted` is set the grant won the race: the call succeeds (on unwind the grant
//!    is given back). Otherwise the waiter is still queued and removes itself.
//!
//! # Invariants
//! - `granted` is set once, under the owner's lock, on a waiter just popped from the
//!   queue: under the lock, queued ⇔ not granted. So withdrawing never loses a grant and
//!   never removes a waiter twice.
//! - `granted` set ⇒ an unpark follows: a waiter parked while not granted always has a
//!   wake coming (a grant, its token, or its timer).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::coro::wait::Wait;
use crate::loom::atomic::{AtomicBool, Ordering::*};
use crate::park::{self, Unparker};
use crate::sync::{CancelToken, Cancelled, current_token};

/// Why a timed wait of [`WaitGroup`](super::WaitGroup), [`Semaphore`](super::Semaphore)
/// or [`Mutex`](super::Mutex) gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed first (`-ETIME`).
    #[error("wait timed out")]
    Timeout,
    /// The caller's ambient cancel token fired (`-ECANCELED`). Wins over a timeout.
    #[error("wait cancelled")]
    Cancelled,
}

impl WaitError {
    /// The kcoro code: `-ETIME` or `-ECANCELED`.
    pub fn code(&self) -> i32 {
        match self {
            WaitError::Timeout => crate::code::TIMEOUT,
            WaitError::Cancelled => crate::code::CANCELED,
        }
    }
}

impl From<Cancelled> for WaitError {
    fn from(_: Cancelled) -> Self {
        WaitError::Cancelled
    }
}

/// One parked caller.
pub(crate) struct Waiter {
    /// Set (under the owner's lock) when the waiter was handed what it waits for.
    granted: AtomicBool,
    /// Wakes the coroutine or thread that queued the waiter.
    unparker: Unparker,
    /// Permits wanted (semaphore); 0 where nothing is counted out (wait group).
    want: usize,
}

impl Waiter {
    /// Permits this waiter asked for.
    pub(crate) fn want(&self) -> usize {
        self.want
    }

    /// Acquire: pairs with the Release in [`WaitQueue::grant_front`], so what the granter
    /// did under the owner's lock (taking permits, releasing the data) is visible.
    fn is_granted(&self) -> bool {
        self.granted.load(Acquire)
    }
}

/// FIFO of waiters. Lives inside the owner's lock-protected state: every method's caller
/// holds that lock.
#[derive(Default)]
pub(crate) struct WaitQueue {
    waiters: VecDeque<Arc<Waiter>>,
}

impl WaitQueue {
    /// An empty queue (usable in `const` constructors).
    pub(crate) const fn new() -> Self {
        Self { waiters: VecDeque::new() }
    }

    /// Queues the caller (its coroutine, else its thread) wanting `want` permits.
    pub(crate) fn push(&mut self, want: usize) -> Arc<Waiter> {
        let w = Arc::new(Waiter { granted: AtomicBool::new(false), unparker: park::current(), want });
        self.waiters.push_back(Arc::clone(&w));
        w
    }

    /// What the first waiter wants, if any waits.
    pub(crate) fn front_want(&self) -> Option<usize> {
        self.waiters.front().map(|w| w.want)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }

    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Pops the first waiter and grants it; it is unparked when `wakes` is.
    pub(crate) fn grant_front(&mut self, wakes: &mut Wakes) {
        if let Some(w) = self.waiters.pop_front() {
            // Release: pairs with the Acquire in `Waiter::is_granted`.
            w.granted.store(true, Release);
            wakes.push(w);
        }
    }

    /// Grants every waiter, in order.
    pub(crate) fn grant_all(&mut self, wakes: &mut Wakes) {
        while !self.waiters.is_empty() {
            self.grant_front(wakes);
        }
    }

    /// Step 4: returns `true` if `w` was granted (the caller owns the grant); otherwise
    /// removes it from the queue and returns `false`.
    pub(crate) fn withdraw(&mut self, w: &Arc<Waiter>) -> bool {
        if w.is_granted() {
            return true;
        }
        let Some(at) = self.waiters.iter().position(|q| Arc::ptr_eq(q, w)) else {
            panic!("WaitQueue::withdraw: a waiter is neither granted nor queued")
        };
        self.waiters.remove(at);
        false
    }
}

/// Granted waiters to unpark once the owner's lock is released (unparking schedules a
/// coroutine: no reason to do it inside the critical section). Unparks on drop too, so a
/// grant is never left without its wake.
#[must_use = "granted waiters must be woken"]
#[derive(Default)]
pub(crate) struct Wakes {
    /// The common case (one hand-off) needs no allocation.
    first: Option<Arc<Waiter>>,
    rest: Vec<Arc<Waiter>>,
}

impl Wakes {
    fn push(&mut self, w: Arc<Waiter>) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }

    /// Unparks them. Call after releasing the owner's lock.
    pub(crate) fn wake(self) {
        drop(self);
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        for w in self.first.take().into_iter().chain(self.rest.drain(..)) {
            w.unparker.unpark();
        }
    }
}

/// What owns a [`WaitQueue`] under a lock.
pub(crate) trait Owner {
    /// Takes the owner's lock and withdraws `w` ([`WaitQueue::withdraw`]); if that leaves
    /// room for the waiters behind it, grants them. Returns `true` if `w` was granted.
    fn withdraw(&self, w: &Arc<Waiter>) -> bool;

    /// Returns a grant that will never be used (its waiter unwound after being granted).
    fn give_back(&self, w: &Waiter);
}

/// Steps 3 and 4: waits for `w` (queued by this caller, owner's lock released) to be
/// granted. `Ok` means granted — possibly after the token fired or the deadline passed, if
/// the grant got there first. `Err` means withdrawn: nothing was granted.
pub(crate) fn wait<O: Owner + ?Sized>(
    owner: &O,
    w: &Arc<Waiter>,
    deadline: Option<Instant>,
    why: Wait,
) -> Result<(), WaitError> {
    /// Withdraws `w` if the frame unwinds while parked (a runtime shutting down unwinds
    /// its parked coroutines), so no grant goes to a dead waiter.
    struct OnUnwind<'a, O: Owner + ?Sized> {
        owner: &'a O,
        w: &'a Arc<Waiter>,
        armed: bool,
    }
    impl<O: Owner + ?Sized> Drop for OnUnwind<'_, O> {
        fn drop(&mut self) {
            if self.armed && self.owner.withdraw(self.w) {
                self.owner.give_back(self.w);
            }
        }
    }

    let mut guard = OnUnwind { owner, w, armed: true };
    let outcome = park_until(|| w.is_granted(), deadline, why);
    guard.armed = false;
    match outcome {
        Ok(()) => Ok(()),
        Err(_) if owner.withdraw(w) => Ok(()),
        Err(why) => Err(why),
    }
}

/// Parks until `done()` holds, the caller's ambient token fires, or `deadline` passes.
/// Whoever makes `done()` true must unpark the caller afterwards; the token and the timer
/// wheel wake it otherwise, so nothing polls. `done()` wins a tie with either.
/// `why` says what the caller waits on, for monitors.
pub(crate) fn park_until(
    done: impl Fn() -> bool,
    deadline: Option<Instant>,
    why: Wait,
) -> Result<(), WaitError> {
    park_until_with(done, deadline, None, why)
}

/// [`park_until`], also giving up when `token` (if any) fires.
pub(crate) fn park_until_with(
    done: impl Fn() -> bool,
    deadline: Option<Instant>,
    token: Option<&CancelToken>,
    why: Wait,
) -> Result<(), WaitError> {
    // Read only here, on the way to parking: operations that complete at once never touch it.
    let ambient = current_token();
    let tokens = [token, ambient.as_ref()];
    let mut registrations = [None, None];
    for (slot, token) in registrations.iter_mut().zip(tokens) {
        if let Some(t) = token {
            match t.register(park::current()) {
                Some(r) => *slot = Some(r),
                None => return if done() { Ok(()) } else { Err(WaitError::Cancelled) },
            }
        }
    }
    let cancelled = || tokens.iter().flatten().any(|t| t.is_cancelled());
    loop {
        if done() {
            return Ok(());
        }
        if cancelled() {
            return Err(WaitError::Cancelled);
        }
        match deadline {
            None => park::park_as(why),
            Some(d) => {
                if park::park_deadline_as(d, why) && !done() {
                    return Err(if cancelled() { WaitError::Cancelled } else { WaitError::Timeout });
                }
            }
        }
    }
}

/// The deadline `d` from now; `None` (wait forever) if it does not fit in an `Instant`.
pub(crate) fn deadline_after(d: Duration) -> Option<Instant> {
    crate::now().checked_add(d)
}

/// True if `deadline` has passed: a timed call that cannot proceed at once gives up
/// without queueing (a zero timeout is a try).
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| crate::now() >= d)
}

/// Narrows the error of an untimed wait, which cannot time out.
pub(crate) fn untimed<T>(r: Result<T, WaitError>) -> Result<T, Cancelled> {
    r.map_err(|e| match e {
        WaitError::Cancelled => Cancelled,
        WaitError::Timeout => unreachable!("sync: a wait without a deadline timed out"),
    })
}
