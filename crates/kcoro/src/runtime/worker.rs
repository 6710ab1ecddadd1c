//! A worker thread: its run queues, its loop, and how it sleeps.
//!
//! # Queues of one worker
//! - `lifo`: the task woken or spawned last by this worker; run next, so a message
//!   hand-off between two coroutines stays hot in cache. Not stealable. After
//!   `MAX_LIFO_POLLS` in a row it goes to the back of the queue, so two coroutines
//!   ping-ponging cannot starve the rest.
//! - `pinned`: started coroutines that are runnable (yielded, or woken here). Only this
//!   worker runs them (see docs/ARCHITECTURE.md, "Why started coroutines do not migrate").
//! - `ring`: fresh coroutines, stealable (`runtime::queue`).
//! - `inbox`: started coroutines of ours woken by other threads; drained into `pinned`.
//!
//! Plus the runtime-wide inject queue for spawns from outside the workers and ring overflow.
//!
//! # One turn of the loop
//! 1. Every `GLOBAL_INTERVAL` ticks, poll the reactor without waiting (if no other worker
//!    has it), move the inbox into `pinned` and take a task from the inject queue first, so
//!    a coroutine yielding in a loop cannot starve sockets, timers, remote wake-ups or
//!    spawns from outside, nor can a stream of wake-ups starve the inject queue.
//! 2. Else `lifo`, then `pinned` and `ring` (alternating which goes first), then the inbox,
//!    then the inject queue.
//! 3. Nothing local: search — steal half of a random victim's ring; then spin a little,
//!    yielding the CPU and looking at the reactor between looks for work.
//! 4. Nothing anywhere: sleep (see `runtime::idle` for the no-lost-wake-up protocol) — in
//!    the reactor's `epoll_wait` if no other worker is there, else on the thread's futex.
//!    Readiness it sees for its own coroutines goes straight to its own queues. A worker
//!    with no coroutine of its own leaves the reactor to an awake worker for a while
//!    ([`Worker::leaves_reactor`]).

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use crate::coro::task::{RunResult, Task};
use crate::runtime::idle::{AWAKE, SLEEPING, WOKEN, WOKEN_SEARCHING};
use crate::runtime::queue::{self, Local, Stealer};
use crate::runtime::reactor_flag::ReactorFlag;
use crate::runtime::{Shared, context};

pub(crate) type TaskRef = Arc<Task>;

/// Ticks between forced looks at the inbox and inject queue. Prime, as in Go and tokio,
/// so it does not beat against periodic workloads.
const GLOBAL_INTERVAL: u32 = 61;
/// Consecutive LIFO-slot runs allowed before the slot's task queues normally.
const MAX_LIFO_POLLS: u32 = 3;
/// Idle spin before sleeping, unless the runtime was built with another
/// (`Builder::idle_spin`): up to this many `sched_yield` rounds, checking for work after
/// each, and looking at the reactor without waiting (if no other worker has it), so a
/// readable socket is served at once instead of after the spin and a sleep in `epoll_wait`
/// (that halved the median latency of a 10-connection keep-alive server). A futex sleep and
/// wake costs tens of microseconds on the 2-core VMs we measure on (a cross-worker
/// ping-pong took 45 µs a round trip without the spin, 2 µs with it). Pause-instruction
/// spinning was worse than none: the woken worker often lands on the spinner's CPU and
/// waits for the spin to end; `sched_yield` lets it run.
pub(crate) const DEFAULT_SPIN_ROUNDS: u32 = 16;
/// A sleep that another worker's hand-off (a coroutine of ours it woke) ends within this
/// marks the worker *partnered*: one side of an exchange with a coroutine on another worker.
const PARTNER_WAKE: std::time::Duration = std::time::Duration::from_micros(200);
/// How long a partnered worker keeps spinning (still in `sched_yield` rounds) before it
/// sleeps. It must outlast a sleeping worker's wake-up on the VMs we measure on (~13 µs a
/// hop): with the 16 rounds alone, once one side of a cross-worker ping-pong slept, the
/// other's reply came too late for its spin and both slept on every hop (25 µs a round
/// trip instead of 1.9 µs).
const PARTNER_SPIN: std::time::Duration = std::time::Duration::from_micros(50);
/// How long a worker that left the reactor to an awake worker ([`Worker::leaves_reactor`])
/// sleeps before it checks that the reactor was polled meanwhile, and takes it if not (the
/// awake worker may be running one coroutine for a long time): the longest a plain
/// thread's socket wait can then go unserved.
const REACTOR_HANDOFF: std::time::Duration = std::time::Duration::from_millis(10);
/// Deterministic mode: how long (real time) to wait for a thread outside the simulation
/// before calling "every coroutine parked, no timer armed" a deadlock.
const DEADLOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(100);
/// Tasks taken from the inject queue in one go (the rest of a batch goes to the ring).
const INJECT_BATCH: usize = 32;

/// The parts of a worker other threads may touch, on cache lines of their own (the array
/// of workers would otherwise put one worker's hot fields beside its neighbour's).
#[repr(align(128))]
pub(crate) struct WorkerShared {
    pub(crate) stealer: Stealer<TaskRef>,
    inbox: Mutex<Vec<TaskRef>>,
    inbox_len: AtomicUsize,
    pub(crate) sleep: AtomicU8,
    /// Set while the worker sleeps in the reactor: waking it takes the reactor's waker.
    pub(crate) polling: ReactorFlag,
    pub(crate) thread: OnceLock<Thread>,
    pub(crate) stats: WorkerStats,
}

/// Counters written by the owning worker only (Relaxed), summed by `Runtime::stats`. On
/// lines of their own: other workers read the inbox and sleep state beside them while the
/// owner bumps these on every resume.
#[derive(Default)]
#[repr(align(128))]
pub(crate) struct WorkerStats {
    pub(crate) spawned: AtomicU64,
    pub(crate) started: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) parks: AtomicU64,
    pub(crate) wakes: AtomicU64,
    pub(crate) steal_probes: AtomicU64,
    pub(crate) steals: AtomicU64,
    pub(crate) inject_pulls: AtomicU64,
    pub(crate) resumes: AtomicU64,
    /// The id of the coroutine running now, 0 for none (with coroutine detail on).
    pub(crate) running: AtomicU64,
    pub(crate) partner_spins: AtomicU64,
    pub(crate) spin_rounds: AtomicU64,
    pub(crate) reused: AtomicU64,
    pub(crate) sleeps: AtomicU64,
}

fn bump(c: &AtomicU64) {
    // Only the owner writes; a plain load+store avoids a locked instruction.
    c.store(c.load(Relaxed) + 1, Relaxed);
}

impl WorkerShared {
    pub(crate) fn new() -> (WorkerShared, Local<TaskRef>) {
        let (local, stealer) = queue::new();
        let ws = WorkerShared {
            stealer,
            inbox: Mutex::new(Vec::new()),
            inbox_len: AtomicUsize::new(0),
            sleep: AtomicU8::new(AWAKE),
            polling: ReactorFlag::default(),
            thread: OnceLock::new(),
            stats: WorkerStats::default(),
        };
        (ws, local)
    }

    fn lock_inbox(&self) -> std::sync::MutexGuard<'_, Vec<TaskRef>> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Any thread: queue a started coroutine of this worker. Waking the worker, if it
    /// sleeps, is the caller's job (the SeqCst store of `inbox_len` pairs with the
    /// worker's re-check before it sleeps).
    pub(crate) fn push_inbox(&self, task: TaskRef) {
        let mut inbox = self.lock_inbox();
        inbox.push(task);
        self.inbox_len.store(inbox.len(), SeqCst);
    }

    pub(crate) fn has_inbox(&self) -> bool {
        self.inbox_len.load(SeqCst) != 0
    }

    pub(crate) fn drain_inbox(&self) -> Vec<TaskRef> {
        let mut inbox = self.lock_inbox();
        self.inbox_len.store(0, SeqCst);
        std::mem::take(&mut *inbox)
    }
}

/// Wakes worker `idx`'s thread, wherever it sleeps: on its futex or in the reactor.
/// Callers have already changed its sleep state (SeqCst); see `runtime::reactor_flag`.
pub(crate) fn unpark_thread(shared: &Shared, idx: usize) {
    let w = &shared.workers[idx];
    if let Some(t) = w.thread.get() {
        t.unpark();
    }
    if w.polling.is_polling() {
        shared.driver.wake_poller();
    }
}

/// State only the worker thread touches.
pub(crate) struct Core {
    lifo: Option<TaskRef>,
    lifo_polls: u32,
    pinned: VecDeque<TaskRef>,
    ring: Local<TaskRef>,
    tick: u32,
    rng: u64,
    searching: bool,
    /// Inside a reactor turn: its wakes queue in firing order, not through the LIFO slot.
    in_turn: bool,
    /// The last sleep was cut short by another worker handing us a coroutine (see
    /// [`PARTNER_WAKE`]): spin for [`PARTNER_SPIN`] before sleeping again.
    partnered: bool,
    /// Finished tasks kept for reuse by this worker's spawns (see `runtime::spare`).
    spare_tasks: Vec<TaskRef>,
}

/// A worker, living on its thread's stack for the thread's life.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) shared: Arc<Shared>,
    /// Accessed only from this worker's thread, never across a resume (a coroutine
    /// reaches it through `context::current_worker` for spawn/wake, in short scopes).
    core: UnsafeCell<Core>,
}

impl Worker {
    pub(crate) fn run_thread(shared: Arc<Shared>, index: usize, ring: Local<TaskRef>) {
        // Reports the exit even if the loop panics (a runtime bug), so shutdown never waits
        // for a dead worker.
        struct Exited(Arc<Shared>);
        impl Drop for Exited {
            fn drop(&mut self) {
                self.0.worker_exited();
            }
        }
        let _exited = Exited(Arc::clone(&shared));
        let _altstack = crate::coro::overflow::AltStack::ensure();
        let worker = Worker {
            index,
            shared,
            core: UnsafeCell::new(Core {
                lifo: None,
                lifo_polls: 0,
                pinned: VecDeque::new(),
                ring,
                tick: 0,
                rng: 0x2545F4914F6CDD1D ^ (index as u64 + 1).wrapping_mul(0x9E3779B97F4A7C15),
                searching: false,
                in_turn: false,
                partnered: false,
                spare_tasks: Vec::new(),
            }),
        };
        context::set_worker(&worker);
        // Until the stacks of its own coroutines are back (after `unwind_own`).
        let stack_cache = crate::coro::stack::enter_worker(&worker.shared.stacks, index);
        match worker.shared.config.seed {
            Some(seed) => worker.run_deterministic(seed),
            None => worker.run(),
        }
        worker.drain_on_exit();
        worker.unwind_own();
        drop(stack_cache);
        context::set_worker(std::ptr::null());
    }

    fn me(&self) -> &WorkerShared {
        &self.shared.workers[self.index]
    }

    /// # Safety (internal)
    /// Callers must not hold the returned reference across a coroutine resume, nor call
    /// anything that re-enters `core()` while holding it.
    #[allow(clippy::mut_from_ref)]
    fn core(&self) -> &mut Core {
        // SAFETY: only this worker's thread calls it, and every caller keeps the borrow
        // inside a scope that neither resumes a coroutine nor re-enters (see above).
        unsafe { &mut *self.core.get() }
    }

    fn run(&self) {
        while !self.shared.is_shutdown() {
            if let Some(task) = self.next_task() {
                self.run_task(task);
                continue;
            }
            if let Some(task) = self.search() {
                self.run_task(task);
                continue;
            }
            if self.spin_for_work() {
                continue;
            }
            self.sleep();
        }
    }

    /// Deterministic mode's loop (one worker): gather every runnable task, in the order
    /// they became runnable, into one set; run one drawn from the seeded generator; when
    /// nothing can run, jump the virtual clock to the next timer; when no timer is armed
    /// either, sleep until a thread outside the runtime (`block_on`) brings work.
    fn run_deterministic(&self, seed: u64) {
        let mut rng = crate::rand::SplitMix::new(seed);
        crate::rand::reseed_thread(rng.next_u64());
        let mut runnable: Vec<TaskRef> = Vec::new();
        while !self.shared.is_shutdown() {
            self.gather_runnable(&mut runnable);
            if !runnable.is_empty() {
                let task = runnable.swap_remove(rng.below(runnable.len()));
                self.shared.sim_trace.record(task.id(), self.shared.driver.elapsed_ns());
                self.run_task(task);
                continue;
            }
            if self.shared.driver.advance_virtual() {
                continue;
            }
            if self.shared.owned.live() == 0 {
                self.sleep(); // idle: waiting for `block_on` to bring the next program
                continue;
            }
            // Every coroutine is parked and no timer is armed. Only a thread outside the
            // simulation could still wake one; give it a moment, then call it a deadlock.
            if !self.outside_work_within(DEADLOCK_GRACE) {
                self.break_deadlock();
            }
        }
        drop(runnable); // queued references; the registry still holds the tasks
    }

    fn outside_work_within(&self, grace: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + grace;
        loop {
            if self.has_visible_work() || self.shared.is_shutdown() {
                return true;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            std::thread::park_timeout(left.min(std::time::Duration::from_millis(5)));
        }
    }

    /// Deterministic mode's deadlock: records it and unwinds every coroutine (as shutdown
    /// would), so their joiners — `block_on` among them — see `Cancelled` instead of
    /// waiting forever.
    fn break_deadlock(&self) {
        let stuck = self.shared.owned.take_where(|_| true);
        self.shared.sim_trace.deadlocked(stuck.len(), self.shared.driver.elapsed_ns());
        for t in stuck {
            // SAFETY: deterministic mode has this one worker; it is between resumes and
            // every task is parked, so no thread runs or will run `t` while we unwind it.
            unsafe { t.cancel() };
        }
    }

    fn gather_runnable(&self, into: &mut Vec<TaskRef>) {
        let core = self.core();
        into.extend(core.lifo.take());
        into.extend(core.pinned.drain(..));
        while let Some(t) = core.ring.pop() {
            into.push(t);
        }
        if self.me().has_inbox() {
            into.extend(self.me().drain_inbox());
        }
        if !self.shared.inject.is_empty() {
            into.extend(self.shared.inject.drain());
        }
    }

    fn run_task(&self, task: TaskRef) {
        // Found work: stop searching before running it, or `notify_any` would think a
        // searcher is still out there and wake nobody for as long as this task runs.
        self.end_search(self.core());
        let stats = &self.me().stats;
        if task.take_was_parked() {
            bump(&stats.wakes);
        } else if !task.is_started() {
            bump(&stats.started);
        }
        let detail = self.shared.config.detail;
        loop {
            bump(&stats.resumes);
            if detail {
                stats.running.store(task.id(), Relaxed);
            }
            // SAFETY: we popped `task` from one of our queues: no other thread runs it now.
            let ran = unsafe { task.run(self.index) };
            if detail {
                stats.running.store(0, Relaxed);
            }
            match ran {
                RunResult::Yielded => {
                    let core = self.core();
                    // Alone on this worker and not due to look at the inbox and inject
                    // queue: the yielder is next anyway, so skip the queue round trip. Still
                    // a full switch out and back, and still a scheduler tick (so shutdown is
                    // seen within GLOBAL_INTERVAL yields).
                    // (Deterministic mode keeps its runnable set elsewhere: always requeue.)
                    let alone = core.lifo.is_none()
                        && core.pinned.is_empty()
                        && core.ring.is_empty()
                        && self.shared.config.seed.is_none();
                    // The tick that is due to look remotely is left for `next_task` to take.
                    let remote_due = core.tick.wrapping_add(1) % GLOBAL_INTERVAL == 0;
                    if alone && !remote_due {
                        core.tick = core.tick.wrapping_add(1);
                        continue;
                    }
                    core.pinned.push_back(task);
                }
                RunResult::Renotified => self.schedule_local(task),
                RunResult::Parked => {
                    bump(&stats.parks);
                    // Our reference drops; the registry and the unparkers keep the task.
                }
                // Counted and unregistered by `Task::finish`.
                RunResult::Completed => self.shared.spare_tasks.keep(&mut self.core().spare_tasks, task),
            }
            return;
        }
    }

    fn next_task(&self) -> Option<TaskRef> {
        let core = self.core();
        core.tick = core.tick.wrapping_add(1);
        if core.tick % GLOBAL_INTERVAL == 0 {
            self.poll_reactor_now();
            let core = self.core();
            // Move woken coroutines into line, then give the inject queue this turn, so
            // a steady stream of remote wake-ups cannot starve it either.
            if self.me().has_inbox() {
                core.pinned.extend(self.me().drain_inbox());
            }
            if let Some(t) = self.pull_inject(core) {
                return Some(t);
            }
        }
        if let Some(t) = core.lifo.take() {
            if core.lifo_polls < MAX_LIFO_POLLS {
                core.lifo_polls += 1;
                return Some(t);
            }
            self.push_queue(core, t);
        }
        core.lifo_polls = 0;
        let t = if core.tick & 1 == 0 {
            core.pinned.pop_front().or_else(|| core.ring.pop())
        } else {
            core.ring.pop().or_else(|| core.pinned.pop_front())
        };
        t.or_else(|| self.pull_remote(core))
    }

    /// The inbox first (our own coroutines), then the inject queue.
    fn pull_remote(&self, core: &mut Core) -> Option<TaskRef> {
        if self.me().has_inbox() {
            core.pinned.extend(self.me().drain_inbox());
            if let Some(t) = core.pinned.pop_front() {
                return Some(t);
            }
        }
        self.pull_inject(core)
    }

    fn pull_inject(&self, core: &mut Core) -> Option<TaskRef> {
        let shared = &self.shared;
        if shared.inject.is_empty() {
            return None;
        }
        let per_worker = shared.inject.len() / shared.workers.len() + 1;
        let mut batch = shared.inject.pop_batch(per_worker.min(INJECT_BATCH));
        if batch.is_empty() {
            return None;
        }
        bump(&self.me().stats.inject_pulls);
        let first = batch.remove(0);
        for t in batch {
            self.push_queue(core, t);
        }
        Some(first)
    }

    /// Queues a runnable task behind the others: `pinned` if started (and migration is
    /// off), else the stealable ring — telling a sleeper about the new stealable work.
    fn push_queue(&self, core: &mut Core, task: TaskRef) {
        if task.is_started() && !self.shared.config.migrate {
            core.pinned.push_back(task);
        } else {
            let shared = &self.shared;
            core.ring.push_back(task, &mut |batch| shared.inject.push_batch(batch));
            shared.notify_any();
        }
    }

    /// Queues a coroutine that has not started to start here, out of reach of stealers.
    pub(crate) fn start_here(&self, task: TaskRef) {
        self.core().pinned.push_back(task);
    }

    /// Schedules a task on this worker, in the LIFO slot (spawns and local wakes).
    pub(crate) fn schedule_local(&self, task: TaskRef) {
        task.prefetch();
        let core = self.core();
        if core.in_turn {
            self.push_queue(core, task);
            return;
        }
        if let Some(prev) = core.lifo.replace(task) {
            self.push_queue(core, prev);
        }
    }

    /// A finished task for a spawn on this worker to reuse, if any.
    pub(crate) fn take_spare_task(&self) -> Option<TaskRef> {
        let spare = self.shared.spare_tasks.take(&mut self.core().spare_tasks);
        if spare.is_some() {
            bump(&self.me().stats.reused);
        }
        spare
    }

    pub(crate) fn count_completed(&self) {
        bump(&self.me().stats.completed);
    }

    pub(crate) fn count_spawn(&self) {
        bump(&self.me().stats.spawned);
    }

    fn search(&self) -> Option<TaskRef> {
        let core = self.core();
        if !core.searching {
            if !self.shared.idle.transition_to_searching() {
                return None;
            }
            core.searching = true;
        }
        self.steal(core).or_else(|| self.pull_remote(core))
    }

    fn end_search(&self, core: &mut Core) {
        if core.searching {
            core.searching = false;
            if self.shared.idle.transition_from_searching() {
                self.shared.notify_any();
            }
        }
    }

    fn steal(&self, core: &mut Core) -> Option<TaskRef> {
        let workers = &self.shared.workers;
        let n = workers.len();
        if n < 2 {
            return None;
        }
        core.rng ^= core.rng << 13;
        core.rng ^= core.rng >> 7;
        core.rng ^= core.rng << 17;
        let start = (core.rng % n as u64) as usize;
        let stats = &self.me().stats;
        for i in 0..n {
            let victim = (start + i) % n;
            if victim == self.index {
                continue;
            }
            bump(&stats.steal_probes);
            if let Some(t) = workers[victim].stealer.steal_into(&mut core.ring) {
                bump(&stats.steals);
                return Some(t);
            }
        }
        None
    }

    /// A short, bounded spin before sleeping: work often arrives within microseconds (a
    /// spawn burst, a reply), and catching it here saves a futex sleep and wake on both
    /// sides. `Builder::idle_spin` yields, or [`PARTNER_SPIN`] when partnered; never a
    /// busy loop.
    fn spin_for_work(&self) -> bool {
        let until = self.core().partnered.then(|| {
            bump(&self.me().stats.partner_spins);
            std::time::Instant::now() + PARTNER_SPIN
        });
        let spin_rounds = self.shared.config.spin_rounds;
        let mut rounds = 0;
        while rounds < spin_rounds || until.is_some_and(|t| std::time::Instant::now() < t) {
            rounds += 1;
            bump(&self.me().stats.spin_rounds);
            std::thread::yield_now();
            if self.has_visible_work() || self.shared.is_shutdown() {
                return true;
            }
            self.poll_reactor_now();
            if self.has_local_work() {
                return true;
            }
        }
        false
    }

    fn has_visible_work(&self) -> bool {
        let shared = &self.shared;
        self.me().has_inbox()
            || !shared.inject.is_empty()
            || shared.workers.iter().enumerate().any(|(i, w)| i != self.index && !w.stealer.is_empty())
    }

    /// Busy worker's look at the reactor: takes what is ready without waiting, unless
    /// another worker polls it already. Coroutines woken for us land in our queues.
    fn poll_reactor_now(&self) {
        let driver = &self.shared.driver;
        if !driver.has_interest() {
            return;
        }
        if let Some(mut poller) = driver.try_poller() {
            self.core().in_turn = true;
            driver.turn(&mut poller, Some(std::time::Duration::ZERO));
            self.core().in_turn = false;
        }
    }

    /// Sleeping, registered as a sleeper: waits in the reactor instead of on the futex if
    /// no other worker is there. Returns `false` if it could not take the reactor.
    fn sleep_in_reactor(&self) -> bool {
        let driver = &self.shared.driver;
        let Some(mut poller) = driver.try_poller() else { return false };
        let me = self.me();
        // Pairs with `unpark_thread` (see `runtime::reactor_flag`).
        if me.polling.enter(|| me.sleep.load(SeqCst) == SLEEPING && !self.shared.is_shutdown()) {
            self.core().in_turn = true;
            driver.turn(&mut poller, None);
            self.core().in_turn = false;
        }
        me.polling.leave();
        true
    }

    /// Whether this worker, going to sleep, should leave the reactor to another: it has no
    /// started coroutine of its own, so nothing the reactor reports would run here, and
    /// another worker is awake, which looks at the reactor as it runs and sleeps in it when
    /// it runs out of work. A reply for that worker's coroutine then wakes one thread, not
    /// this one first and then the owner (`rtt_64_pinned` of the `ipc` suite: 38 µs → 9 µs).
    /// Every worker registers as a sleeper (SeqCst) before this check, so two cannot each
    /// see the other awake and both leave it.
    fn leaves_reactor(&self) -> bool {
        let stats = &self.me().stats;
        // With migration, a coroutine's home can change: the counts say nothing.
        if self.shared.config.migrate || stats.started.load(Relaxed) != stats.completed.load(Relaxed) {
            return false;
        }
        self.shared
            .workers
            .iter()
            .enumerate()
            .any(|(i, w)| i != self.index && w.sleep.load(SeqCst) != SLEEPING)
    }

    fn has_local_work(&self) -> bool {
        let core = self.core();
        core.lifo.is_some() || !core.pinned.is_empty() || !core.ring.is_empty()
    }

    /// Sleeps until woken; see `runtime::idle` for the protocol.
    fn sleep(&self) {
        let shared = &self.shared;
        let me = self.me();
        let was_searching = std::mem::replace(&mut self.core().searching, false);
        let slept_at = std::time::Instant::now();
        bump(&me.stats.sleeps);
        shared.idle.register_sleeper(self.index, &me.sleep);
        if was_searching {
            shared.idle.transition_from_searching();
        }
        // Pairs with the fence in `Idle::pick_sleeper` (see `runtime::idle`).
        std::sync::atomic::fence(SeqCst);
        // Whoever takes a sleeper off the list sets its state under the same lock, so once
        // `remove_sleeper` has failed our state is already final: no waiting on a waker.
        if shared.is_shutdown() || self.has_visible_work() {
            shared.idle.remove_sleeper(self.index, &me.sleep, AWAKE);
        } else {
            // The reactor's turn count when this worker last left the reactor to others.
            let mut left_at = None;
            while me.sleep.load(SeqCst) == SLEEPING && !shared.is_shutdown() {
                let turns = shared.driver.turns();
                if left_at.is_none_or(|t| t != turns) && self.leaves_reactor() {
                    left_at = Some(turns);
                    std::thread::park_timeout(REACTOR_HANDOFF);
                    continue;
                }
                left_at = None;
                if !self.sleep_in_reactor() {
                    std::thread::park();
                    continue;
                }
                // The reactor woke coroutines of ours (into our own queues, so nobody
                // else knows): leave the sleeper list and run them.
                if self.has_local_work() || self.has_visible_work() {
                    break;
                }
            }
            // Shutdown with us still listed: take ourselves off.
            shared.idle.remove_sleeper(self.index, &me.sleep, AWAKE);
        }
        debug_assert_ne!(
            me.sleep.load(SeqCst),
            SLEEPING,
            "Worker::sleep: left the sleeper list still SLEEPING"
        );
        if me.sleep.swap(AWAKE, SeqCst) == WOKEN_SEARCHING {
            self.core().searching = true;
        }
        // Our coroutines in the inbox are another worker's hand-off (our own wakes go to our
        // queues, reactor wakes included).
        self.core().partnered = me.has_inbox() && slept_at.elapsed() < PARTNER_WAKE;
    }

    /// Shutdown step 5 for this worker: unwind the started coroutines homed here, on this
    /// thread, while its thread-locals still exist. With migration on, a coroutine's home
    /// can change under us, so the shutdown thread does it after every worker stopped.
    fn unwind_own(&self) {
        if self.shared.config.migrate {
            return;
        }
        let mut mine = self.shared.owned.take_where(|t| t.is_started() && t.home() == self.index);
        // Newest first: a scope's children (spawned after it) unwind before the scope's
        // own frame, whose stack they may borrow from.
        mine.sort_unstable_by_key(|t| std::cmp::Reverse(t.id()));
        for t in mine {
            // SAFETY: a started coroutine runs only on its home worker (migration is off),
            // and this worker has left its loop: no thread runs or will run `t`.
            unsafe { t.cancel() };
        }
    }

    /// On exit: release queued references. The tasks stay in the registry, which shutdown
    /// unwinds.
    fn drain_on_exit(&self) {
        let core = self.core();
        if core.searching {
            core.searching = false;
            self.shared.idle.transition_from_searching();
        }
        core.lifo.take();
        core.spare_tasks.clear();
        core.pinned.clear();
        while core.ring.pop().is_some() {}
        drop(self.me().drain_inbox());
    }
}

/// Wakes worker `idx` for work in its inbox (or shutdown). Not counted as searching.
pub(crate) fn wake_worker(shared: &Shared, idx: usize) {
    let w = &shared.workers[idx];
    if w.sleep.load(SeqCst) == SLEEPING && shared.idle.remove_sleeper(idx, &w.sleep, WOKEN) {
        unpark_thread(shared, idx);
    }
}
