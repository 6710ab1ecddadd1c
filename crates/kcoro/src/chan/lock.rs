//! The channel lock: a test-and-test-and-set spin lock whose release is one plain store.
//!
//! Channel critical sections are a few dozen instructions that never park, never
//! allocate on the fast paths and never run user code, so a waiter is better off spinning
//! briefly than sleeping; and releasing with a store instead of `std::sync::Mutex`'s
//! swap takes one atomic read-modify-write off every channel operation. With no waiter
//! count to wake, a waiter that spins too long (the holder was preempted) yields a few
//! times and then sleeps in growing steps (`crate::backoff`), so the preempted holder gets
//! its CPU back.
//! Under loom the lock is loom's `Mutex`, so the models check the code as written.

#[cfg(not(loom))]
pub(crate) use self::spin::{Guard, Lock};

#[cfg(loom)]
pub(crate) use self::model::{Guard, Lock};

#[cfg(not(loom))]
mod spin {
    use std::cell::UnsafeCell;
    use std::ops::{Deref, DerefMut};
    use std::sync::atomic::{AtomicBool, Ordering::*};

    use crate::backoff::Backoff;

    /// Spin rounds (doubling `spin_loop` hints each round) before yielding the thread.
    const SPIN_ROUNDS: u32 = 7;

    pub(crate) struct Lock<T> {
        locked: AtomicBool,
        value: UnsafeCell<T>,
    }

    // SAFETY: `value` is only reached through a `Guard`, and at most one guard exists at a
    // time (the `locked` flag); moving the `T` between threads needs `T: Send`.
    unsafe impl<T: Send> Send for Lock<T> {}
    // SAFETY: as above: shared access hands out exclusive access one guard at a time.
    unsafe impl<T: Send> Sync for Lock<T> {}

    pub(crate) struct Guard<'a, T> {
        lock: &'a Lock<T>,
    }

    impl<T> Lock<T> {
        pub(crate) fn new(value: T) -> Self {
            Lock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
        }

        #[inline]
        pub(crate) fn lock(&self) -> Guard<'_, T> {
            // Acquire: pairs with the Release in `Guard::drop` of the previous holder.
            if self.locked.compare_exchange_weak(false, true, Acquire, Relaxed).is_err() {
                self.lock_contended();
            }
            Guard { lock: self }
        }

        #[cold]
        fn lock_contended(&self) {
            let mut backoff = Backoff::new(SPIN_ROUNDS);
            loop {
                // Test before test-and-set: spin on a shared read, not on writes.
                while self.locked.load(Relaxed) {
                    backoff.wait();
                }
                if self.locked.compare_exchange_weak(false, true, Acquire, Relaxed).is_ok() {
                    return;
                }
            }
        }
    }

    impl<T> Deref for Guard<'_, T> {
        type Target = T;
        #[inline]
        fn deref(&self) -> &T {
            // SAFETY: this guard holds the lock: no other reference to the value exists.
            unsafe { &*self.lock.value.get() }
        }
    }

    impl<T> DerefMut for Guard<'_, T> {
        #[inline]
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: as in `deref`, and `&mut self` makes this borrow unique.
            unsafe { &mut *self.lock.value.get() }
        }
    }

    impl<T> Drop for Guard<'_, T> {
        #[inline]
        fn drop(&mut self) {
            // Release: publishes the critical section to the next holder's Acquire.
            self.lock.locked.store(false, Release);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::sync::Arc;

        #[test]
        fn excludes_concurrent_holders() {
            let lock = Arc::new(Lock::new(0u64));
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let lock = Arc::clone(&lock);
                    std::thread::spawn(move || {
                        for _ in 0..if cfg!(miri) { 100 } else { 100_000 } {
                            // A non-atomic read-modify-write: lost updates would show.
                            let mut g = lock.lock();
                            let v = *g;
                            *g = v + 1;
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            assert_eq!(*lock.lock(), if cfg!(miri) { 400 } else { 400_000 });
        }

        /// A holder that keeps the lock long (as a preempted one does) does not have its
        /// waiter burn a CPU meanwhile: the waiter sleeps, and gets the lock once it is free.
        #[test]
        #[cfg_attr(miri, ignore)]
        fn a_long_wait_sleeps_instead_of_burning_the_cpu() {
            const HOLD: std::time::Duration = std::time::Duration::from_millis(300);
            let lock = Arc::new(Lock::new(0u32));
            let held = lock.lock();
            let waiter = std::thread::spawn({
                let lock = Arc::clone(&lock);
                move || {
                    let before = crate::backoff::thread_cpu_time();
                    *lock.lock() += 1;
                    crate::backoff::thread_cpu_time() - before
                }
            });
            std::thread::sleep(HOLD);
            drop(held);
            let spent = waiter.join().unwrap();
            assert_eq!(*lock.lock(), 1, "the waiter got the lock once it was free");
            // Yielding throughout, the waiter used most of a CPU for the whole hold (or its
            // share of one on a busy machine, still far above this).
            assert!(spent < HOLD / 10, "the waiter used {spent:?} of CPU over a {HOLD:?} hold");
        }
    }
}

#[cfg(loom)]
mod model {
    pub(crate) struct Lock<T>(loom::sync::Mutex<T>);
    pub(crate) type Guard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Lock<T> {
        pub(crate) fn new(value: T) -> Self {
            Lock(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> Guard<'_, T> {
            self.0.lock().unwrap_or_else(|p| p.into_inner())
        }
    }
}
