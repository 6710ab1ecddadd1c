//! A coroutine as the scheduler sees it: its corosensei coroutine on a pooled stack, its
//! park state, its home worker, and its runtime.
//!
//! # Ownership
//! `Arc<Task>` is the unit that moves through run queues, unparkers and the runtime's
//! registry of live tasks. The coroutine itself (`coro`) is only touched by the thread that
//! is running the task — its home worker once started — or, after the workers have stopped,
//! by shutdown, which unwinds it.
//!
//! # Invariants
//! - `home == NO_HOME` ⇔ the coroutine has never been resumed.
//! - `coro` is `Some` until the coroutine returns or is unwound.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::*};
use std::time::Instant;

use corosensei::{Coroutine, CoroutineResult, Yielder};

use crate::coro::prefetch::ResumeHint;
use crate::coro::stack::PooledStack;
use crate::coro::state::{ParkOutcome, ParkState, UnparkOutcome};
use crate::coro::wait::{Seen, Wait, WaitCell};
use crate::error::JoinError;
use crate::park::Unparker;
use crate::runtime::Shared;
use crate::runtime::context;
use crate::runtime::join::Completer;
use crate::sync::CancelToken;

/// `home` before the first resume.
pub(crate) const NO_HOME: usize = usize::MAX;

/// Why a coroutine switched back to its worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suspend {
    /// Runnable again at once; goes to the back of the queue.
    Yield,
    /// Parked until an unpark (see `coro::state`).
    Park,
}

type Coro = Coroutine<(), Suspend, (), PooledStack>;

/// What a resume ended with.
pub(crate) enum RunResult {
    Yielded,
    Parked,
    /// Parked, but an unpark raced in: run it again.
    Renotified,
    Completed,
}

/// Where a task comes from: its spawn site, and whether it is a daemon.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Origin {
    pub(crate) site: &'static std::panic::Location<'static>,
    pub(crate) daemon: bool,
}

impl Origin {
    /// The caller's location, not a daemon.
    #[cfg(all(test, not(loom)))]
    #[track_caller]
    pub(crate) fn here() -> Origin {
        Origin { site: std::panic::Location::caller(), daemon: false }
    }
}

/// `repr(C)`, in this order: what a wake reads and writes (the park state, the resume
/// hint, the home worker, the runtime) follows the `Arc` counts the waker bumps, within the
/// allocation's first 48 bytes: one or two cache lines for a coroutine that went cold,
/// where the state and the runtime pointer had sat on a line of their own (see
/// `coro::prefetch` for what that costs a server with 1,000 connections).
#[repr(C)]
pub(crate) struct Task {
    pub(crate) state: ParkState,
    /// Set when shutdown starts unwinding this coroutine, so its catch-all lets the unwind
    /// through instead of reporting a panic.
    cancelling: AtomicBool,
    /// Whether the last switch-out parked (read by the next runner to count wakes).
    /// Written before `PARKED` is published and read after the unpark that took it back,
    /// so the ParkState CAS chain orders the two accesses.
    was_parked: Cell<bool>,
    /// True while code of this coroutine runs on its worker's stack
    /// ([`Task::on_parent_stack`]), where suspending would switch away from the wrong
    /// stack, or in place inside [`Task::with_stack`], which promises the same.
    on_parent: Cell<bool>,
    /// Whether parks describe themselves in `wait` (`Builder::coroutine_detail`); a copy
    /// of the runtime's setting, on the task's own cache line.
    detail: bool,
    /// Left out of deadlock detection (`SpawnOptions::daemon`).
    daemon: bool,
    /// The coroutine accepted a connection since its last spawn: its next spawn with the
    /// default placement starts on the workers in turn (see `Shared::spawn`). Read and
    /// written only by the coroutine itself, while it runs.
    accepted: Cell<bool>,
    /// Where its stack was at its last suspension, for the worker that wakes it.
    resume_hint: ResumeHint,
    /// Worker index the coroutine is bound to once started (`NO_HOME` before).
    home: AtomicUsize,
    /// Dropped after `coro` all the same (see `Drop`), so the stack returns to a live pool.
    pub(crate) shared: Arc<Shared>,
    id: u64,
    /// Written once by the coroutine on entry; read by the coroutine itself to suspend.
    yielder: Cell<*const Yielder<(), Suspend>>,
    /// Key in the runtime's registry of live tasks.
    pub(crate) owned_key: Cell<usize>,
    name: Option<Box<str>>,
    coro: std::cell::UnsafeCell<Option<Coro>>,
    /// For the overflow handler.
    guard: (usize, usize),
    stack_kib: usize,
    /// What it waits on while parked (written only if `detail`; see `coro::wait`).
    wait: WaitCell,
    /// Where it was spawned.
    site: &'static std::panic::Location<'static>,
    /// The coroutine's ambient cancel token (`sync::current_token`): set at spawn, swapped
    /// by scopes running on this coroutine. Only the running coroutine touches it.
    token: std::cell::RefCell<Option<CancelToken>>,
}

impl Drop for Task {
    fn drop(&mut self) {
        // The coroutine (and its stack) before the fields declared ahead of it: `shared`.
        drop(self.coro.get_mut().take());
    }
}

// SAFETY: the Cells, the RefCell and the UnsafeCell are accessed only by the thread currently running
// the task (its home worker after start), or by shutdown after every worker has stopped;
// hand-offs between threads go through run-queue operations that synchronise
// (Release push / Acquire pop). The coroutine's closure is `Send`; data it keeps on its
// stack across a suspension stays on the home worker's thread unless the user opted into
// migration (see docs/ARCHITECTURE.md, "Why started coroutines do not migrate").
unsafe impl Send for Task {}
// SAFETY: as above; the shared-access fields are atomics.
unsafe impl Sync for Task {}

/// What a new task holds besides its coroutine and stack: gathered by the spawner, none of
/// it depends on the spawned closure's type.
pub(crate) struct TaskStart {
    /// A finished task nobody else holds, whose allocation the new one reuses (see
    /// `runtime::spare`).
    pub(crate) spare: Option<Arc<Task>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) id: u64,
    pub(crate) name: Option<Box<str>>,
    pub(crate) origin: Origin,
    pub(crate) token: Option<CancelToken>,
}

/// Restores `on_parent` on return and on unwind alike.
struct Restore<'a>(&'a Cell<bool>, bool);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.0.set(self.1);
    }
}

impl Task {
    /// Moves `f` onto `stack` as this task's coroutine, which hands `f`'s outcome to
    /// `completer`. `f` lives on the coroutine's own stack: no allocation of its own.
    ///
    /// The only part of a spawn that knows `F`, and kept small for it: every distinct
    /// closure a program spawns compiles this again. The coroutine's body calls `f` and
    /// passes the outcome on to [`Task::report`], generic in `T` alone; the task around
    /// it was built by [`Task::unstarted`], not generic at all.
    ///
    /// # Safety
    /// Nobody else has seen the task yet (it is not queued, registered or started), and
    /// everything `f` borrows stays valid until the coroutine has returned or been dropped
    /// (trivially so for `F: 'static`; a scope guarantees it for its children).
    pub(crate) unsafe fn install<F, T>(&self, stack: PooledStack, f: F, completer: Completer<T>)
    where
        F: FnOnce() -> T + Send,
        T: Send + 'static,
    {
        let body = move |yielder: &Yielder<(), Suspend>, ()| {
            Task::enter(yielder);
            Task::report(catch_unwind(AssertUnwindSafe(f)), completer);
        };
        // SAFETY: this function's contract: what `body` (through `f`) borrows outlives the
        // coroutine's completion or drop; everything else it holds is owned.
        let coro = unsafe { Coro::with_stack_unchecked(stack, body) };
        // SAFETY: this function's contract: nobody else can reach the cell yet.
        unsafe { *self.coro.get() = Some(coro) };
    }

    /// A coroutine's first step: its task learns the yielder it suspends through.
    #[inline(never)]
    fn enter(yielder: &Yielder<(), Suspend>) {
        let Some(me) = context::current_task_ptr() else {
            panic!("Task::enter: coroutine started without a current task");
        };
        // SAFETY: `me` is this coroutine's own task, alive while it runs.
        let me = unsafe { me.as_ref() };
        me.yielder.set(yielder as *const _);
    }

    /// A coroutine's last step: reports `outcome` (what its closure returned, or the
    /// panic it ended with) to its joiner.
    #[inline(never)]
    fn report<T: Send + 'static>(outcome: std::thread::Result<T>, completer: Completer<T>) {
        // Re-read the context: we may have been unwound from a suspension.
        let Some(me) = context::current_task_ptr() else {
            panic!("Task::report: coroutine finished without a current task");
        };
        // SAFETY: the running task is alive while it runs.
        let me = unsafe { me.as_ref() };
        if me.cancelling.load(Acquire) {
            // Shutdown is unwinding us: report, then let the unwind through.
            let _ = catch_unwind(AssertUnwindSafe(|| completer.complete(Err(JoinError::Cancelled))));
            if let Err(payload) = outcome {
                resume_unwind(payload);
            }
            return;
        }
        // Delivering the result runs user code (a waker of an awaiting executor, or the
        // value's destructor if nobody joins); a panic there must not escape into the
        // worker, which would die with every coroutine pinned to it.
        let delivered = catch_unwind(AssertUnwindSafe(|| {
            // Counted before the joiner is told, so stats read after a join are exact.
            me.finish();
            // The joiner is told from the worker's stack: by the time it wakes, every
            // local of this coroutine is gone, and the one reference still held (the
            // join slot's) lives on a thread's own stack. A program that joins and
            // then exits at once leaves nothing that only a coroutine stack, which no
            // leak checker scans, points to (the C API's bench stop did, under load).
            if let Some(filled) = completer.fill(outcome.map_err(JoinError::Panicked)) {
                me.on_parent_stack(move || filled.notify());
            }
        }));
        if delivered.is_err() {
            eprintln!(
                "kcoro: coroutine {} finished, but a panic while delivering its result was ignored",
                me.id
            );
        }
    }

    /// A task with no coroutine yet, for one about to run on `stack`
    /// ([`Task::install`] adds it), in `start.spare`'s allocation when it can be.
    pub(crate) fn unstarted(start: TaskStart, stack: &PooledStack) -> Arc<Task> {
        let TaskStart { spare, shared, id, name, origin, token } = start;
        let task = Task {
            state: ParkState::new(),
            id,
            name,
            home: AtomicUsize::new(NO_HOME),
            cancelling: AtomicBool::new(false),
            was_parked: Cell::new(false),
            resume_hint: ResumeHint::default(),
            yielder: Cell::new(std::ptr::null()),
            on_parent: Cell::new(false),
            coro: std::cell::UnsafeCell::new(None),
            guard: stack.guard_range(),
            stack_kib: stack.size() >> 10,
            owned_key: Cell::new(usize::MAX),
            wait: WaitCell::default(),
            detail: shared.config.detail,
            daemon: origin.daemon,
            accepted: Cell::new(false),
            site: origin.site,
            token: std::cell::RefCell::new(token),
            shared,
        };
        match spare {
            Some(mut reused) => match Arc::get_mut(&mut reused) {
                Some(slot) => {
                    *slot = task;
                    reused
                }
                None => Arc::new(task), // held elsewhere after all: not ours to reuse
            },
            None => Arc::new(task),
        }
    }

    /// A finished task about to wait for reuse: drops what it holds for its user (its
    /// token, its name) now rather than at the reuse.
    pub(crate) fn release_for_reuse(&mut self) {
        self.token.get_mut().take();
        self.name = None;
    }

    /// Whether the task was parked since it last ran; clears the flag. Called by the
    /// thread about to run it.
    pub(crate) fn take_was_parked(&self) -> bool {
        self.was_parked.replace(false)
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn home(&self) -> usize {
        self.home.load(Acquire)
    }

    pub(crate) fn is_started(&self) -> bool {
        self.home() != NO_HOME
    }

    /// On the coroutine, once its function is done: counts it and leaves the registry.
    fn finish(&self) {
        if let Some(w) = context::current_worker() {
            // SAFETY: the worker lives for its thread's life; we are on that thread.
            unsafe { w.as_ref() }.count_completed();
        }
        self.shared.owned.remove(self);
    }

    /// Resumes the coroutine on the current thread until it suspends or returns.
    ///
    /// # Safety
    /// The caller is the only thread touching this task's coroutine now: it popped the task
    /// from a run queue, and `worker` is this thread's worker index.
    pub(crate) unsafe fn run(self: &Arc<Self>, worker: usize) -> RunResult {
        if self.home.load(Relaxed) == NO_HOME || self.shared.config.migrate {
            self.home.store(worker, Release);
        }
        // SAFETY: exclusive access per this function's contract.
        let coro = unsafe { &mut *self.coro.get() };
        let Some(c) = coro.as_mut() else {
            return RunResult::Completed; // a stale wake of a finished task
        };
        let prev = context::set_task(Arc::as_ptr(self));
        let result = c.resume(());
        context::set_task(prev);
        match result {
            CoroutineResult::Yield(Suspend::Yield) => RunResult::Yielded,
            CoroutineResult::Yield(Suspend::Park) => {
                self.was_parked.set(true);
                match self.state.transition_to_parked() {
                    // From here on another thread may own the task: do not touch it.
                    ParkOutcome::Parked => RunResult::Parked,
                    ParkOutcome::Notified => {
                        self.was_parked.set(false);
                        RunResult::Renotified
                    }
                }
            }
            CoroutineResult::Return(()) => {
                *coro = None; // the stack goes back to the pool now
                RunResult::Completed
            }
        }
    }

    /// The ambient token slot. Call only from the running coroutine itself, and do not
    /// hold the borrow across a suspension.
    pub(crate) fn token_slot(&self) -> &std::cell::RefCell<Option<CancelToken>> {
        &self.token
    }

    /// True while shutdown unwinds this coroutine: it must not suspend again.
    pub(crate) fn is_cancelling(&self) -> bool {
        self.cancelling.load(Acquire)
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The park under way, if parked (and the runtime keeps coroutine detail).
    pub(crate) fn seen_wait(&self) -> Option<Seen> {
        self.wait.read(|| self.state.is_parked())
    }

    pub(crate) fn is_parked(&self) -> bool {
        self.state.is_parked()
    }

    pub(crate) fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Notes that this (running) coroutine accepted a connection.
    pub(crate) fn note_accepted(&self) {
        self.accepted.set(true);
    }

    /// Whether this (running) coroutine accepted a connection since it last asked; clears it.
    pub(crate) fn take_accepted(&self) -> bool {
        self.accepted.replace(false)
    }

    pub(crate) fn spawn_site(&self) -> &'static std::panic::Location<'static> {
        self.site
    }

    /// `[lo, hi)` of the guard page below this coroutine's stack.
    pub(crate) fn guard_range(&self) -> (usize, usize) {
        self.guard
    }

    pub(crate) fn stack_kib(&self) -> usize {
        self.stack_kib
    }

    /// Whether the calling code runs on this coroutine's own stack (and not, say, on the
    /// worker's stack inside [`Task::on_parent_stack`], or on a signal stack).
    pub(crate) fn is_on_own_stack(&self) -> bool {
        self.own_stack_left().is_some()
    }

    /// The bytes of this coroutine's own stack left below the caller, or `None` when the
    /// caller does not run on it.
    #[inline]
    fn own_stack_left(&self) -> Option<usize> {
        let here = std::hint::black_box(0u8);
        let sp = &here as *const u8 as usize;
        let bottom = self.guard.1;
        (sp >= bottom && sp < bottom + (self.stack_kib << 10)).then(|| sp - bottom)
    }

    /// Runs `f` with at least `min_stack` bytes of stack: in place when the caller is on
    /// this coroutine's stack with that much left (or not on it at all), else on the
    /// worker's stack ([`Task::on_parent_stack`]). Either way `f` must not suspend
    /// (enforced). One look at the stack decides, as `on_parent_stack` alone made.
    ///
    /// Call only from the running coroutine.
    #[inline]
    pub(crate) fn with_stack<R>(&self, min_stack: usize, f: impl FnOnce() -> R) -> R {
        match self.own_stack_left() {
            Some(left) if left < min_stack && !self.yielder.get().is_null() => self.switch_to_parent(f),
            _ => {
                let was = self.on_parent.replace(true);
                let _restore = Restore(&self.on_parent, was);
                f()
            }
        }
    }

    /// Runs `f` on the stack of the thread that resumed this coroutine (its worker), then
    /// returns to the coroutine's stack: for work that needs far more stack than a
    /// coroutine has, such as symbolising a backtrace. A panic in `f` propagates to the
    /// caller. `f` must not suspend (enforced: `suspend` panics while it runs).
    ///
    /// Call only from the running coroutine, on its own stack ([`Task::is_on_own_stack`]).
    pub(crate) fn on_parent_stack<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.yielder.get().is_null() || !self.is_on_own_stack() {
            return f(); // not started yet, or already on another stack: nothing to switch
        }
        self.switch_to_parent(f)
    }

    /// [`Task::on_parent_stack`] once the caller is known to run on this started
    /// coroutine's own stack.
    fn switch_to_parent<R>(&self, f: impl FnOnce() -> R) -> R {
        let y = self.yielder.get();
        /// corosensei requires `Send` so that no `Yielder` reference reaches another
        /// thread; `f` runs on this same thread and never sees the yielder.
        struct SameThread<F>(F);
        // SAFETY: the closure runs on the current thread (the parent stack belongs to the
        // thread running this coroutine) and cannot reach the yielder, which is private
        // to this module.
        unsafe impl<F> Send for SameThread<F> {}
        impl<F: FnOnce() -> R, R> SameThread<F> {
            /// Taking `self` makes the closure below capture the whole wrapper, not `.0`.
            fn run(self) -> R {
                (self.0)()
            }
        }
        let job = SameThread(f);
        let was = self.on_parent.replace(true);
        let _restore = Restore(&self.on_parent, was);
        // SAFETY: the yielder lives on this coroutine's stack below its entry frame for as
        // long as the coroutine runs, and we are running on that stack (both callers checked).
        unsafe { (*y).on_parent_stack(move || job.run()) }
    }

    /// Called on the coroutine itself: switch back to the worker. Inlined, with its checks'
    /// panics out of line: an extra call frame around the stack switch costs a mispredicted
    /// return on each side of it (measured: a `yield_now` round 9 → 26 ns).
    #[inline]
    fn suspend(&self, why: Suspend) {
        let y = self.yielder.get();
        if y.is_null() || self.on_parent.get() {
            self.cannot_suspend();
        }
        self.resume_hint.record();
        // SAFETY: the yielder lives on this coroutine's stack, below its entry frame, for
        // as long as the coroutine runs — and we are running on it.
        unsafe { (*y).suspend(why) };
    }

    #[cold]
    #[inline(never)]
    fn cannot_suspend(&self) -> ! {
        if self.yielder.get().is_null() {
            panic!("Task::suspend: coroutine {} has no yielder", self.id);
        }
        panic!(
            "kcoro: coroutine {} tried to suspend inside on_worker_stack or with_stack, which must run to completion",
            self.id
        );
    }

    /// Yields to the worker; the coroutine is requeued behind the others.
    #[inline]
    pub(crate) fn yield_now(&self) {
        self.suspend(Suspend::Yield);
    }

    /// Parks the running coroutine until unparked, `deadline`, or spuriously; `why` says
    /// what it waits on, for monitors.
    #[inline]
    pub(crate) fn park(&self, deadline: Option<Instant>, why: Wait) {
        if self.state.take_notification() {
            return;
        }
        let timer = match deadline {
            None => {
                if self.detail {
                    self.wait.publish(why, None);
                }
                None
            }
            Some(d) => {
                let driver = &self.shared.driver;
                if driver.now() >= d {
                    return;
                }
                if self.detail {
                    self.wait
                        .publish(why, Some(d.saturating_duration_since(driver.epoch()).as_nanos() as u64));
                }
                let me = context::current_task().unwrap_or_else(|| panic!("Task::park: no current task"));
                Some(driver.timer_insert(d, Unparker::from_task(me)))
            }
        };
        self.suspend(Suspend::Park);
        if let Some(key) = timer {
            self.shared.driver.timer_cancel(key);
        }
    }

    /// Starts loading the memory this task touches when it resumes (see `coro::prefetch`).
    #[inline]
    pub(crate) fn prefetch(&self) {
        self.resume_hint.prefetch();
    }

    /// Wakes the task: schedules it if parked, else leaves a token.
    pub(crate) fn unpark(self: &Arc<Self>) {
        if self.state.unpark() == UnparkOutcome::Schedule {
            Shared::schedule_woken(&self.shared, Arc::clone(self));
        }
    }

    /// [`unpark`](Self::unpark) with a count of its own, which goes to the run queue.
    #[inline]
    pub(crate) fn unpark_owned(self: Arc<Self>) {
        if self.state.unpark() == UnparkOutcome::Schedule {
            Shared::schedule_woken_owned(self);
        }
    }

    /// Shutdown: unwinds the coroutine on this thread, running its destructors.
    ///
    /// # Safety
    /// No other thread runs or will run this task: either every worker has stopped, or
    /// the caller is the task's home worker after leaving its loop (migration off), and
    /// the caller's thread is one the coroutine may run on (its home, or any thread if it
    /// never started or migration is on).
    pub(crate) unsafe fn cancel(self: &Arc<Self>) {
        self.cancelling.store(true, Release);
        // SAFETY: exclusive per the contract.
        let taken = unsafe { (*self.coro.get()).take() };
        if let Some(mut c) = taken {
            let prev = context::set_task(Arc::as_ptr(self));
            // A destructor that panics while unwinding would abort; report instead.
            let r = catch_unwind(AssertUnwindSafe(|| c.force_unwind()));
            context::set_task(prev);
            drop(c);
            if r.is_err() {
                eprintln!("kcoro: coroutine {} panicked while being unwound at shutdown", self.id);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    /// The fields a wake touches lead the task, right after the `Arc` counts (see `Task`).
    #[test]
    fn what_a_wake_touches_leads_the_task() {
        let ends = [
            offset_of!(Task, state) + size_of::<ParkState>(),
            offset_of!(Task, resume_hint) + size_of::<ResumeHint>(),
            offset_of!(Task, home) + size_of::<AtomicUsize>(),
            offset_of!(Task, shared) + size_of::<Arc<Shared>>(),
        ];
        let arc_counts = 2 * size_of::<usize>();
        for end in ends {
            assert!(arc_counts + end <= 48, "a wake's field ends at byte {end} of the task");
        }
    }
}
