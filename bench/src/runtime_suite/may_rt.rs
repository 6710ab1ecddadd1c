//! `runtime` suite, may rows: may's process-wide scheduler configured once per child
//! (two workers, [`MAY_STACK_WORDS`] stacks), the driver running in a may coroutine.
//! The `chan` suite's may rows run through [`drive`] and [`May`] too.
//!
//! may makes every spawn `unsafe`: a coroutine may resume on another worker thread, so
//! it must not hold thread-local references or `!Send` state across a suspension. The
//! closures spawned here hold only `Arc`s of atomics, counts and may's own handles and
//! channel ends, which are `Send`.

use std::sync::Once;
use std::time::{Duration, Instant};

use may::coroutine::{self, Coroutine, JoinHandle};

use super::stackful::{self, Stackful};
use super::{MAY_STACK_WORDS, SLEEP, WORKERS, unknown, warmup};
use crate::harness::{Measurement, panic_text};

/// Runs `case` with `n` operations on may's scheduler.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    match case {
        "yield" => drive(move || {
            yields(warmup(n));
            let start = Instant::now();
            yields(n);
            Ok(Measurement::per_op(start.elapsed(), n))
        }),
        "spawn_join" => drive(move || {
            spawn_join(warmup(n))?;
            let start = Instant::now();
            spawn_join(n)?;
            Ok(Measurement::per_op(start.elapsed(), n))
        }),
        "pingpong_park" => drive(move || {
            stackful::pingpong::<May>(warmup(n))?;
            Ok(Measurement::per_op(stackful::pingpong::<May>(n)?, n))
        }),
        "sleep_1ms_accuracy" => drive(move || {
            let mut over = Duration::ZERO;
            for _ in 0..n {
                let start = Instant::now();
                coroutine::sleep(SLEEP);
                over += start.elapsed().saturating_sub(SLEEP);
            }
            Ok(Measurement::per_op(over, n))
        }),
        "spawn_1m_parked" => drive(move || stackful::spawn_parked::<May>(n)),
        _ => Err(unknown(case)),
    }
}

/// Sets may's configuration before its scheduler starts (it starts on first spawn).
fn configure() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        may::config().set_workers(WORKERS).set_stack_size(MAY_STACK_WORDS);
    });
}

/// Configures may's scheduler if this is the first use, runs `body` as a may coroutine
/// and waits for it on this thread.
pub fn drive(
    body: impl FnOnce() -> Result<Measurement, String> + Send + 'static,
) -> Result<Measurement, String> {
    configure();
    spawn(body).join().map_err(|p| format!("may driver panicked: {}", panic_text(&*p)))?
}

/// `may::coroutine::spawn` for the closures of this file and of the generic cases that
/// [`May`] runs (`stackful.rs` here, `chan_suite/blocking.rs`).
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    // SAFETY: every closure spawned here captures only `Send` values (atomics in `Arc`s,
    // may `Coroutine` handles and channel ends, counts) and touches no thread-local
    // storage, so resuming
    // on another worker thread cannot invalidate anything it holds across a suspension.
    unsafe { coroutine::spawn(f) }
}

fn yields(n: u64) {
    for _ in 0..n {
        coroutine::yield_now();
    }
}

fn spawn_join(n: u64) -> Result<(), String> {
    for _ in 0..n {
        spawn(|| ()).join().map_err(|p| format!("join failed: {}", panic_text(&*p)))?;
    }
    Ok(())
}

/// may's side of the shared park-based cases.
pub struct May;

impl Stackful for May {
    type Handle = Coroutine;
    type Join = JoinHandle<()>;

    fn current() -> Coroutine {
        coroutine::current()
    }
    fn park() {
        coroutine::park();
    }
    fn unpark(h: &Coroutine) {
        h.unpark();
    }
    fn yield_now() {
        coroutine::yield_now();
    }
    fn sleep(d: Duration) {
        coroutine::sleep(d);
    }
    fn spawn(f: impl FnOnce() + Send + 'static) -> Self::Join {
        spawn(f)
    }
    fn join(j: Self::Join) -> Result<(), String> {
        j.join().map_err(|p| panic_text(&*p))
    }
}
