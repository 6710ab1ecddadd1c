//! One name for the synchronisation primitives: `std` normally, loom's under `cfg(loom)`,
//! so the lock-free state machines (`coro::state`, `park::Signal`, `runtime::queue`) are
//! model-checked as written.

#[cfg(not(loom))]
pub(crate) use std::sync::atomic;

#[cfg(loom)]
pub(crate) use loom::sync::atomic;

#[cfg(not(loom))]
pub(crate) use std::cell::UnsafeCell;

/// loom's `UnsafeCell` tracks accesses through closures; std's gets the same shape here so
/// code using `with`/`with_mut` compiles unchanged in both worlds.
#[cfg(not(loom))]
pub(crate) trait CellExt<T> {
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R;
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R;
}

#[cfg(not(loom))]
impl<T> CellExt<T> for UnsafeCell<T> {
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.get())
    }
    #[inline(always)]
    fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

#[cfg(not(loom))]
pub(crate) use std::sync::Mutex;

#[cfg(loom)]
pub(crate) use loom::sync::Mutex;

/// One turn of a wait for another thread's short step (a spin hint; under loom, a yield
/// so the model lets that thread run).
#[inline]
pub(crate) fn spin_wait() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Counts the outcomes a model reaches across its runs, so a model asserts that loom
/// explored each branch it is meant to check. Loom's search starts from the schedule where
/// the main thread runs first, and it missed the races where a spawned thread's
/// load-then-exchange comes before a load on the main thread (three channel-ring models
/// reached only one of their outcomes until their parts were swapped): so the models put
/// the side that only looks on a spawned thread, and the side that moves on the main one.
#[cfg(all(test, loom))]
pub(crate) struct Reached(std::sync::Mutex<std::collections::BTreeSet<&'static str>>);

#[cfg(all(test, loom))]
impl Reached {
    pub(crate) const fn new() -> Self {
        Reached(std::sync::Mutex::new(std::collections::BTreeSet::new()))
    }

    pub(crate) fn note(&self, outcome: &'static str) {
        self.0.lock().unwrap().insert(outcome);
    }

    pub(crate) fn assert_all(&self, expected: &[&'static str]) {
        let got = self.0.lock().unwrap();
        for e in expected {
            assert!(got.contains(e), "loom never reached {e:?} (reached {got:?})");
        }
    }
}
