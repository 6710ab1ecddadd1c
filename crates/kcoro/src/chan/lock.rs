//! The channel lock: a test-and-test-and-set spin lock whose release is one plain store.
//!
//! Channel critical sections are a few dozen instructions that never park, never
//! allocate on the fast paths and never run user code, so a waiter is better off spinning
//! briefly than sleeping; and releasing with a store instead of `std::sync::Mutex`'s
//! swap takes one atomic read-modify-write off every channel operation. A waiter that
//! spins too long (the holder was preempted) yields its thread instead of burning it.
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
            let mut round = 0;
            loop {
                // Test before test-and-set: spin on a shared read, not on writes.
                while self.locked.load(Relaxed) {
                    if round < SPIN_ROUNDS {
                        for _ in 0..1u32 << round {
                            std::hint::spin_loop();
                        }
                        round += 1;
                    } else {
                        std::thread::yield_now();
                    }
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
