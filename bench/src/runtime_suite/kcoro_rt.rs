//! `runtime` suite, kcoro rows: a fresh `Runtime` with two workers per run, the driver
//! running as the `block_on` coroutine, and the runtime dropped (shut down) at the end.
//! The `chan` and `select` suites' kcoro rows run through [`drive`] and [`Kcoro`] too.

use std::time::{Duration, Instant};

use kcoro::park::{self, Unparker};

use super::stackful::{self, Stackful};
use super::{SLEEP, WORKERS, unknown, warmup};
use crate::harness::Measurement;

/// Runs `case` with `n` operations on a new runtime.
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
            stackful::pingpong::<Kcoro>(warmup(n))?;
            Ok(Measurement::per_op(stackful::pingpong::<Kcoro>(n)?, n))
        }),
        "sleep_1ms_accuracy" => drive(move || {
            let mut over = Duration::ZERO;
            for _ in 0..n {
                let start = Instant::now();
                kcoro::sleep(SLEEP);
                over += start.elapsed().saturating_sub(SLEEP);
            }
            Ok(Measurement::per_op(over, n))
        }),
        "spawn_1m_parked" => drive(move || stackful::spawn_parked::<Kcoro>(n)),
        _ => Err(unknown(case)),
    }
}

/// Builds a two-worker runtime, runs `body` as its `block_on` coroutine and drops (shuts
/// down) the runtime.
pub fn drive(
    body: impl FnOnce() -> Result<Measurement, String> + Send + 'static,
) -> Result<Measurement, String> {
    let rt = kcoro::Runtime::builder()
        .workers(WORKERS)
        .build()
        .map_err(|e| format!("kcoro: cannot build runtime: {e}"))?;
    let out = rt.block_on(body);
    drop(rt);
    out
}

fn yields(n: u64) {
    for _ in 0..n {
        kcoro::yield_now();
    }
}

fn spawn_join(n: u64) -> Result<(), String> {
    for _ in 0..n {
        kcoro::spawn(|| ()).join().map_err(|e| format!("join failed: {e}"))?;
    }
    Ok(())
}

/// kcoro's side of the shared park-based cases.
pub struct Kcoro;

impl Stackful for Kcoro {
    type Handle = Unparker;
    type Join = kcoro::JoinHandle<()>;

    fn current() -> Unparker {
        park::current()
    }
    fn park() {
        park::park();
    }
    fn unpark(h: &Unparker) {
        h.unpark();
    }
    fn yield_now() {
        kcoro::yield_now();
    }
    fn sleep(d: Duration) {
        kcoro::sleep(d);
    }
    fn spawn(f: impl FnOnce() + Send + 'static) -> Self::Join {
        kcoro::spawn(f)
    }
    fn join(j: Self::Join) -> Result<(), String> {
        j.join().map_err(|e| e.to_string())
    }
}
