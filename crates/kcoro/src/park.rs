//! The parking primitive everything above the scheduler waits with.
//!
//! [`park`] suspends the caller until an [`Unparker`] for it is used: a coroutine parks
//! (its worker runs others), a plain thread parks its thread. An [`Unparker`] can also wrap
//! an `async` [`Waker`], so waiting code written once — register an unparker, re-check the
//! condition, park — serves coroutines, threads and futures alike. Wake-ups are tokens, as
//! with `std::thread::park`: an unpark before the park makes the park return at once, and
//! a park may return spuriously, so callers loop on their own condition.
//!
//! # External coroutines
//! A coroutine that kcoro does not schedule — one driven by hand, such as the C API's
//! `kcoro_resume` — can wait in every kcoro primitive too: whoever switches into it marks
//! the thread with [`enter_external`] for the length of the switch, and implements
//! [`ExternalCoroutine`] to say how it suspends (back to its resumer) and who wakes it (a
//! custom [`Unparker`] built from an [`Unpark`]). [`current`], [`park`] and
//! [`park_deadline`] consult that mark only on the thread path, after finding no kcoro
//! coroutine running, so parking a kcoro coroutine costs what it did before.
//!
//! [`Signal`] builds exactly-once notification on top: one `notify` wins, the waiter's
//! registered unparker is used exactly once, and a notify that precedes registration is
//! never lost. Join handles use it; channel waiters will too.
//!
//! # Protocol of `Signal`
//! 1. Waiter: `fetch_or(REGISTERING)`; if `NOTIFIED` was set, done.
//! 2. Waiter: store its unparker; `CAS(REGISTERING[|WAITING] → WAITING)`. If that fails,
//!    `NOTIFIED` arrived meanwhile: done (the notifier left the cell alone).
//! 3. Notifier: `fetch_or(NOTIFIED)`; the first one to set it wins. If the old state was
//!    `WAITING` without `REGISTERING`, it takes the unparker and unparks it.
//!
//! # Invariants
//! - The unparker cell is touched by the waiter only while it holds `REGISTERING`, and by
//!   the notifier only after it set `NOTIFIED` over a plain `WAITING`: never both.
//! - `NOTIFIED` is never cleared.

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::Thread;
use std::time::Instant;

use crate::coro::task::Task;
use crate::coro::wait::Wait;
#[cfg(not(loom))]
use crate::loom::CellExt as _;
use crate::loom::UnsafeCell;
use crate::loom::atomic::{AtomicU8, Ordering::*};
use crate::runtime::context;

/// Wakes one parked coroutine, thread or future. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Unparker(Kind);

#[derive(Clone)]
enum Kind {
    Coro(Arc<Task>),
    Thread(Thread),
    Waker(Waker),
    Custom(Arc<dyn Unpark>),
}

/// Something that can be woken: the target of a custom [`Unparker`]
/// ([`Unparker::from_unpark`]).
pub trait Unpark: Send + Sync + 'static {
    /// Wakes the target. Called from any thread, any number of times; must not block.
    /// Wakes are tokens: a wake that finds nothing parked is kept for the next park.
    fn unpark(&self);
}

/// A coroutine that kcoro does not schedule but that waits in kcoro's primitives: while
/// its resumer holds the guard of [`enter_external`], [`park`] and [`park_deadline`] call
/// [`ExternalCoroutine::park`] and [`current`] returns [`ExternalCoroutine::unparker`].
pub trait ExternalCoroutine: Send + Sync + 'static {
    /// Suspends the coroutine until its unparker is used, `deadline` passes, or
    /// spuriously (callers loop on their own condition). Called on the coroutine's own
    /// stack; typically switches back to the resumer, which resumes it again once woken.
    fn park(&self, deadline: Option<Instant>);

    /// The unparker that wakes this coroutine.
    fn unparker(&self) -> Unparker;
}

impl Unparker {
    /// An unparker that wakes the given async task.
    pub fn from_waker(waker: Waker) -> Self {
        Unparker(Kind::Waker(waker))
    }

    /// An unparker that calls `target.unpark()`.
    pub fn from_unpark(target: Arc<dyn Unpark>) -> Self {
        Unparker(Kind::Custom(target))
    }

    pub(crate) fn from_task(task: Arc<Task>) -> Self {
        Unparker(Kind::Coro(task))
    }

    /// Wakes the target. Wakes are tokens: unparking something that is not parked makes
    /// its next park return immediately.
    pub fn unpark(&self) {
        match &self.0 {
            Kind::Coro(task) => Task::unpark(task),
            Kind::Thread(t) => t.unpark(),
            Kind::Waker(w) => w.wake_by_ref(),
            Kind::Custom(c) => c.unpark(),
        }
    }

    /// The coroutine this wakes, if it wakes one of kcoro's.
    #[inline]
    pub(crate) fn coro(&self) -> Option<&Arc<Task>> {
        match &self.0 {
            Kind::Coro(task) => Some(task),
            _ => None,
        }
    }

    /// True if this wakes the coroutine running on this thread: what [`current`] would
    /// return, told without taking (and dropping) a reference count of it.
    #[inline]
    pub(crate) fn is_current_coro(&self) -> bool {
        match (&self.0, context::current_task_ptr()) {
            (Kind::Coro(task), Some(running)) => std::ptr::eq(Arc::as_ptr(task), running.as_ptr()),
            _ => false,
        }
    }

    /// True if both wake the same coroutine, thread or task.
    pub fn same(&self, other: &Unparker) -> bool {
        match (&self.0, &other.0) {
            (Kind::Coro(a), Kind::Coro(b)) => Arc::ptr_eq(a, b),
            (Kind::Thread(a), Kind::Thread(b)) => a.id() == b.id(),
            (Kind::Waker(a), Kind::Waker(b)) => a.will_wake(b),
            (Kind::Custom(a), Kind::Custom(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            _ => false,
        }
    }
}

impl fmt::Debug for Unparker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::Coro(t) => write!(f, "Unparker(coroutine {})", t.id()),
            Kind::Thread(t) => write!(f, "Unparker(thread {:?})", t.id()),
            Kind::Waker(_) => f.write_str("Unparker(waker)"),
            Kind::Custom(_) => f.write_str("Unparker(custom)"),
        }
    }
}

// The external coroutine running on this thread (see `enter_external`). Reached only
// through the non-inlined accessors below, which return clones: an external coroutine may
// resume on another thread, so no reference into this slot may outlive a suspension.
thread_local! {
    static EXTERNAL: RefCell<Option<Arc<dyn ExternalCoroutine>>> = const { RefCell::new(None) };
}

#[inline(never)]
fn current_external() -> Option<Arc<dyn ExternalCoroutine>> {
    EXTERNAL.try_with(|e| e.borrow().clone()).ok().flatten()
}

#[inline(never)]
fn replace_external(co: Option<Arc<dyn ExternalCoroutine>>) -> Option<Arc<dyn ExternalCoroutine>> {
    EXTERNAL.try_with(|e| e.replace(co)).ok().flatten()
}

/// Marks the calling thread as running `co` until the guard drops: [`current`], [`park`]
/// and [`park_deadline`] then serve `co`, and no kcoro coroutine counts as running (a
/// coroutine resumed by hand from inside a kcoro coroutine waits as itself, never as its
/// resumer). Guards nest; each restores what it replaced.
///
/// Take the guard on the resumer's stack just before switching into `co`, and drop it
/// once the switch returns.
pub fn enter_external(co: Arc<dyn ExternalCoroutine>) -> ExternalGuard {
    let task = context::set_task(std::ptr::null());
    let external = replace_external(Some(co));
    ExternalGuard { task, external, _not_send: PhantomData }
}

/// Restores the thread's previous context on drop; see [`enter_external`].
#[must_use = "the external coroutine stays current only while the guard lives"]
pub struct ExternalGuard {
    task: *const Task,
    external: Option<Arc<dyn ExternalCoroutine>>,
    /// Thread-bound: it restores this thread's slots.
    _not_send: PhantomData<*const ()>,
}

impl Drop for ExternalGuard {
    fn drop(&mut self) {
        replace_external(self.external.take());
        context::set_task(self.task);
    }
}

impl fmt::Debug for ExternalGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ExternalGuard")
    }
}

/// The unparker for the caller: its coroutine if it runs in one (a kcoro coroutine, or an
/// external one, see [`enter_external`]), else its thread.
pub fn current() -> Unparker {
    match context::current_task() {
        Some(task) => Unparker(Kind::Coro(task)),
        None => match current_external() {
            Some(co) => co.unparker(),
            None => Unparker(Kind::Thread(std::thread::current())),
        },
    }
}

/// Parks the caller until unparked (or spuriously). See the module docs.
pub fn park() {
    park_as(Wait::PARK);
}

/// Parks the caller until unparked, `deadline` passes, or spuriously. Uses the runtime's
/// timer wheel in a coroutine (no thread, no polling), `park_timeout` on a thread.
/// Returns `true` if the deadline has passed.
pub fn park_deadline(deadline: Instant) -> bool {
    park_deadline_as(deadline, Wait::PARK)
}

/// [`park`], saying what the caller waits on (for monitors: `crate::inspect`).
#[inline]
pub(crate) fn park_as(why: Wait) {
    match context::current_task_ptr() {
        // SAFETY: the pointer is the task running on this thread, alive while it runs.
        Some(task) => unsafe { task.as_ref() }.park(None, why),
        None => match current_external() {
            Some(co) => co.park(None),
            None => {
                let _listed = crate::inspect::ThreadWait::enter(why, false);
                std::thread::park();
            }
        },
    }
}

/// [`park_deadline`], saying what the caller waits on.
#[inline]
pub(crate) fn park_deadline_as(deadline: Instant, why: Wait) -> bool {
    match context::current_task_ptr() {
        // SAFETY: the pointer is the task running on this thread, alive while it runs.
        Some(task) => unsafe { task.as_ref() }.park(Some(deadline), why),
        None => match current_external() {
            Some(co) => co.park(Some(deadline)),
            None => {
                let now = Instant::now();
                if now < deadline {
                    let _listed = crate::inspect::ThreadWait::enter(why, true);
                    std::thread::park_timeout(deadline - now);
                }
            }
        },
    }
    crate::runtime::now() >= deadline
}

/// Signal bit: notified (terminal).
const NOTIFIED: u8 = 0b001;
/// Signal bit: the waiter is writing its unparker.
const REGISTERING: u8 = 0b010;
/// Signal bit: an unparker is stored and may be taken by the notifier.
const WAITING: u8 = 0b100;

/// Exactly-once notification for one waiter, usable from a coroutine, a thread or a future.
pub struct Signal {
    state: AtomicU8,
    waiter: UnsafeCell<Option<Unparker>>,
}

// SAFETY: the cell is accessed under the REGISTERING/WAITING/NOTIFIED protocol above, which
// gives it one accessor at a time; Unparker is Send + Sync.
unsafe impl Send for Signal {}
// SAFETY: as above.
unsafe impl Sync for Signal {}

impl Default for Signal {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signal").field("notified", &self.is_notified()).finish()
    }
}

impl Signal {
    /// A signal not yet notified.
    pub fn new() -> Self {
        Self { state: AtomicU8::new(0), waiter: UnsafeCell::new(None) }
    }

    /// True once notified. Acquire: what the notifier wrote before `notify` is visible.
    pub fn is_notified(&self) -> bool {
        self.state.load(Acquire) & NOTIFIED != 0
    }

    /// Notifies; returns `true` for the one call that did it. Wakes a registered waiter.
    pub fn notify(&self) -> bool {
        // AcqRel: Release publishes the notifier's writes to the waiter (paired with the
        // Acquire in `is_notified`/`register`); Acquire sees the waiter's unparker store.
        let prev = self.state.fetch_or(NOTIFIED, AcqRel);
        if prev & NOTIFIED != 0 {
            return false;
        }
        if prev & (WAITING | REGISTERING) == WAITING {
            // SAFETY: we set NOTIFIED over a plain WAITING: the waiter will not touch the cell
            // again (its next step 1 sees NOTIFIED), so the cell is ours.
            let waiter = self.waiter.with_mut(|p| unsafe { (*p).take() });
            if let Some(u) = waiter {
                u.unpark();
            }
        }
        true
    }

    /// Registers (or replaces) the waiter's unparker. Returns `false` if already notified,
    /// in which case nothing will be unparked and the caller must not wait.
    pub fn register(&self, unparker: Unparker) -> bool {
        let prev = self.state.fetch_or(REGISTERING, Acquire);
        if prev & NOTIFIED != 0 {
            return false;
        }
        assert!(prev & REGISTERING == 0, "Signal::register: two waiters registered concurrently");
        // SAFETY: we hold REGISTERING; the notifier leaves the cell alone while it is set.
        self.waiter.with_mut(|p| unsafe { *p = Some(unparker) });
        // Release: publishes the unparker to the notifier's AcqRel fetch_or.
        self.state.compare_exchange(prev | REGISTERING, WAITING, AcqRel, Acquire).is_ok()
    }

    /// Waits (parking the coroutine or thread) until notified.
    pub fn wait(&self) {
        self.wait_as(Wait::sync(crate::coro::wait::SYNC_SIGNAL));
    }

    /// [`wait`](Self::wait), saying what the wait is for (a join names the coroutine).
    pub(crate) fn wait_as(&self, why: Wait) {
        if self.is_notified() || !self.register(current()) {
            return;
        }
        while !self.is_notified() {
            park_as(why);
        }
    }

    /// Waits until notified or `deadline`; returns `true` if notified.
    pub fn wait_deadline(&self, deadline: Instant) -> bool {
        self.wait_deadline_as(deadline, Wait::sync(crate::coro::wait::SYNC_SIGNAL))
    }

    /// [`wait_deadline`](Self::wait_deadline), saying what the wait is for.
    pub(crate) fn wait_deadline_as(&self, deadline: Instant, why: Wait) -> bool {
        if self.is_notified() || !self.register(current()) {
            return true;
        }
        while !self.is_notified() {
            if park_deadline_as(deadline, why) {
                return self.is_notified();
            }
        }
        true
    }

    /// Async form: ready once notified.
    pub fn poll_wait(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_notified() || !self.register(Unparker::from_waker(cx.waker().clone())) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    struct CountWake(AtomicUsize);
    impl Wake for CountWake {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn an_unparker_tells_whether_it_wakes_the_running_coroutine() {
        assert!(!current().is_current_coro(), "a thread's unparker is no coroutine's");
        let (mine, other_sees_mine) = crate::run(|| {
            let mine = current();
            assert!(mine.is_current_coro(), "the running coroutine's own unparker");
            let theirs = crate::spawn(current).join().expect("the other coroutine ran");
            let other_sees_mine = {
                let mine = mine.clone();
                crate::spawn(move || mine.is_current_coro()).join().expect("ran")
            };
            assert!(!theirs.is_current_coro(), "another coroutine's unparker");
            (mine, other_sees_mine)
        });
        assert!(!other_sees_mine, "not the coroutine running it");
        assert!(!mine.is_current_coro(), "outside every coroutine");
    }

    #[test]
    fn notify_before_wait_is_not_lost() {
        let s = Signal::new();
        assert!(s.notify());
        assert!(!s.notify(), "only the first notify wins");
        s.wait(); // returns at once
        assert!(s.is_notified());
    }

    #[test]
    fn thread_waiter_is_woken_once() {
        for _ in 0..200 {
            let s = Arc::new(Signal::new());
            let s2 = Arc::clone(&s);
            let t = std::thread::spawn(move || s2.wait());
            let wins = (0..3)
                .map(|_| {
                    let s = Arc::clone(&s);
                    std::thread::spawn(move || s.notify())
                })
                .map(|h| h.join().unwrap())
                .filter(|&w| w)
                .count();
            t.join().unwrap();
            assert_eq!(wins, 1);
        }
    }

    #[test]
    fn waker_is_used_exactly_once_and_reregistration_replaces() {
        let s = Signal::new();
        let c1 = Arc::new(CountWake(AtomicUsize::new(0)));
        let c2 = Arc::new(CountWake(AtomicUsize::new(0)));
        let w1 = Waker::from(Arc::clone(&c1));
        let w2 = Waker::from(Arc::clone(&c2));
        assert!(s.poll_wait(&mut Context::from_waker(&w1)).is_pending());
        assert!(s.poll_wait(&mut Context::from_waker(&w2)).is_pending());
        s.notify();
        s.notify();
        assert_eq!(c1.0.load(SeqCst), 0, "replaced waker is not woken");
        assert_eq!(c2.0.load(SeqCst), 1);
        assert!(s.poll_wait(&mut Context::from_waker(&w2)).is_ready());
    }

    #[test]
    fn thread_park_deadline_times_out() {
        let s = Signal::new();
        let deadline = Instant::now() + std::time::Duration::from_millis(5);
        assert!(!s.wait_deadline(deadline));
        assert!(Instant::now() >= deadline, "never early");
    }
}
