//! kcoro: stackful coroutines on an M:N work-stealing scheduler, with a timer wheel,
//! socket I/O and a parking primitive that serves coroutines, threads and futures alike.
//!
//! ```
//! use std::time::Duration;
//!
//! let total = kcoro::run(|| {
//!     let handles: Vec<_> = (0..100u64)
//!         .map(|i| kcoro::spawn(move || {
//!             kcoro::sleep(Duration::from_millis(1));
//!             i * 2
//!         }))
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
//! });
//! assert_eq!(total, 9900);
//! ```
//!
//! A coroutine that has started stays on its worker thread (so `Rc`, guards and
//! thread-locals on its stack are sound across suspensions); coroutines that have not yet
//! started are stolen by idle workers. See `docs/ARCHITECTURE.md`.

#![warn(missing_docs)]

pub mod actor;
mod backoff;
#[cfg(feature = "bytes")]
pub mod buf;
pub mod chan;
pub mod compat;
pub mod coro;
mod error;
pub mod future;
pub mod inspect;
mod loom;
pub mod monitor;
pub mod net;
pub mod park;
mod rand;
mod runtime;
pub mod scope;
pub mod sim;
pub mod sync;
pub mod zcopy;

use std::time::{Duration, Instant};

pub use coro::stack::{GuardMode, guard_mode};
pub use error::{Error, JoinError, StackError, code};
pub use runtime::join::JoinHandle;
pub use runtime::{Builder, Handle, Runtime, SpawnOptions, Stats, TimerId, WorkerCounters, worker_index};
pub use scope::{Scope, ScopeError, ScopedJoinHandle, produce, scope, scope_with, scope_with_deadline};

/// The README's tour compiles and runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;

/// So do the examples of `docs/ZERO_COPY.md`.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/ZERO_COPY.md")]
struct ZeroCopyDoctests;

/// Runs `f` as the main coroutine of a new default runtime, returns its value, and shuts
/// the runtime down.
///
/// # Panics
/// If the runtime cannot start, or re-raises a panic of `f`.
#[track_caller]
pub fn run<F, T>(f: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    match Runtime::new() {
        Ok(rt) => rt.block_on(f),
        Err(e) => panic!("kcoro::run: cannot start the runtime: {e}"),
    }
}

fn current_handle(what: &str) -> Handle {
    Handle::try_current().unwrap_or_else(|| panic!("kcoro::{what} called outside a kcoro runtime"))
}

/// Spawns a coroutine on the current runtime. If it cannot be spawned (stacks exhausted,
/// shutting down), `join` on the handle returns [`JoinError::Spawn`]; use [`try_spawn`] to
/// learn it at once.
///
/// # Panics
/// Outside a kcoro runtime (use [`Handle::spawn`] from plain threads).
#[track_caller]
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    current_handle("spawn").spawn(f)
}

/// Spawns a coroutine, reporting failure at once.
#[track_caller]
pub fn try_spawn<F, T>(f: F) -> Result<JoinHandle<T>, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    spawn_with(SpawnOptions::default(), f)
}

/// Spawns a coroutine with options (stack size, name).
#[track_caller]
pub fn spawn_with<F, T>(opts: SpawnOptions, f: F) -> Result<JoinHandle<T>, Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Handle::try_current().ok_or(Error::NoRuntime)?.spawn_with(opts, f)
}

/// Runs a blocking function on the runtime's blocking pool; join the handle for its value.
///
/// # Panics
/// Outside a kcoro runtime.
pub fn spawn_blocking<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    current_handle("spawn_blocking").spawn_blocking(f)
}

/// Lets other coroutines run; this one goes to the back of its worker's queue.
/// On a plain thread, `std::thread::yield_now`.
#[inline]
pub fn yield_now() {
    match runtime::context::current_task_ptr() {
        // SAFETY: the running task is alive while it runs.
        Some(t) => unsafe { t.as_ref() }.yield_now(),
        None => std::thread::yield_now(),
    }
}

/// The runtime's clock: the virtual clock on a deterministic runtime
/// ([`Builder::deterministic`]), `Instant::now()` everywhere else. Deadlines given to kcoro
/// (timeouts, sleeps, scope deadlines) are read against it.
pub fn now() -> Instant {
    runtime::now()
}

/// Sleeps for `d`: parks the coroutine on the timer wheel (the thread, outside one).
/// Never returns early.
pub fn sleep(d: Duration) {
    match now().checked_add(d) {
        Some(deadline) => sleep_until(deadline),
        None => loop {
            park::park();
        },
    }
}

/// Sleeps until `deadline`; never returns early.
pub fn sleep_until(deadline: Instant) {
    while !park::park_deadline_as(deadline, coro::wait::Wait::SLEEP) {}
}

/// Sleeps for `d` unless the caller's ambient cancel token (its scope's, see
/// [`sync::current_token`]) fires first: then returns `Err(Cancelled)` at once.
/// Without an ambient token, the same as [`sleep`].
pub fn delay(d: Duration) -> Result<(), sync::Cancelled> {
    match now().checked_add(d) {
        Some(deadline) => delay_until(deadline),
        None => match sync::current_token() {
            Some(t) => {
                t.cancelled();
                Err(sync::Cancelled)
            }
            None => loop {
                park::park();
            },
        },
    }
}

/// [`delay`] until `deadline`.
pub fn delay_until(deadline: Instant) -> Result<(), sync::Cancelled> {
    match sync::current_token() {
        Some(t) if t.cancelled_deadline(deadline) => Err(sync::Cancelled),
        Some(_) => Ok(()),
        None => {
            sleep_until(deadline);
            Ok(())
        }
    }
}
