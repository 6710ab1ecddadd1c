//! The runtime: shared state, spawning, waking, stats and shutdown (its settings and start
//! are in `builder`).
//!
//! # Shutdown protocol
//! 1. *Close*: set `shutdown`; spawns now fail with `Error::ShuttingDown`, wakes are dropped.
//! 2. *Stop workers*: wake every worker; each leaves its loop at the next scheduling point,
//!    releases its queued references and reports in. `shutdown_timeout` waits up to its
//!    limit for them.
//! 3. *Stop the driver*: nobody polls it any more; armed timers are dropped (sleepers are
//!    parked coroutines, unwound in step 5).
//! 4. *Stop the blocking pool*: queued jobs are dropped (their joiners see `Cancelled`).
//! 5. *Unwind*: each worker, before its thread ends (and before its thread-locals are
//!    destroyed), unwinds the started coroutines homed on it, on its own thread — a started
//!    coroutine's stack may hold thread-bound data. The calling thread then unwinds the
//!    coroutines that never started. Destructors run and stacks return to the pool. If a
//!    worker fails to stop in time (or we are running on one, when the runtime is dropped
//!    inside its own coroutine), nothing more is unwound: the rest is leaked, not freed
//!    under a running worker.

pub(crate) mod blocking;
mod builder;
pub(crate) mod context;
pub(crate) mod driver;
mod idle;
mod inject;
pub(crate) mod join;
mod observe;
mod owned;
pub(crate) mod queue;
mod reactor_flag;
mod spare;
mod spawn_options;
pub(crate) mod timer;
mod wake_timer;
pub(crate) mod worker;

#[cfg(all(test, loom))]
mod tests;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use builder::Builder;
pub use spawn_options::SpawnOptions;
pub(crate) use spawn_options::note_accepted;
use spawn_options::{Placement, accepted_since_last_spawn};
pub use wake_timer::TimerId;

use crate::coro::stack::{PooledStack, StackPool, StackStats};
use crate::coro::task::{Origin, Task, TaskStart};
use crate::error::{Error, JoinError};
use crate::runtime::blocking::BlockingPool;
use crate::runtime::driver::Driver;
use crate::runtime::idle::Idle;
use crate::runtime::inject::Inject;
use crate::runtime::join::{Completer, JoinHandle};
use crate::runtime::owned::Owned;
use crate::runtime::worker::{TaskRef, Worker, WorkerShared};

pub(crate) struct Config {
    pub(crate) migrate: bool,
    /// Rounds of an idle worker's spin before it sleeps (`Builder::idle_spin`).
    pub(crate) spin_rounds: u32,
    /// Parks say what they wait on (`Builder::coroutine_detail`).
    pub(crate) detail: bool,
    /// Deterministic mode's seed (see `Builder::deterministic`).
    pub(crate) seed: Option<u64>,
}

/// State shared by the workers, the driver and every handle.
pub(crate) struct Shared {
    pub(crate) workers: Box<[WorkerShared]>,
    pub(crate) inject: Inject,
    pub(crate) idle: Idle,
    pub(crate) stacks: Arc<StackPool>,
    pub(crate) driver: Arc<Driver>,
    pub(crate) blocking: Arc<BlockingPool>,
    pub(crate) owned: Owned,
    /// Finished tasks whose allocations spawns reuse (the shared half; see `spare`).
    pub(crate) spare_tasks: spare::SpareTasks,
    pub(crate) config: Config,
    /// What `Handle::coroutines` and the deadlock watchdog keep between looks.
    pub(crate) observer: observe::Observer,
    shutdown: AtomicBool,
    next_id: AtomicU64,
    /// Spawns from outside the workers (per-worker counters hold the rest).
    external_spawns: AtomicU64,
    /// The worker the next [`SpawnOptions::spread`] spawn starts on (modulo the count).
    next_spread: AtomicUsize,
    exited: Mutex<usize>,
    exited_cond: Condvar,
    leaked: AtomicUsize,
    pub(crate) sim_trace: SimTrace,
    pub(crate) actors: Arc<ActorCounters>,
}

/// Actor counts, kept by the actors' own loops.
#[derive(Default)]
pub(crate) struct ActorCounters {
    pub(crate) spawned: AtomicU64,
    pub(crate) live: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

/// Deterministic mode's schedule fingerprint: how many resumes, and a hash of which task
/// ran at which virtual time, in order. Same seed and program ⇒ same trace.
#[derive(Default)]
pub(crate) struct SimTrace {
    steps: AtomicU64,
    hash: AtomicU64,
    /// Coroutines found parked forever, and the virtual time (ns) of the last deadlock.
    deadlocked: AtomicUsize,
    deadlock_at: AtomicU64,
}

impl SimTrace {
    /// Task `task` resumes at virtual time `ns`. Only the single deterministic worker
    /// writes, so plain load+store suffices.
    pub(crate) fn record(&self, task: u64, ns: u64) {
        const FNV_PRIME: u64 = 0x0000_0100_0000_01B3;
        let mut h = self.hash.load(Relaxed);
        if h == 0 {
            h = 0xCBF2_9CE4_8422_2325;
        }
        for word in [task, ns] {
            for b in word.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
            }
        }
        self.hash.store(h, Relaxed);
        self.steps.store(self.steps.load(Relaxed) + 1, Relaxed);
    }

    pub(crate) fn deadlocked(&self, coroutines: usize, ns: u64) {
        self.deadlock_at.store(ns, SeqCst);
        self.deadlocked.store(coroutines, SeqCst);
    }
}

/// The index of the worker thread running the caller (`0..workers`), or `None` off the
/// runtime's workers. A coroutine stays on the worker it started on (unless the runtime
/// was built with [`Builder::migrate_started`]), so inside one this does not change.
pub fn worker_index() -> Option<usize> {
    let w = context::current_worker()?;
    // SAFETY: a worker lives on its thread's stack for the thread's life; we are on it.
    Some(unsafe { w.as_ref() }.index)
}

/// The runtime's clock for the caller: virtual on a deterministic runtime, else real.
pub(crate) fn now() -> Instant {
    if let Some(t) = context::current_task_ptr() {
        // SAFETY: the running task is alive while it runs.
        return unsafe { t.as_ref() }.shared.driver.now();
    }
    if let Some(w) = context::current_worker() {
        // SAFETY: the worker lives for its thread's life and we are on that thread.
        return unsafe { w.as_ref() }.shared.driver.now();
    }
    Instant::now()
}

impl Shared {
    pub(crate) fn is_shutdown(&self) -> bool {
        self.shutdown.load(Acquire)
    }

    /// Creates and schedules a coroutine. From one of this runtime's workers the new
    /// coroutine goes to that worker's LIFO slot; from anywhere else, the inject queue.
    #[track_caller]
    pub(crate) fn spawn<F, T>(self: &Arc<Self>, opts: SpawnOptions, f: F) -> Result<JoinHandle<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let id = self.next_id.fetch_add(1, Relaxed);
        let (completer, handle) = join::pair(id);
        // SAFETY: `f` is 'static: it borrows nothing.
        unsafe { self.spawn_task(id, opts, f, completer) }?;
        Ok(handle)
    }

    /// Spawns a coroutine nobody joins: no join slot is allocated.
    #[track_caller]
    pub(crate) fn spawn_detached<F>(self: &Arc<Self>, opts: SpawnOptions, f: F) -> Result<(), Error>
    where
        F: FnOnce() + Send + 'static,
    {
        // SAFETY: `f` is 'static: it borrows nothing.
        unsafe { self.spawn_detached_borrowing(opts, f) }
    }

    /// [`spawn_detached`](Self::spawn_detached) for a closure that borrows: it is moved
    /// onto the new coroutine's stack as it is, with no box to erase its lifetime in.
    ///
    /// # Safety
    /// Everything `f` borrows stays valid until the coroutine has returned or been dropped
    /// (a scope waits for its children; see `scope::child`).
    #[track_caller]
    pub(crate) unsafe fn spawn_detached_borrowing<F>(
        self: &Arc<Self>,
        opts: SpawnOptions,
        f: F,
    ) -> Result<(), Error>
    where
        F: FnOnce() + Send,
    {
        let id = self.next_id.fetch_add(1, Relaxed);
        // SAFETY: passed on from this function's contract.
        unsafe { self.spawn_task(id, opts, f, Completer::detached()) }
    }

    /// Starts a coroutine running `f`. Generic only where it must be (the coroutine's
    /// body): the task before and the placement after are
    /// [`prepare_task`](Self::prepare_task) and [`place_task`](Self::place_task), compiled
    /// once, not once per spawned closure.
    ///
    /// # Safety
    /// As [`Task::install`]: what `f` borrows outlives the coroutine's completion or drop.
    #[track_caller]
    unsafe fn spawn_task<F, T>(
        self: &Arc<Self>,
        id: u64,
        opts: SpawnOptions,
        f: F,
        completer: Completer<T>,
    ) -> Result<(), Error>
    where
        F: FnOnce() -> T + Send,
        T: Send + 'static,
    {
        let local = self.local_worker();
        let (task, stack, placement) = self.prepare_task(local, id, opts, std::panic::Location::caller())?;
        // SAFETY: the task is new, seen by nobody yet; the rest is this function's contract.
        unsafe { task.install(stack, f, completer) };
        self.place_task(local, task, placement)
    }

    /// Everything a spawn does before its coroutine exists: a stack, and the task that
    /// will run on it (in a finished task's allocation when `local`'s worker keeps one).
    #[inline(never)]
    fn prepare_task(
        self: &Arc<Self>,
        local: Option<&Worker>,
        id: u64,
        opts: SpawnOptions,
        site: &'static std::panic::Location<'static>,
    ) -> Result<(TaskRef, PooledStack, Placement), Error> {
        if self.is_shutdown() {
            return Err(Error::ShuttingDown);
        }
        let stack = self.stacks.get(opts.stack_size.unwrap_or(self.stacks.stack_size()))?;
        let start = TaskStart {
            spare: local.and_then(|w| w.take_spare_task()),
            shared: Arc::clone(self),
            id,
            name: opts.name.map(String::into_boxed_str),
            origin: Origin { site, daemon: opts.daemon },
            token: opts.token,
        };
        Ok((Task::unstarted(start, &stack), stack, opts.placement))
    }

    /// Registers a built task and starts it where `placement` says.
    #[inline(never)]
    fn place_task(&self, local: Option<&Worker>, task: TaskRef, placement: Placement) -> Result<(), Error> {
        let shard = local.map_or(self.workers.len(), |w| w.index);
        if !self.owned.insert(shard, &task) {
            return Err(Error::ShuttingDown);
        }
        // A chosen worker pins the coroutine there before it starts: a stealer must not
        // undo the choice. Spread spawns from outside the workers go to the inject queue,
        // which any worker serves.
        // Whatever the placement, a spawn ends what an accept before it said.
        let after_accept = accepted_since_last_spawn();
        let chosen = match placement {
            // A coroutine that just accepted a connection is an accept loop spawning the
            // connection's coroutine: started here, every connection would stay on the
            // accepting worker (started coroutines never move), so spread them.
            Placement::Spawner if local.is_some() && after_accept => {
                Some(self.next_spread.fetch_add(1, Relaxed) % self.workers.len())
            }
            Placement::Spawner => None,
            Placement::Spread if local.is_none() => None,
            Placement::Spread => Some(self.next_spread.fetch_add(1, Relaxed) % self.workers.len()),
            Placement::Worker(i) => Some(i % self.workers.len()),
        };
        match local {
            Some(w) => w.count_spawn(),
            None => _ = self.external_spawns.fetch_add(1, Relaxed),
        }
        match (local, chosen) {
            (Some(w), Some(i)) if i == w.index => w.start_here(task),
            (_, Some(i)) => self.start_on(i, task),
            (Some(w), None) => w.schedule_local(task),
            (None, None) => {
                self.inject.push(task);
                if self.is_shutdown() {
                    // Raced with shutdown past its drain: do not leave the task (and its
                    // reference to this runtime) in the queue. Shutdown unwinds it.
                    drop(self.inject.drain());
                } else {
                    self.notify_any();
                }
            }
        }
        Ok(())
    }

    /// Hands a coroutine that has not started to worker `idx`, where it starts and stays.
    fn start_on(&self, idx: usize, task: TaskRef) {
        self.workers[idx].push_inbox(task);
        worker::wake_worker(self, idx);
        if self.is_shutdown() {
            // Raced with shutdown: the worker may be gone, so nobody would drain it.
            drop(self.workers[idx].drain_inbox());
        }
    }

    /// This thread's worker, if it belongs to this runtime.
    fn local_worker(&self) -> Option<&Worker> {
        Self::worker_of(self)
    }

    /// This thread's worker, if it belongs to the runtime `shared`. Not tied to a borrow
    /// of `shared`: the worker outlives any use on its own thread.
    fn worker_of<'w>(shared: *const Shared) -> Option<&'w Worker> {
        let w = context::current_worker()?;
        // SAFETY: a worker lives on its thread's stack for the thread's life; we are on
        // that thread.
        let w = unsafe { w.as_ref() };
        std::ptr::eq(Arc::as_ptr(&w.shared), shared).then_some(w)
    }

    /// [`schedule_woken`](Self::schedule_woken) for a wake that owns no count of the
    /// runtime, only `task`'s, which the run queue takes: on one of the runtime's workers
    /// (the usual waker) that worker's count keeps the runtime alive past the hand-over;
    /// elsewhere (a thread, another runtime) a count is taken for the call.
    #[inline(never)]
    pub(crate) fn schedule_woken_owned(task: TaskRef) {
        match Self::worker_of(Arc::as_ptr(&task.shared)) {
            Some(w) => w.shared.schedule_woken_from(task, || Some(w)),
            None => {
                let shared = Arc::clone(&task.shared);
                shared.schedule_woken_from(task, || None);
            }
        }
    }

    /// Queues a coroutine that an unpark just made runnable (exactly once per park).
    /// Out of line, so an unpark stays small enough to inline where it is called.
    #[inline(never)]
    pub(crate) fn schedule_woken(self: &Arc<Self>, task: TaskRef) {
        self.schedule_woken_from(task, || self.local_worker());
    }

    /// [`schedule_woken`](Self::schedule_woken), with `local` finding this thread's worker
    /// of this runtime if it is one (looked up only once it is needed).
    #[inline(always)]
    fn schedule_woken_from<'w>(self: &Arc<Self>, task: TaskRef, local: impl FnOnce() -> Option<&'w Worker>) {
        if self.is_shutdown() {
            return; // shutdown unwinds it from the registry
        }
        let home = task.home();
        if let Some(w) = local()
            && (w.index == home || self.config.migrate)
        {
            w.schedule_local(task);
            return;
        }
        if self.config.migrate || home >= self.workers.len() {
            self.inject.push(task);
            self.notify_any();
        } else {
            self.workers[home].push_inbox(task);
            worker::wake_worker(self, home);
        }
        if self.is_shutdown() {
            // Raced with shutdown: the workers may be gone, so nobody would drain these.
            drop(self.inject.drain());
            if home < self.workers.len() {
                drop(self.workers[home].drain_inbox());
            }
        }
    }

    /// New stealable work exists: wake one sleeping worker unless one is searching.
    pub(crate) fn notify_any(&self) {
        if let Some(idx) = self.idle.pick_sleeper(|i| &self.workers[i].sleep) {
            worker::unpark_thread(self, idx);
        }
    }

    fn wake_all_workers(&self) {
        for idx in self.idle.all_sleepers() {
            worker::wake_worker(self, idx);
        }
        for idx in 0..self.workers.len() {
            worker::unpark_thread(self, idx);
        }
    }

    pub(crate) fn worker_exited(&self) {
        let mut n = self.exited.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        self.exited_cond.notify_all();
    }

    /// Steps 1–5 of the shutdown protocol. Returns `true` if every worker stopped in time.
    fn shutdown(&self, timeout: Duration) -> bool {
        self.shutdown.store(true, SeqCst);
        self.wake_all_workers();
        // Dropped from inside one of our own coroutines: that worker cannot stop while we
        // wait (we are running on it), so wait for the others only and leak the rest.
        let inside = usize::from(self.local_worker().is_some());
        let deadline = Instant::now().checked_add(timeout);
        let mut exited = self.exited.lock().unwrap_or_else(|p| p.into_inner());
        while *exited + inside < self.workers.len() {
            let wait = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if wait.is_zero() {
                break;
            }
            exited = self.exited_cond.wait_timeout(exited, wait).unwrap_or_else(|p| p.into_inner()).0;
        }
        let all_stopped = *exited == self.workers.len();
        drop(exited);
        self.spare_tasks.clear();
        self.driver.shutdown();
        self.blocking.shutdown();
        let tasks = self.owned.close_and_take();
        // After closing the registry: a spawn that registered just before the close may
        // still push to the inject queue, so it is drained (again) in `spawn` too.
        drop(self.inject.drain());
        if !all_stopped {
            self.leaked.fetch_add(tasks.len(), Relaxed);
            std::mem::forget(tasks);
            return false;
        }
        // Started coroutines were unwound by their home workers (step 5); what is left
        // never ran, so its closure (which is Send) may be dropped here. With migration on,
        // started ones may be left too, and the user allowed them on any thread.
        let (mut unwind, stranded): (Vec<_>, Vec<_>) =
            tasks.into_iter().partition(|t| !t.is_started() || self.config.migrate);
        unwind.sort_unstable_by_key(|t| std::cmp::Reverse(t.id())); // children first
        let _altstack = crate::coro::overflow::AltStack::ensure();
        for t in &unwind {
            // SAFETY: every worker has stopped, so no thread runs or will run `t`.
            unsafe { t.cancel() };
        }
        if !stranded.is_empty() {
            // Only if a worker died (a runtime bug): unwinding here would move them.
            self.leaked.fetch_add(stranded.len(), Relaxed);
            std::mem::forget(stranded);
        }
        true
    }
}

/// A kcoro runtime: worker threads running coroutines and, when idle, polling for socket
/// readiness and timers, and a blocking pool. Dropping it shuts it down (see
/// [`shutdown_timeout`](Self::shutdown_timeout)).
pub struct Runtime {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    down: bool,
}

/// A cheap, cloneable reference to a runtime, for spawning from any thread.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

/// A snapshot of runtime counters. Counts since start unless noted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Worker threads.
    pub workers: usize,
    /// Coroutines spawned.
    pub spawned: u64,
    /// Coroutines that returned or panicked.
    pub completed: u64,
    /// Live coroutines not parked right now (running or runnable).
    pub running: u64,
    /// Coroutines parked right now.
    pub parked: u64,
    /// Coroutine resumes (context switches into a coroutine).
    pub resumes: u64,
    /// Victim rings probed while stealing.
    pub steal_probes: u64,
    /// Probes that stole work.
    pub steals: u64,
    /// Batches taken from the inject queue.
    pub inject_pulls: u64,
    /// Timers fired by the driver.
    pub timer_fires: u64,
    /// Timers armed right now.
    pub timers_armed: usize,
    /// Stacks carved so far (pooled size) plus odd-sized ones live.
    pub stacks_allocated: usize,
    /// Stacks idle in the pool.
    pub stacks_pooled: usize,
    /// Stacks owned by live coroutines.
    pub stacks_live: usize,
    /// Memory mappings holding stacks.
    pub stack_mappings: usize,
    /// Blocking-pool threads alive.
    pub blocking_threads: usize,
    /// Coroutines leaked because a worker did not stop within the shutdown timeout.
    pub leaked: usize,
    /// Actors started.
    pub actors_spawned: u64,
    /// Actors running right now.
    pub actors_live: u64,
    /// Actor restarts after a failure.
    pub actor_restarts: u64,
}

/// One worker's counters, for seeing how work is shared out. Counts since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    /// Coroutines spawned by code running on this worker (wherever they start).
    pub spawned: u64,
    /// Coroutines that started on this worker (and so stay on it).
    pub started: u64,
    /// Coroutines that finished on this worker.
    pub completed: u64,
    /// Resumes of a coroutine on this worker.
    pub resumes: u64,
    /// Parks of a coroutine on this worker.
    pub parks: u64,
    /// Tasks this worker stole from another's queue.
    pub steals: u64,
    /// Idle spins made longer because the worker was partnered: its last sleep was cut
    /// short by another worker waking a coroutine of its own (a cross-worker exchange).
    pub partner_spins: u64,
    /// Rounds this worker spun while idle before finding work or sleeping (see
    /// [`Builder::idle_spin`]).
    pub spin_rounds: u64,
    /// Times this worker went to sleep (on its futex or in the reactor's wait) after
    /// finding no work.
    pub sleeps: u64,
    /// Spawns on this worker that reused a finished coroutine's task instead of
    /// allocating one.
    pub reused: u64,
}

impl Runtime {
    #[cfg(all(test, not(loom)))]
    pub(crate) fn shared_for_tests(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// A builder with defaults: one worker per core, 64 KiB stacks.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A runtime with default settings.
    pub fn new() -> Result<Runtime, Error> {
        Builder::default().build()
    }

    /// A handle for spawning from other threads.
    pub fn handle(&self) -> Handle {
        Handle { shared: Arc::clone(&self.shared) }
    }

    /// Runs `f` as a coroutine and blocks this (non-worker) thread until it returns.
    /// A panic in `f` resumes on the caller.
    ///
    /// # Panics
    /// If called from inside a coroutine (it would block the worker), if the coroutine
    /// cannot be spawned, or with the deadlock report when the runtime was built with
    /// [`Builder::on_deadlock`]`(`[`OnDeadlock::Fail`](crate::inspect::OnDeadlock::Fail)`)`
    /// and everything deadlocked ([`try_block_on`](Self::try_block_on) returns it instead).
    #[track_caller]
    pub fn block_on<F, T>(&self, f: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match self.try_block_on(f) {
            Ok(v) => v,
            Err(e) => panic!("Runtime::block_on: {e}"),
        }
    }

    /// [`block_on`](Self::block_on) that returns an error instead of panicking when the
    /// coroutine cannot be spawned, or when it deadlocked on a runtime built with
    /// [`Builder::on_deadlock`]`(`[`OnDeadlock::Fail`](crate::inspect::OnDeadlock::Fail)`)`:
    /// [`Error::Deadlock`] names every waiter. A panic in `f` still resumes on the caller.
    #[track_caller]
    pub fn try_block_on<F, T>(&self, f: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        assert!(
            context::current_task_ptr().is_none(),
            "Runtime::block_on called from inside a coroutine; use spawn + join instead"
        );
        let handle = self.shared.spawn(SpawnOptions::default(), f)?;
        let observer = &self.shared.observer;
        match handle.join_unless(|| observer.failed().is_some()) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(JoinError::Panicked(p))) => std::panic::resume_unwind(p),
            Ok(Err(e)) => panic!("Runtime::block_on: main coroutine did not finish: {e}"),
            Err(_) => Err(Error::Deadlock(Box::new(observer.failed().unwrap_or_else(|| {
                unreachable!("Runtime::try_block_on: stopped waiting without a deadlock")
            })))),
        }
    }

    /// Spawns a coroutine from any thread.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.handle().spawn(f)
    }

    /// Counters and gauges; cheap enough to poll.
    pub fn stats(&self) -> Stats {
        self.handle().stats()
    }

    /// Each worker's counters, indexed by worker.
    pub fn worker_counters(&self) -> Vec<WorkerCounters> {
        self.handle().worker_counters()
    }

    /// Shuts down, waiting at most `timeout` for workers to reach a scheduling point.
    /// Returns `true` if everything stopped and every coroutine was unwound.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> bool {
        self.shutdown_inner(timeout)
    }

    fn shutdown_inner(&mut self, timeout: Duration) -> bool {
        if self.down {
            return true;
        }
        self.down = true;
        let clean = self.shared.shutdown(timeout);
        if clean {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
        self.shared.driver.clear_timers();
        clean
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown_inner(Duration::MAX);
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("stats", &self.stats()).finish()
    }
}

impl Handle {
    /// The handle of the runtime running the current coroutine or worker, if any.
    pub fn try_current() -> Option<Handle> {
        if let Some(t) = context::current_task_ptr() {
            // SAFETY: the running task is alive while it runs.
            let task = unsafe { t.as_ref() };
            return Some(Handle { shared: Arc::clone(&task.shared) });
        }
        let w = context::current_worker()?;
        // SAFETY: the worker lives for its thread's life and we are on that thread.
        let worker = unsafe { w.as_ref() };
        Some(Handle { shared: Arc::clone(&worker.shared) })
    }

    /// Spawns a coroutine. If spawning fails (stacks exhausted, shutting down), the
    /// handle's `join` returns `JoinError::Spawn`.
    #[track_caller]
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.spawn_with(SpawnOptions::default(), f)
            .unwrap_or_else(|e| JoinHandle::ready(Err(JoinError::Spawn(e))))
    }

    /// Spawns with options; errors are returned at once.
    #[track_caller]
    pub fn spawn_with<F, T>(&self, opts: SpawnOptions, f: F) -> Result<JoinHandle<T>, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        self.shared.spawn(opts, f)
    }

    /// Spawns a coroutine nobody joins, with options; errors are returned at once. No join
    /// slot is allocated, so once `f` has returned the coroutine holds nothing of its own:
    /// what a caller that tracks completion itself (a wait group counted down at the end
    /// of `f`) wants, rather than dropping a [`JoinHandle`].
    #[track_caller]
    pub fn spawn_detached<F>(&self, opts: SpawnOptions, f: F) -> Result<(), Error>
    where
        F: FnOnce() + Send + 'static,
    {
        self.shared.spawn_detached(opts, f)
    }

    /// # Safety
    /// As [`Shared::spawn_detached_borrowing`].
    #[track_caller]
    pub(crate) unsafe fn spawn_detached_borrowing<F>(&self, opts: SpawnOptions, f: F) -> Result<(), Error>
    where
        F: FnOnce() + Send,
    {
        // SAFETY: passed on from this function's contract.
        unsafe { self.shared.spawn_detached_borrowing(opts, f) }
    }

    /// Runs `f` on the blocking pool.
    pub fn spawn_blocking<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        if self.shared.config.seed.is_some() {
            // Deterministic mode: another thread would race the worker.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            return JoinHandle::ready(r.map_err(JoinError::Panicked));
        }
        self.shared.blocking.spawn(f)
    }

    /// Deterministic mode's schedule fingerprint so far; `None` on a normal runtime.
    pub fn sim_trace(&self) -> Option<crate::sim::Trace> {
        self.shared.config.seed?;
        let t = &self.shared.sim_trace;
        let deadlock = match t.deadlocked.load(SeqCst) {
            0 => None,
            n => Some((n, Duration::from_nanos(t.deadlock_at.load(SeqCst)))),
        };
        Some(crate::sim::Trace { steps: t.steps.load(Relaxed), hash: t.hash.load(Relaxed), deadlock })
    }

    /// True for a deterministic runtime ([`Builder::deterministic`]).
    pub fn is_deterministic(&self) -> bool {
        self.shared.config.seed.is_some()
    }

    pub(crate) fn actor_counters(&self) -> Arc<ActorCounters> {
        Arc::clone(&self.shared.actors)
    }

    pub(crate) fn driver(&self) -> Arc<Driver> {
        Arc::clone(&self.shared.driver)
    }

    /// See [`Runtime::worker_counters`].
    pub fn worker_counters(&self) -> Vec<WorkerCounters> {
        let count = |c: &AtomicU64| c.load(Relaxed);
        (self.shared.workers.iter())
            .map(|w| {
                let c = &w.stats;
                WorkerCounters {
                    spawned: count(&c.spawned),
                    started: count(&c.started),
                    completed: count(&c.completed),
                    resumes: count(&c.resumes),
                    parks: count(&c.parks),
                    steals: count(&c.steals),
                    partner_spins: count(&c.partner_spins),
                    spin_rounds: count(&c.spin_rounds),
                    sleeps: count(&c.sleeps),
                    reused: count(&c.reused),
                }
            })
            .collect()
    }

    /// See [`Runtime::stats`].
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let mut st = Stats { workers: s.workers.len(), ..Stats::default() };
        let mut parks = 0;
        let mut wakes = 0;
        for w in s.workers.iter() {
            let c = &w.stats;
            st.spawned += c.spawned.load(Relaxed);
            st.completed += c.completed.load(Relaxed);
            st.resumes += c.resumes.load(Relaxed);
            st.steal_probes += c.steal_probes.load(Relaxed);
            st.steals += c.steals.load(Relaxed);
            st.inject_pulls += c.inject_pulls.load(Relaxed);
            parks += c.parks.load(Relaxed);
            wakes += c.wakes.load(Relaxed);
        }
        st.spawned += s.external_spawns.load(Relaxed);
        st.parked = parks.saturating_sub(wakes);
        st.running = (s.owned.live() as u64).saturating_sub(st.parked);
        st.timer_fires = s.driver.timer_fires.load(Relaxed);
        st.timers_armed = s.driver.timers_armed();
        let StackStats { allocated, pooled, live, mappings } = s.stacks.stats();
        st.stacks_allocated = allocated;
        st.stacks_pooled = pooled;
        st.stacks_live = live;
        st.stack_mappings = mappings;
        st.blocking_threads = s.blocking.threads();
        st.leaked = s.leaked.load(Relaxed);
        st.actors_spawned = s.actors.spawned.load(Relaxed);
        st.actors_live = s.actors.live.load(Relaxed);
        st.actor_restarts = s.actors.restarts.load(Relaxed);
        st
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("workers", &self.shared.workers.len()).finish()
    }
}
