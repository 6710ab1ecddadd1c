//! Parked channel operations: one [`Waiter`] per blocking operation (or per `select`),
//! and the [`Entry`] it leaves in each channel's queue.
//!
//! A waiter is claimed exactly once. The claimer is either a counterpart on one of the
//! channels (a sender that found a parked receiver, a receiver that found a parked sender,
//! or a closer), or the waiting operation itself when a `select` finds a clause ready
//! while it is still registering, or when it gives up (timeout, cancel).
//!
//! # Protocol
//! ```text
//!             try_claim(i)               mark_done(i)
//!   WAITING ───────────────▶ CLAIMED(i) ──────────────▶ DONE(i)
//!      │                      (holder of the clause's channel lock moves the value)
//!      └── try_abort ──▶ ABORTED          (only the waiting operation does this)
//! ```
//! 1. A counterpart holds the channel lock, pops an entry and `try_claim`s its waiter for
//!    the entry's clause. Losing the CAS means the waiter is taken or gone: drop the entry,
//!    never touch its slot.
//! 2. Still under the lock, it moves the value through the entry's slot (or leaves it,
//!    for a close) and `mark_done`s; after unlocking it `notify`s the owner.
//! 3. The waiting operation parks until `done()` says which clause won. To give up it must
//!    win `try_abort`; if that fails, a claimer is mid-step 2 and will finish: it keeps
//!    waiting for `DONE` (a few instructions away, never a spin: it parks).
//!
//! # Invariants
//! - A slot is written only by the claimer of its entry, between `CLAIMED` and `DONE`,
//!   under the entry's channel lock; the owner reads it only after `DONE` or `ABORTED`.
//! - The owner removes its entries from every queue before its slots go away; an entry
//!   left behind in a queue is only ever inspected through `waiter.state`.
//! - `DONE` and `ABORTED` are terminal.
//! - An entry holds no count of its waiter: the owner keeps the waiter alive while any of
//!   its entries is in a queue, and until `DONE` once one was claimed. So a claimer takes
//!   what it needs to wake the owner (a [`Wakeup`]) *before* `mark_done`, and never
//!   touches the waiter after it. (A count per entry cost two locked instructions a wait.)

use std::ptr::NonNull;
use std::sync::Arc;

use crate::coro::task::Task;
use crate::loom::atomic::{AtomicUsize, Ordering::*};
use crate::park::{self, Signal, Unparker};

/// Nobody has claimed the waiter yet.
const WAITING: usize = 0;
/// The waiting operation gave up (timeout or cancel) before anyone claimed it.
const ABORTED: usize = 1;
// CLAIMED(i) = FIRST_CLAIMED + 2i and DONE(i) = CLAIMED(i) + 1, for clause index i.
const FIRST_CLAIMED: usize = 2;

/// How a wait ended, as seen by the waiting operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Waiting,
    Aborted,
    /// Claimed for this clause; the value is still being moved.
    Claimed(usize),
    /// Claimed for this clause and finished.
    Done(usize),
}

/// One parked operation, shared by its entries in one or more channel queues.
#[doc(hidden)]
pub struct Waiter {
    state: AtomicUsize,
    wake: Wake,
}

/// How the claimer wakes the owner.
enum Wake {
    /// A coroutine or thread: its unparker, fixed before the waiter is published. The
    /// claimer unparks after `mark_done`; if the owner saw `DONE` first, the wake is a
    /// spare token its next park absorbs (parks may return spuriously).
    Unparker(Unparker),
    /// A future: the waker may change between polls, so it is registered through a
    /// [`Signal`] (exactly once, never lost).
    Signal(Signal),
}

impl Waiter {
    /// A waiter for the calling coroutine or thread, reusing this thread's spare one
    /// when nobody else holds it (saves an allocation per blocking operation).
    pub(crate) fn for_current() -> Arc<Self> {
        if let Some(mut w) = take_spare() {
            // The common case, without a locked instruction: a spare is put back holding the
            // only count (`recycle`) and a waiter is never downgraded, so nobody can have
            // cloned it since (checked, not assumed); and it usually wakes this very
            // coroutine already (told by pointer: no count taken and dropped).
            if Arc::strong_count(&w) == 1 && Arc::weak_count(&w) == 0 {
                // Acquire: what its earlier holders did (a claimer's `mark_done`) happens
                // before the reset below; their count drops were Release. (`Arc::get_mut`
                // would order the same with a compare-exchange.) `std`'s fence, as the
                // counts are `std`'s `Arc`'s.
                std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
                if matches!(&w.wake, Wake::Unparker(u) if u.is_current_coro()) {
                    w.state.store(WAITING, Relaxed);
                    return w;
                }
            }
            if let Some(inner) = Arc::get_mut(&mut w) {
                // Unique: no queue entry and no claimer holds it, so it can be reset.
                inner.state.store(WAITING, Relaxed);
                let me = park::current();
                if !matches!(&inner.wake, Wake::Unparker(u) if u.same(&me)) {
                    inner.wake = Wake::Unparker(me);
                }
                return w;
            }
        }
        Arc::new(Self { state: AtomicUsize::new(WAITING), wake: Wake::Unparker(park::current()) })
    }

    /// A waiter for a future; its waker is registered with [`register_waker`].
    pub(crate) fn for_future() -> Arc<Self> {
        Arc::new(Self { state: AtomicUsize::new(WAITING), wake: Wake::Signal(Signal::new()) })
    }

    /// Hands a finished waiter back for reuse by this thread's next operation. Only a
    /// waiter nobody else holds is kept.
    #[inline]
    pub(crate) fn recycle(w: Arc<Self>) {
        if Arc::strong_count(&w) == 1 && matches!(w.wake, Wake::Unparker(_)) {
            put_spare(w);
        }
    }

    /// Registers (or replaces) a future's waker. Returns `false` if the waiter was
    /// already notified. A coroutine or thread waiter needs no registration.
    pub(crate) fn register_waker(&self, waker: &std::task::Waker) -> bool {
        match &self.wake {
            Wake::Signal(s) => s.register(Unparker::from_waker(waker.clone())),
            Wake::Unparker(_) => true,
        }
    }

    pub(crate) fn state(&self) -> State {
        // Acquire: pairs with the Release in `mark_done`, so the slot writes are visible.
        decode(self.state.load(Acquire))
    }

    /// The winning clause once done.
    pub(crate) fn done(&self) -> Option<usize> {
        match self.state() {
            State::Done(i) => Some(i),
            _ => None,
        }
    }

    pub(crate) fn is_waiting(&self) -> bool {
        self.state.load(Relaxed) == WAITING
    }

    /// Step 1: claims the waiter for `clause`. Caller holds that clause's channel lock.
    #[must_use]
    #[inline]
    pub(crate) fn try_claim(&self, clause: usize) -> bool {
        // Acquire: the owner's slot initialisation (published by the channel lock too).
        self.state.compare_exchange(WAITING, FIRST_CLAIMED + 2 * clause, Acquire, Relaxed).is_ok()
    }

    /// Step 2: the value has moved. Caller claimed `clause` and holds its channel lock.
    #[inline]
    pub(crate) fn mark_done(&self, clause: usize) {
        // Release: publishes the slot write to the owner's Acquire in `state`.
        self.state.store(FIRST_CLAIMED + 2 * clause + 1, Release);
    }

    /// Step 2, before `mark_done`: what wakes the owner once the lock is released, holding
    /// its own count of whatever it wakes (the waiter may be gone by then).
    #[inline]
    fn wakeup(this: NonNull<Self>) -> Wakeup {
        // SAFETY: the caller claimed the waiter and has not marked it done, so its owner
        // keeps it alive (see the invariants).
        let w = unsafe { this.as_ref() };
        match &w.wake {
            Wake::Unparker(u) if let Some(task) = u.coro() => Wakeup::Coro(Arc::clone(task)),
            // SAFETY: as above, and `this` points into an `Arc`'s allocation (`Entry::new`);
            // the new count is owned by the returned `Arc`.
            _ => Wakeup::Waiter(unsafe {
                Arc::increment_strong_count(this.as_ptr());
                Arc::from_raw(this.as_ptr())
            }),
        }
    }

    /// Wakes the owner (a thread, a custom unparker or a future's waker).
    fn notify(&self) {
        match &self.wake {
            Wake::Unparker(u) => u.unpark(),
            Wake::Signal(s) => {
                s.notify();
            }
        }
    }

    /// Step 3: the owner gives up. `false` means someone claimed it first.
    #[must_use]
    pub(crate) fn try_abort(&self) -> bool {
        self.state.compare_exchange(WAITING, ABORTED, Acquire, Relaxed).is_ok()
    }
}

// The spare waiter of this thread. Reached only through these non-inlined accessors, and
// never held across a park (see `runtime/context.rs` on thread-locals and coroutines).
thread_local! {
    static SPARE: std::cell::Cell<Option<Arc<Waiter>>> = const { std::cell::Cell::new(None) };
}

#[inline(never)]
fn take_spare() -> Option<Arc<Waiter>> {
    SPARE.try_with(std::cell::Cell::take).ok().flatten()
}

#[inline(never)]
fn put_spare(w: Arc<Waiter>) {
    // During thread teardown the slot may be gone: then the waiter is simply dropped.
    let _ = SPARE.try_with(|s| s.set(Some(w)));
}

fn decode(s: usize) -> State {
    match s {
        WAITING => State::Waiting,
        ABORTED => State::Aborted,
        s if (s - FIRST_CLAIMED) % 2 == 0 => State::Claimed((s - FIRST_CLAIMED) / 2),
        s => State::Done((s - FIRST_CLAIMED) / 2),
    }
}

/// Wakes a claimed waiter's owner, after the claimer released the channel lock.
#[must_use]
pub(crate) enum Wakeup {
    /// A coroutine: this count goes on to its run queue.
    Coro(Arc<Task>),
    /// Anything else, through its waiter, kept alive until then.
    Waiter(Arc<Waiter>),
}

impl Wakeup {
    /// Caller has released the channel lock.
    #[inline]
    pub(crate) fn wake(self) {
        match self {
            Wakeup::Coro(task) => Task::unpark_owned(task),
            Wakeup::Waiter(w) => w.notify(),
        }
    }
}

/// A waiter's registration in one channel queue, for one clause.
pub(crate) struct Entry<T> {
    /// No count (see the invariants): the owner keeps the waiter alive.
    waiter: NonNull<Waiter>,
    pub(crate) clause: usize,
    /// A parked receiver's empty slot, or a parked sender's full one. Owned by the
    /// waiting operation; see the invariants for who may touch it and when.
    pub(crate) slot: *mut Option<T>,
    /// A parked sender's value size in bytes, measured before it locked the channel.
    pub(crate) bytes: usize,
}

// SAFETY: an entry only travels inside its channel's lock; its slot is accessed under the
// claim protocol above (one accessor at a time), and holds a `T: Send`.
unsafe impl<T: Send> Send for Entry<T> {}

impl<T> Entry<T> {
    /// `waiter`'s entry for `clause`. Its owner keeps `waiter` alive while the entry is in
    /// a queue (see the invariants).
    pub(crate) fn new(waiter: &Arc<Waiter>, clause: usize, slot: *mut Option<T>, bytes: usize) -> Self {
        Entry { waiter: NonNull::from(&**waiter), clause, slot, bytes }
    }

    /// The waiter, while the entry is in its queue or claimed and not done.
    fn waiter(&self) -> &Waiter {
        // SAFETY: callers hold the channel lock with the entry in its queue or just taken
        // from it, or claimed it and have not marked it done; the owner keeps the waiter
        // alive in both cases (it removes its entries under this lock, and waits for DONE).
        unsafe { self.waiter.as_ref() }
    }

    /// Step 1 (see the protocol); caller holds the channel lock.
    #[must_use]
    #[inline]
    pub(crate) fn try_claim(&self) -> bool {
        self.waiter().try_claim(self.clause)
    }

    /// Step 2: the value has moved; returns how to wake the owner after unlocking. Caller
    /// claimed the entry and holds the channel lock.
    #[inline]
    pub(crate) fn finish(self) -> Wakeup {
        let wakeup = Waiter::wakeup(self.waiter);
        self.waiter().mark_done(self.clause);
        wakeup
    }

    /// Step 2 for the caller's own entry (a parking operation serves itself): it looks at
    /// its waiter before it parks, so nothing needs waking.
    pub(crate) fn finish_own(self) {
        self.waiter().mark_done(self.clause);
    }

    /// The waiter's address, to tell its entries.
    pub(crate) fn owner(&self) -> *const Waiter {
        self.waiter.as_ptr()
    }

    /// True if this entry is `waiter`'s.
    pub(crate) fn is_of(&self, waiter: *const Waiter) -> bool {
        std::ptr::eq(self.waiter.as_ptr(), waiter)
    }

    /// Moves `value` into a claimed receiver's slot.
    ///
    /// # Safety
    /// The caller claimed `self.waiter` for `self.clause` and holds the channel lock.
    pub(crate) unsafe fn put(&self, value: T) {
        // SAFETY: by the caller's claim, we are the slot's only accessor until `mark_done`,
        // and its owner keeps it alive until then.
        unsafe { *self.slot = Some(value) }
    }

    /// Takes a claimed sender's value.
    ///
    /// # Safety
    /// As for [`put`](Self::put).
    pub(crate) unsafe fn take(&self) -> Option<T> {
        // SAFETY: as in `put`.
        unsafe { (*self.slot).take() }
    }
}

/// The parked operations of one direction of one channel, oldest first.
pub(crate) struct WaitQueue<T> {
    entries: std::collections::VecDeque<Entry<T>>,
}

impl<T> Default for WaitQueue<T> {
    fn default() -> Self {
        Self { entries: Default::default() }
    }
}

impl<T> WaitQueue<T> {
    pub(crate) fn push(&mut self, e: Entry<T>) {
        self.entries.push_back(e);
    }

    /// Pops and claims the oldest live entry, dropping stale ones. Entries of `own` (the
    /// caller's own select waiter, registered on both sides of this channel) are kept
    /// and skipped: an operation never matches itself.
    /// Caller holds the channel lock.
    #[inline]
    pub(crate) fn pop_claim(&mut self, own: Option<&Arc<Waiter>>) -> Option<Entry<T>> {
        let Some(own) = own else {
            while let Some(e) = self.entries.pop_front() {
                if e.try_claim() {
                    return Some(e);
                }
            }
            return None;
        };
        let mut i = 0;
        while i < self.entries.len() {
            if self.entries[i].is_of(Arc::as_ptr(own)) {
                i += 1;
                continue;
            }
            let e = self.entries.remove(i)?;
            if e.try_claim() {
                return Some(e);
            }
        }
        None
    }

    /// Entries, live or stale.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Entries still waiting (stale ones, already claimed or aborted, are not counted).
    pub(crate) fn live(&self) -> usize {
        self.entries.iter().filter(|e| e.waiter().is_waiting()).count()
    }

    /// True if some entry (other than `own`'s) is still waiting.
    pub(crate) fn has_live(&self, own: Option<&Arc<Waiter>>) -> bool {
        self.entries.iter().any(|e| e.waiter().is_waiting() && !own.is_some_and(|w| e.is_of(Arc::as_ptr(w))))
    }

    /// Removes every entry of `waiter`. Caller holds the channel lock.
    pub(crate) fn remove(&mut self, waiter: &Arc<Waiter>) {
        self.entries.retain(|e| !e.is_of(Arc::as_ptr(waiter)));
    }

    /// Takes every entry, for close.
    pub(crate) fn take_all(&mut self) -> std::collections::VecDeque<Entry<T>> {
        std::mem::take(&mut self.entries)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::cell::UnsafeCell;
    use std::sync::Arc;

    use super::{Entry, WaitQueue, Waiter, Wake, Wakeup};

    fn signalled(w: &Waiter) -> bool {
        match &w.wake {
            Wake::Signal(s) => s.is_notified(),
            Wake::Unparker(_) => unreachable!("a future's waiter"),
        }
    }

    /// A queued entry holds no count of its waiter, and a claimer's wake-up holds its own:
    /// the owner may drop the waiter the moment it is done and the wake still lands.
    #[test]
    fn an_entry_holds_no_count_and_a_wakeup_its_own() {
        let w = Waiter::for_future();
        let slot = UnsafeCell::new(None::<u32>);
        let mut queue = WaitQueue::default();
        queue.push(Entry::new(&w, 0, slot.get(), 0));
        assert_eq!(Arc::strong_count(&w), 1, "a queued entry took a count");

        let Some(e) = queue.pop_claim(None) else { panic!("the entry was not claimed") };
        // SAFETY: claimed above; the slot outlives the entry.
        unsafe { e.put(7) };
        let wakeup = e.finish();
        assert_eq!(w.done(), Some(0));
        assert!(matches!(wakeup, Wakeup::Waiter(_)));
        assert_eq!(Arc::strong_count(&w), 2, "the wake-up holds a count of a future's waiter");
        assert!(!signalled(&w), "woken before the wake-up ran");

        // The owner is done: it takes its value and keeps only what the wake-up needs.
        assert_eq!(slot.into_inner(), Some(7));
        let observer = Arc::clone(&w);
        drop(w);
        wakeup.wake();
        assert!(signalled(&observer));
        assert_eq!(Arc::strong_count(&observer), 1, "the wake-up kept its count after waking");
    }

    /// The parking caller's own entry, served while it parks, is finished without a
    /// wake-up (it looks at its waiter before it waits) and without a count.
    #[test]
    fn finishing_ones_own_entry_wakes_nobody() {
        let w = Waiter::for_future();
        let slot = UnsafeCell::new(None::<u32>);
        let e = Entry::new(&w, 3, slot.get(), 0);
        assert!(e.is_of(Arc::as_ptr(&w)));
        assert!(e.try_claim());
        e.finish_own();
        assert_eq!((w.done(), Arc::strong_count(&w), signalled(&w)), (Some(3), 1, false));
    }
}
