//! A counting global allocator, switched on only around the timed loops that report
//! `allocs_per_op` (the `plugin` suite's children).
//!
//! While [`ON`] is off (always, outside those loops) every allocation costs one relaxed
//! load on top of the system allocator, so other suites are unaffected. While it is on,
//! each `alloc`, `alloc_zeroed` and `realloc` adds one to a per-thread stripe of
//! [`COUNTS`], so two threads allocating at once do not bounce one cache line between
//! them. Frees are not counted.
//!
//! Only this binary's allocations are seen: a plugin `.so` links its own Rust standard
//! library and allocates through its own global allocator, which nothing here counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Whether allocations are being counted.
static ON: AtomicBool = AtomicBool::new(false);

/// Counter stripes; a thread uses stripe `thread index % STRIPES`.
const STRIPES: usize = 16;

/// One counter on its own cache line pair (128 bytes covers adjacent-line prefetch).
#[repr(align(128))]
struct Stripe(AtomicU64);

static COUNTS: [Stripe; STRIPES] = [const { Stripe(AtomicU64::new(0)) }; STRIPES];

/// The next thread's stripe.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe, `usize::MAX` until it first counts. A `const` `Cell` with no
    /// destructor: reading it never allocates, so it is usable from inside the allocator.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The system allocator, counting while [`ON`] is set.
pub struct Counting;

#[inline]
fn count() {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    // `try_with`: a thread being torn down may still allocate; it just goes uncounted
    // on stripe 0 rather than failing.
    let stripe = STRIPE
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_STRIPE.fetch_add(1, Ordering::Relaxed) % STRIPES);
            }
            s.get()
        })
        .unwrap_or(0);
    COUNTS[stripe].0.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` unchanged; counting touches only atomics and
// a destructor-free thread-local, and never allocates.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations counted so far, over every thread.
fn total() -> u64 {
    COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
}

/// Counts this process's allocations from [`Window::open`] to [`Window::close`].
pub struct Window {
    before: u64,
}

impl Window {
    /// Starts counting.
    pub fn open() -> Window {
        let before = total();
        ON.store(true, Ordering::SeqCst);
        Window { before }
    }

    /// Stops counting; returns the allocations made by any thread in between.
    pub fn close(self) -> u64 {
        ON.store(false, Ordering::SeqCst);
        total() - self.before
    }
}

impl Drop for Window {
    /// A window left open by an early return stops counting too.
    fn drop(&mut self) {
        ON.store(false, Ordering::SeqCst);
    }
}
