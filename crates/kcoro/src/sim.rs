//! Deterministic simulation: run a program on a seeded, single-worker runtime with a
//! virtual clock, and search many seeds for an interleaving that breaks it.
//!
//! On a deterministic runtime ([`Builder::deterministic`](crate::Builder::deterministic))
//! the scheduler draws the next coroutine to run from the runnable set with a generator
//! seeded by the seed, select's clause order comes from the same seed, and time moves only
//! when every coroutine is parked (it jumps to the next timer). So the same seed and the
//! same program produce the same interleaving, the same [`Trace`] and the same output,
//! every run, and a failure found under one seed replays under it.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! // A lost update: read, yield, write back. Some interleavings lose increments.
//! let racy = |_seed: u64| {
//!     let counter = Arc::new(Mutex::new(0u32));
//!     let hs: Vec<_> = (0..2)
//!         .map(|_| {
//!             let c = Arc::clone(&counter);
//!             kcoro::spawn(move || {
//!                 let seen = *c.lock().unwrap();
//!                 kcoro::yield_now();
//!                 *c.lock().unwrap() = seen + 1;
//!             })
//!         })
//!         .collect();
//!     hs.into_iter().for_each(|h| h.join().unwrap());
//!     assert_eq!(*counter.lock().unwrap(), 2, "lost update");
//! };
//! let failure = kcoro::sim::explore(0..1000, racy).expect_err("some seed loses an update");
//! // Replays: the same seed fails again.
//! assert!(kcoro::sim::explore([failure.seed], racy).is_err());
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;

use crate::error::panic_message;
use crate::{JoinError, Runtime};

/// A deterministic runtime's schedule fingerprint
/// ([`Handle::sim_trace`](crate::Handle::sim_trace)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Trace {
    /// Coroutine resumes so far.
    pub steps: u64,
    /// A hash of which coroutine resumed at which virtual time, in order.
    pub hash: u64,
    /// Set if the program deadlocked: every coroutine parked with no timer armed. How many
    /// coroutines were stuck, and the virtual time since start. They were unwound.
    pub deadlock: Option<(usize, std::time::Duration)>,
}

/// A seed under which the body failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed with seed {seed}: {message} (replay with kcoro::sim::run({seed}, ..))")]
pub struct Failure {
    /// The seed to replay.
    pub seed: u64,
    /// The panic message.
    pub message: String,
}

/// Runs `f` as the main coroutine of a fresh deterministic runtime seeded with `seed`;
/// returns its value and the schedule's [`Trace`].
///
/// # Panics
/// Re-raises a panic of `f`; panics on a deadlock (every coroutine parked with no timer
/// armed: the stuck coroutines are unwound) or if the runtime cannot start.
pub fn run<F, T>(seed: u64, f: F) -> (T, Trace)
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let rt = match Runtime::builder().deterministic(seed).name("kcoro-sim").build() {
        Ok(rt) => rt,
        Err(e) => panic!("kcoro::sim::run: cannot start a deterministic runtime: {e}"),
    };
    let joined = rt.spawn(f).join();
    let trace = rt.handle().sim_trace().unwrap_or(Trace { steps: 0, hash: 0, deadlock: None });
    match joined {
        Ok(v) => (v, trace),
        Err(JoinError::Panicked(p)) => resume_unwind(p),
        Err(e) => match trace.deadlock {
            Some((n, at)) => panic!(
                "deadlock under seed {seed}: all {n} coroutines parked with no timer armed, at virtual time {at:?}"
            ),
            None => panic!("kcoro::sim::run: the main coroutine did not finish: {e}"),
        },
    }
}

/// Runs `body(seed)` under each seed on a fresh deterministic runtime and stops at the
/// first that panics, returning it. `Ok(n)`: all `n` seeds passed.
pub fn explore<F>(seeds: impl IntoIterator<Item = u64>, body: F) -> Result<usize, Failure>
where
    F: Fn(u64) + Send + Sync + 'static,
{
    let body = Arc::new(body);
    let mut passed = 0;
    for seed in seeds {
        let b = Arc::clone(&body);
        match catch_unwind(AssertUnwindSafe(|| run(seed, move || b(seed)))) {
            Ok(_) => passed += 1,
            Err(p) => return Err(Failure { seed, message: panic_message(&*p).to_owned() }),
        }
    }
    Ok(passed)
}

/// [`explore`], panicking with the failing seed (printed for replay) if one fails.
///
/// # Panics
/// With the first failing seed and its panic message.
pub fn check<F>(seeds: impl IntoIterator<Item = u64>, body: F)
where
    F: Fn(u64) + Send + Sync + 'static,
{
    if let Err(f) = explore(seeds, body) {
        eprintln!("kcoro::sim::check: {f}");
        resume_unwind(Box::new(format!("kcoro::sim::check: {f}")));
    }
}
