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
