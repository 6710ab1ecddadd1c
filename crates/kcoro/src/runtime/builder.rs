//! [`Builder`]: a runtime's settings, and `build`, which makes the shared state and starts
//! the workers.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::blocking::BlockingPool;
use super::driver::Driver;
use super::idle::Idle;
use super::inject::Inject;
use super::owned::Owned;
use super::worker::{DEFAULT_SPIN_ROUNDS, Worker, WorkerShared};
use super::{Config, Runtime, Shared, SimTrace, observe, spare};
use crate::coro::stack::{DEFAULT_STACK_SIZE, StackPool};
use crate::error::Error;
use crate::inspect::OnDeadlock;

/// Configures and builds a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    workers: usize,
    stack_size: usize,
    max_stacks: Option<usize>,
    max_blocking_threads: usize,
    migrate: bool,
    spin_rounds: u32,
    name: String,
    seed: Option<u64>,
    detail: bool,
    on_deadlock: Option<(OnDeadlock, Duration)>,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            stack_size: DEFAULT_STACK_SIZE,
            max_stacks: None,
            max_blocking_threads: 512,
            migrate: false,
            spin_rounds: DEFAULT_SPIN_ROUNDS,
            name: "kcoro".into(),
            seed: None,
            detail: detail_from_env(),
            on_deadlock: None,
        }
    }
}

/// `KCORO_COROUTINE_DETAIL=0` (or `off`, `false`) turns coroutine detail off by default,
/// for a deployed binary, without a rebuild.
fn detail_from_env() -> bool {
    !matches!(std::env::var("KCORO_COROUTINE_DETAIL").as_deref(), Ok("0" | "off" | "false"))
}

impl Builder {
    /// Worker threads (default: available cores).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Default coroutine stack size in bytes (default 64 KiB, minimum 16 KiB, rounded up
    /// to whole pages). Every stack has a guard page below it.
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = bytes;
        self
    }

    /// Caps the number of pooled stacks, and so of live coroutines; spawning beyond it
    /// fails with [`StackError::Exhausted`](crate::StackError::Exhausted). Default: no cap
    /// but the OS's.
    pub fn max_stacks(mut self, n: usize) -> Self {
        self.max_stacks = Some(n);
        self
    }

    /// Cap on blocking-pool threads (default 512).
    pub fn max_blocking_threads(mut self, n: usize) -> Self {
        self.max_blocking_threads = n;
        self
    }

    /// How many rounds an idle worker spins before it sleeps (default 16; 0: it sleeps at
    /// once). A round is a `sched_yield`, a look for work and a look at the reactor without
    /// waiting, about a microsecond. Spinning catches work that comes within microseconds
    /// without a sleep and a wake-up (tens of microseconds on a VM whose idle CPU halts):
    /// a request and its reply between two pinned single-worker processes took 9–10 µs
    /// with 16 rounds and 29–37 µs with 8. It also keeps the CPU busy while nothing runs:
    /// `kcoro proxy` with one worker at 10 connections, its backend and load generator on
    /// the other CPU, served more requests per second with less CPU each at 4 rounds than
    /// at 16 (docs/BENCHMARKS.md). A worker partnered with another (a hand-off between
    /// them ended its last sleep) spins longer whatever this says.
    pub fn idle_spin(mut self, rounds: u32) -> Self {
        self.spin_rounds = rounds;
        self
    }

    /// Thread-name prefix (default `kcoro`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Lets a started coroutine resume on any worker (woken coroutines are then stealable).
    ///
    /// # Safety
    /// Every coroutine spawned on this runtime must keep nothing thread-bound on its stack
    /// across a suspension (park, yield, sleep, I/O, join, channel operation): no `Rc`,
    /// no `MutexGuard` or other guard of a thread-affine lock, no reference into a
    /// thread-local, no `RefCell` borrow of one. Rust cannot check this; with the default
    /// (`false`) a started coroutine stays on its first worker and all of this is sound.
    /// Nor is it enough to release every thread-local borrow before suspending: the
    /// compiler may keep a thread-local's address across the suspension, so code that
    /// touches a thread-local in the same function as a suspension (after inlining,
    /// std's and the allocator's too) may use the old thread's copy.
    pub unsafe fn migrate_started(mut self, yes: bool) -> Self {
        self.migrate = yes;
        self
    }

    /// Deterministic simulation: one worker; a virtual clock that stands still while
    /// anything can run and jumps to the next timer when every coroutine is parked; and a
    /// choice among runnable coroutines drawn from `seed`. The same seed and the same
    /// program give the same interleaving, every run. `spawn_blocking` runs its job
    /// inline; socket I/O fails with `Unsupported`. Read time with [`crate::now`]. Overrides
    /// [`workers`](Self::workers). See [`crate::sim`].
    pub fn deterministic(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Whether parks record what they wait on, and workers which coroutine they run, for
    /// [`Handle::coroutines`](super::Handle::coroutines) and deadlock detection (default: on, unless the environment
    /// says `KCORO_COROUTINE_DETAIL=0`). It costs a few plain stores per park and per
    /// resume; off, coroutines show only as parked or not.
    pub fn coroutine_detail(mut self, on: bool) -> Self {
        self.detail = on;
        self
    }

    /// Watches for a global deadlock ([`Handle::deadlock`](super::Handle::deadlock): every coroutine parked, no
    /// timer, no socket, no thread outside with a deadline) and, once the same one has
    /// held for `grace`, does `action`: report it on stderr, fail `block_on`, or call a
    /// function with it. A thread outside kcoro that is about to send is invisible to the
    /// check, hence the grace period; pick it longer than such a thread's pauses. Each
    /// deadlock is acted on once, also when a look in between found none (a thread with a
    /// deadline came and went) and the same parks are found again. Needs
    /// [`coroutine_detail`](Self::coroutine_detail) (the default). Ignored in
    /// deterministic mode, which has its own deadlock handling.
    pub fn on_deadlock(mut self, action: OnDeadlock, grace: Duration) -> Self {
        self.on_deadlock = Some((action, grace));
        self
    }

    /// Starts the workers (which also poll the reactor) and the blocking pool.
    pub fn build(mut self) -> Result<Runtime, Error> {
        if self.seed.is_some() {
            self.workers = 1;
        }
        if self.workers == 0 {
            return Err(Error::Config("workers must be at least 1".into()));
        }
        if self.workers > 4096 {
            return Err(Error::Config(format!("{} workers is more than the 4096 supported", self.workers)));
        }
        crate::coro::overflow::install_handler();
        crate::coro::panic_hook::contain();
        let driver = Driver::start(self.seed.is_some()).map_err(Error::Start)?;
        let mut rings = Vec::with_capacity(self.workers);
        let workers: Box<[WorkerShared]> = (0..self.workers)
            .map(|_| {
                let (ws, ring) = WorkerShared::new();
                rings.push(ring);
                ws
            })
            .collect();
        let shared = Arc::new(Shared {
            workers,
            inject: Inject::default(),
            idle: Idle::new(self.workers),
            stacks: StackPool::new(self.stack_size, self.max_stacks, self.workers),
            driver,
            blocking: BlockingPool::new(self.max_blocking_threads, self.name.clone()),
            owned: Owned::new(self.workers + 1),
            spare_tasks: spare::SpareTasks::default(),
            config: Config {
                migrate: self.migrate,
                spin_rounds: self.spin_rounds,
                detail: self.detail,
                seed: self.seed,
            },
            observer: observe::Observer::default(),
            shutdown: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            external_spawns: AtomicU64::new(0),
            next_spread: AtomicUsize::new(0),
            exited: Mutex::new(0),
            exited_cond: Condvar::new(),
            leaked: AtomicUsize::new(0),
            sim_trace: SimTrace::default(),
            actors: Arc::default(),
        });
        let mut threads = Vec::with_capacity(self.workers);
        for (index, ring) in rings.into_iter().enumerate() {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("{}-worker-{index}", self.name))
                .spawn(move || Worker::run_thread(s, index, ring));
            match spawned {
                Ok(t) => {
                    let _ = shared.workers[index].thread.set(t.thread().clone());
                    threads.push(t);
                }
                Err(e) => {
                    // Count the missing workers as exited so shutdown does not wait for them.
                    for _ in index..self.workers {
                        shared.worker_exited();
                    }
                    let rt = Runtime { shared, threads, down: false };
                    drop(rt);
                    return Err(Error::Start(e));
                }
            }
        }
        if let Some((action, grace)) = self.on_deadlock.take()
            && self.seed.is_none()
        {
            observe::start_watchdog(&shared, action, grace, &self.name);
        }
        Ok(Runtime { shared, threads, down: false })
    }
}
