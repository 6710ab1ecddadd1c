//! A mutual-exclusion lock whose waiters park instead of blocking their worker thread.
//!
//! It is a [`Semaphore`] with one permit guarding an `UnsafeCell`: a coroutine that finds
//! the lock held parks (its worker runs other coroutines, so the holder may even yield or
//! park while holding it), a plain thread parks its thread, and unlocking hands the lock
//! straight to the first waiter in line (FIFO, no barging).
//!
//! No poisoning: a panic while holding the guard unwinds through the guard's `Drop`,
//! which unlocks; the data may be half-updated, and the next holder sees it as it is (as
//! with tokio's and parking_lot's mutexes). Code that must not observe a torn update
//! should restore its invariants on unwind itself.
//!
//! # Invariants
//! - A [`MutexGuard`] exists ⇔ the semaphore's one permit is held by it (or granted to a
//!   waiter about to build it): at most one `&mut T` is reachable through the lock.
//! - `get_mut` and `into_inner` need `&mut self` or `self`, so no guard can be alive.

use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use super::semaphore::{Semaphore, SemaphorePermit};
use super::waiter::WaitError;
use crate::sync::Cancelled;

/// A fair, coroutine-aware mutual-exclusion lock.
///
/// Unlike `std::sync::Mutex`, waiting parks the coroutine rather than its worker thread,
/// so the guard may be held across [`yield_now`](crate::yield_now), channel operations or
/// sleeps. Waiting gives up with [`Cancelled`] when the caller's
/// [ambient token](crate::sync::current_token) fires. Not re-entrant: locking twice from
/// one coroutine waits for itself until cancelled.
///
/// ```
/// use std::sync::Arc;
/// use kcoro::sync::Mutex;
///
/// let total = kcoro::run(|| {
///     let m = Arc::new(Mutex::new(0u64));
///     let handles: Vec<_> = (0..4)
///         .map(|_| {
///             let m = Arc::clone(&m);
///             kcoro::spawn(move || {
///                 let mut g = m.lock().unwrap();
///                 kcoro::yield_now(); // others park meanwhile
///                 *g += 1;
///             })
///         })
///         .collect();
///     handles.into_iter().for_each(|h| h.join().unwrap());
///     Arc::try_unwrap(m).unwrap().into_inner()
/// });
/// assert_eq!(total, 4);
/// ```
pub struct Mutex<T: ?Sized> {
    /// One permit: the right to reach `value`.
    sem: Semaphore,
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only through a guard holding the semaphore's single permit, or
// through `&mut self`; so shared `&Mutex` hands out `&mut T` to one holder at a time, which
// is moving access between threads: `T: Send` suffices, as for `std::sync::Mutex`.
unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

/// Exclusive access to a [`Mutex`]'s value; unlocks (handing the lock on) when dropped.
///
/// `Send` if `T: Send` (unlocking from another thread is fine); `Sync` only if
/// `T: Send + Sync`, since `&MutexGuard` gives out `&T`:
///
/// ```compile_fail
/// fn assert_sync<T: Sync>() {}
/// assert_sync::<kcoro::sync::MutexGuard<'static, std::cell::Cell<u8>>>();
/// ```
#[must_use = "dropping the guard unlocks at once"]
pub struct MutexGuard<'a, T: ?Sized> {
    mutex: &'a Mutex<T>,
    _permit: SemaphorePermit<'a>,
    /// Makes the guard `Sync` only for `T: Sync` (the `&Mutex` alone would be `Sync` for
    /// any `T: Send`).
    _marker: PhantomData<&'a mut T>,
}

impl<T> Mutex<T> {
    /// An unlocked mutex holding `value`.
    pub const fn new(value: T) -> Self {
        Self { sem: Semaphore::new(1), value: UnsafeCell::new(value) }
    }

    /// Consumes the mutex, returning the value.
    pub fn into_inner(self) -> T {
        self.value.into_inner()
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Locks, waiting in line (parked) while another holds it.
    pub fn lock(&self) -> Result<MutexGuard<'_, T>, Cancelled> {
        self.sem.acquire().map(|p| self.guard(p))
    }

    /// Like [`lock`](Self::lock), giving up with [`WaitError::Timeout`] after `timeout`
    /// (a zero timeout is a try).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<MutexGuard<'_, T>, WaitError> {
        self.sem.acquire_timeout(timeout).map(|p| self.guard(p))
    }

    /// Like [`lock`](Self::lock), giving up with [`WaitError::Timeout`] at `deadline`.
    pub fn lock_deadline(&self, deadline: Instant) -> Result<MutexGuard<'_, T>, WaitError> {
        self.sem.acquire_deadline(deadline).map(|p| self.guard(p))
    }

    /// Locks if it is free and nobody waits for it; never waits.
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        self.sem.try_acquire().map(|p| self.guard(p))
    }

    /// The value, through `&mut self`: no locking needed, since no guard can exist.
    pub fn get_mut(&mut self) -> &mut T {
        self.value.get_mut()
    }

    fn guard<'a>(&'a self, permit: SemaphorePermit<'a>) -> MutexGuard<'a, T> {
        MutexGuard { mutex: self, _permit: permit, _marker: PhantomData }
    }
}

impl<T: ?Sized> Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the mutex's only permit, so no other guard exists and
        // `get_mut`/`into_inner` are excluded by the `&Mutex` borrow it carries.
        unsafe { &*self.mutex.value.get() }
    }
}

impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this borrow unique among the guard's.
        unsafe { &mut *self.mutex.value.get() }
    }
}

impl<T: Default> Default for Mutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<T> From<T> for Mutex<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(g) => d.field("data", &&*g),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for MutexGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}

    #[test]
    fn auto_traits() {
        assert_send_sync::<Mutex<std::cell::Cell<u8>>>();
        assert_send_sync::<MutexGuard<'static, Vec<u8>>>();
        assert_send::<MutexGuard<'static, std::cell::Cell<u8>>>();
        assert_send_sync::<Semaphore>();
        assert_send_sync::<SemaphorePermit<'static>>();
    }

    #[test]
    fn try_lock_fails_while_held_and_unsized_values_work() {
        let unsized_: Box<Mutex<[u8]>> = Box::new(Mutex::new([1u8, 2, 3]));
        unsized_.lock().unwrap()[0] = 9;
        assert_eq!(&*unsized_.try_lock().unwrap(), &[9, 2, 3]);
        let m = Mutex::new(vec![1]);
        let g = m.try_lock().unwrap();
        assert!(m.try_lock().is_none());
        assert_eq!(m.lock_timeout(Duration::ZERO).unwrap_err(), WaitError::Timeout);
        assert_eq!(format!("{m:?}"), "Mutex { data: <locked> }");
        drop(g);
        m.lock().unwrap().push(2);
        let mut m = m;
        m.get_mut().push(3);
        assert_eq!(m.into_inner(), [1, 2, 3]);
    }
}
