//! The per-worker run queue of *fresh* coroutines: a bounded single-producer,
//! multi-consumer ring. The owning worker pushes and pops at either end of its own
//! view; any thread may steal half of it.
//!
//! The algorithm follows tokio's `queue.rs` (itself a variant of the Chase–Lev deque with a
//! fixed buffer): `head` packs two 32-bit indices `{ steal, real }`. `real` is the next slot
//! to pop; `steal` trails it while a stealer is copying tasks out. While `steal != real`,
//! the slots in `[steal, real)` belong to that stealer and the owner must not overwrite
//! them, which is why `push` measures capacity from `steal`.
//!
//! Only coroutines that have never run live here: started coroutines stay in their home
//! worker's private queue, so stealing never moves a stack that holds thread-bound data
//! (see docs/ARCHITECTURE.md, "Why started coroutines do not migrate").
//!
//! # Invariants
//! - `tail - steal <= LOCAL_CAP`; the slots `[real, tail)` hold initialised tasks.
//! - Only the owner (`Local`) writes `tail` and the slots at `tail`.
//! - At most one stealer is active: `steal != real` ⇒ a stealer owns `[steal, real)`.

use std::mem::MaybeUninit;
use std::sync::Arc;

#[cfg(not(loom))]
use crate::loom::CellExt as _;
use crate::loom::UnsafeCell;
use crate::loom::atomic::{AtomicU32, AtomicU64, Ordering::*};

/// Slots per worker ring (a power of two). tokio found 256 a good balance between
/// steal granularity and memory; loom models shrink it to keep the state space small.
#[cfg(not(loom))]
pub(crate) const LOCAL_CAP: usize = 256;
#[cfg(loom)]
pub(crate) const LOCAL_CAP: usize = 4;
const MASK: u32 = LOCAL_CAP as u32 - 1;

struct Inner<T> {
    /// `{ steal: u32, real: u32 }` packed as `steal << 32 | real`.
    head: AtomicU64,
    /// Next slot the owner writes. Only the owner stores to it.
    tail: AtomicU32,
    buf: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: slots are handed between threads only through the head/tail protocol above,
// which gives each slot exactly one accessor at a time; `T: Send` moves across threads.
unsafe impl<T: Send> Send for Inner<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Inner<T> {}

/// The owner's end. Not `Clone`: holding it is the right to push.
pub(crate) struct Local<T> {
    inner: Arc<Inner<T>>,
}

/// A thief's end; cloneable and usable from any thread.
pub(crate) struct Stealer<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for Stealer<T> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

fn pack(steal: u32, real: u32) -> u64 {
    (u64::from(steal) << 32) | u64::from(real)
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

pub(crate) fn new<T>() -> (Local<T>, Stealer<T>) {
    let buf = (0..LOCAL_CAP).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
    let inner = Arc::new(Inner { head: AtomicU64::new(0), tail: AtomicU32::new(0), buf });
    (Local { inner: Arc::clone(&inner) }, Stealer { inner })
}

impl<T> Inner<T> {
    /// # Safety
    /// The caller owns slot `idx` (see the module invariants) and it is initialised.
    unsafe fn take(&self, idx: u32) -> T {
        // SAFETY: forwarded from the caller.
        self.buf[(idx & MASK) as usize].with(|p| unsafe { (*p).assume_init_read() })
    }

    /// # Safety
    /// The caller owns slot `idx` and it holds no live value.
    unsafe fn put(&self, idx: u32, v: T) {
        // SAFETY: forwarded from the caller.
        self.buf[(idx & MASK) as usize].with_mut(|p| unsafe { (*p).write(v) });
    }

    fn len(&self) -> u32 {
        let (_, real) = unpack(self.head.load(Acquire));
        self.tail.load(Acquire).wrapping_sub(real)
    }
}

impl<T> Local<T> {
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        self.inner.len() as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    /// Pushes at the tail. When full, moves half of the ring plus `task` to `overflow`
    /// (the inject queue) in one batch, so a burst of spawns spreads to idle workers.
    pub(crate) fn push_back(&mut self, mut task: T, overflow: &mut dyn FnMut(Vec<T>)) {
        loop {
            let (steal, real) = unpack(self.inner.head.load(Acquire));
            // Only the owner stores tail; Relaxed reads our own last store.
            let tail = self.inner.tail.load(Relaxed);
            if tail.wrapping_sub(steal) < LOCAL_CAP as u32 {
                // SAFETY: the slot at `tail` is outside [steal, tail): nobody else reads it.
                unsafe { self.inner.put(tail, task) };
                // Release: pairs with the Acquire loads of `tail` in `pop`-by-stealers, so the
                // slot write is visible before the slot is.
                self.inner.tail.store(tail.wrapping_add(1), Release);
                return;
            }
            if steal != real {
                // A stealer is mid-copy; it will free space. Overflow this one task only.
                overflow(vec![task]);
                return;
            }
            match self.push_overflow(task, real, tail, overflow) {
                Ok(()) => return,
                Err(t) => task = t, // a stealer got in first: there is room now, retry
            }
        }
    }

    fn push_overflow(
        &mut self,
        task: T,
        real: u32,
        tail: u32,
        overflow: &mut dyn FnMut(Vec<T>),
    ) -> Result<(), T> {
        let n = (LOCAL_CAP / 2) as u32;
        debug_assert_eq!(tail.wrapping_sub(real), LOCAL_CAP as u32, "push_overflow: ring not full");
        let prev = pack(real, real);
        let next = pack(real.wrapping_add(n), real.wrapping_add(n));
        if self.inner.head.compare_exchange(prev, next, Release, Relaxed).is_err() {
            return Err(task);
        }
        let mut batch = Vec::with_capacity(n as usize + 1);
        for i in 0..n {
            // SAFETY: the CAS above took [real, real+n) out of every other party's view.
            batch.push(unsafe { self.inner.take(real.wrapping_add(i)) });
        }
        batch.push(task);
        overflow(batch);
        Ok(())
    }

    /// Pops the oldest task (FIFO, so spawn order is kept).
    pub(crate) fn pop(&mut self) -> Option<T> {
        let mut head = self.inner.head.load(Acquire);
        let idx = loop {
            let (steal, real) = unpack(head);
            let tail = self.inner.tail.load(Relaxed);
            if real == tail {
                return None;
            }
            let next_real = real.wrapping_add(1);
            // With no stealer active, move both indices; otherwise only ours.
            let next = if steal == real { pack(next_real, next_real) } else { pack(steal, next_real) };
            match self.inner.head.compare_exchange(head, next, AcqRel, Acquire) {
                Ok(_) => break real,
                Err(actual) => head = actual,
            }
        };
        // SAFETY: the CAS claimed slot `idx` for us; it was written before `tail` moved past it.
        Some(unsafe { self.inner.take(idx) })
    }
}

impl<T> Drop for Local<T> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

impl<T> Stealer<T> {
    pub(crate) fn is_empty(&self) -> bool {
        self.inner.len() == 0
    }

    /// Steals half of this ring into `dst` and returns one of the stolen tasks to run now.
    pub(crate) fn steal_into(&self, dst: &mut Local<T>) -> Option<T> {
        let dst_tail = dst.inner.tail.load(Relaxed);
        let (dst_steal, _) = unpack(dst.inner.head.load(Acquire));
        if dst_tail.wrapping_sub(dst_steal) > (LOCAL_CAP / 2) as u32 {
            return None; // we are half full ourselves; stealing would not help
        }
        let n = self.steal_into2(dst, dst_tail);
        if n == 0 {
            return None;
        }
        let last = dst_tail.wrapping_add(n - 1);
        // SAFETY: slot `last` of dst was just written by us and is not yet published.
        let ret = unsafe { dst.inner.take(last) };
        if n > 1 {
            // Release: publishes the other stolen slots to dst's stealers.
            dst.inner.tail.store(last, Release);
        }
        Some(ret)
    }

    fn steal_into2(&self, dst: &mut Local<T>, dst_tail: u32) -> u32 {
        let src = &*self.inner;
        let mut prev = src.head.load(Acquire);
        let (first, n, mut next) = loop {
            let (steal, real) = unpack(prev);
            if steal != real {
                return 0; // another stealer is active
            }
            // Acquire: pairs with the Release store of `tail` in `push_back`.
            let tail = src.tail.load(Acquire);
            let avail = tail.wrapping_sub(real);
            let n = avail - avail / 2;
            if n == 0 {
                return 0;
            }
            let next = pack(steal, real.wrapping_add(n));
            match src.head.compare_exchange(prev, next, AcqRel, Acquire) {
                Ok(_) => break (real, n, next),
                Err(actual) => prev = actual,
            }
        };
        for i in 0..n {
            // SAFETY: [first, first+n) is ours until `steal` catches up below; the dst slots
            // at and after dst_tail are unpublished and only its owner (the caller) writes them.
            unsafe {
                let t = src.take(first.wrapping_add(i));
                dst.inner.put(dst_tail.wrapping_add(i), t);
            }
        }
        // Hand the slots back: steal := real. The owner may have popped meanwhile.
        loop {
            let (_, real) = unpack(next);
            match src.head.compare_exchange(next, pack(real, real), AcqRel, Acquire) {
                Ok(_) => return n,
                Err(actual) => {
                    let (steal, _) = unpack(actual);
                    assert_eq!(
                        steal, first,
                        "Stealer::steal_into2: steal index moved under an active stealer"
                    );
                    next = actual;
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_overflow_halves() {
        let (mut local, _stealer) = new::<usize>();
        let mut spilled = Vec::new();
        for i in 0..LOCAL_CAP + 1 {
            local.push_back(i, &mut |b| spilled.extend(b));
        }
        assert_eq!(spilled, (0..LOCAL_CAP / 2).chain([LOCAL_CAP]).collect::<Vec<_>>());
        let rest: Vec<_> = std::iter::from_fn(|| local.pop()).collect();
        assert_eq!(rest, (LOCAL_CAP / 2..LOCAL_CAP).collect::<Vec<_>>());
    }

    #[test]
    fn steal_takes_half_rounded_up() {
        let (mut a, sa) = new::<usize>();
        let (mut b, _sb) = new::<usize>();
        for i in 0..5 {
            a.push_back(i, &mut |_| unreachable!());
        }
        let got = sa.steal_into(&mut b).unwrap();
        assert_eq!(a.len() + b.len() + 1, 5);
        assert_eq!(b.len() + 1, 3);
        let mut all: Vec<_> = std::iter::from_fn(|| a.pop()).chain(std::iter::from_fn(|| b.pop())).collect();
        all.push(got);
        all.sort();
        assert_eq!(all, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn concurrent_steal_loses_nothing() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        const N: usize = if cfg!(miri) { 2_000 } else { 100_000 };
        let (mut local, stealer) = new::<usize>();
        let done = Arc::new(AtomicBool::new(false));
        let sum = Arc::new(AtomicUsize::new(0));
        let thieves: Vec<_> = (0..2)
            .map(|_| {
                let (stealer, done, sum) = (stealer.clone(), done.clone(), sum.clone());
                std::thread::spawn(move || {
                    let (mut mine, _) = new::<usize>();
                    let mut n = 0;
                    while !done.load(Ordering::Acquire) || !stealer.is_empty() {
                        if let Some(v) = stealer.steal_into(&mut mine) {
                            sum.fetch_add(v, Ordering::Relaxed);
                            n += 1;
                        }
                        while let Some(v) = mine.pop() {
                            sum.fetch_add(v, Ordering::Relaxed);
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        let mut spilled = Vec::new();
        let mut popped = 0;
        for i in 1..=N {
            local.push_back(i, &mut |b| spilled.extend(b));
            if i % 3 == 0
                && let Some(v) = local.pop()
            {
                sum.fetch_add(v, Ordering::Relaxed);
                popped += 1;
            }
        }
        while let Some(v) = local.pop() {
            sum.fetch_add(v, Ordering::Relaxed);
            popped += 1;
        }
        done.store(true, Ordering::Release);
        let stolen: usize = thieves.into_iter().map(|t| t.join().unwrap()).sum();
        let spilled_sum: usize = spilled.iter().sum();
        assert_eq!(popped + stolen + spilled.len(), N);
        assert_eq!(sum.load(Ordering::Relaxed) + spilled_sum, N * (N + 1) / 2);
    }
}
