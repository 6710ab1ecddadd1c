//! `runtime` suite, may rows: may's process-wide scheduler configured once per child
//! (two workers, [`MAY_STACK_WORDS`] stacks), the driver running in a may coroutine.
//!
//! may makes every spawn `unsafe`: a coroutine may resume on another worker thread, so
//! it must not hold thread-local references or `!Send` state across a suspension. The
//! closures below hold only `Arc`s of atomics and may's own handles, which are `Send`.

use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use may::coroutine::{self, Coroutine, JoinHandle};

use super::{MAY_STACK_WORDS, SLEEP, Stall, WORKERS, bytes_per, unknown, warmup};
use crate::harness::{self, Measurement};

/// Runs `case` with `n` operations on may's scheduler.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    configure();
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
            pingpong(warmup(n))?;
            Ok(Measurement::per_op(pingpong(n)?, n))
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
        "spawn_1m_parked" => drive(move || spawn_parked(n)),
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

/// Runs `body` as a may coroutine and waits for it on this thread.
fn drive(body: impl FnOnce() -> Result<Measurement, String> + Send + 'static) -> Result<Measurement, String> {
    spawn(body).join().map_err(|p| format!("may driver panicked: {}", panic_text(&*p)))?
}

/// `may::coroutine::spawn` for the closures of this file.
fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    // SAFETY: every closure spawned here captures only `Send` values (atomics in `Arc`s,
    // may `Coroutine` handles, counts) and touches no thread-local storage, so resuming
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

/// The same turn protocol as the kcoro rows, over may's `park`/`unpark`.
fn pingpong(n: u64) -> Result<Duration, String> {
    let turn = Arc::new(AtomicU64::new(0));
    let slots: Arc<[OnceLock<Coroutine>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
    let (t1, s1) = (turn.clone(), slots.clone());
    let b = spawn(move || pingpong_side(1, n, &t1, &s1));
    let elapsed = pingpong_side(0, n, &turn, &slots);
    b.join().map_err(|p| format!("side B panicked: {}", panic_text(&*p)))?;
    Ok(elapsed)
}

fn pingpong_side(me: usize, n: u64, turn: &AtomicU64, slots: &[OnceLock<Coroutine>; 2]) -> Duration {
    let _ = slots[me].set(coroutine::current());
    let other = loop {
        if let Some(co) = slots[1 - me].get() {
            break co.clone();
        }
        coroutine::yield_now();
    };
    let wait_for = |t: u64| {
        // Acquire: pairs with the Release store of the other side.
        while turn.load(Ordering::Acquire) != t {
            coroutine::park();
        }
    };
    let start = Instant::now();
    for i in 0..n {
        let mine = 2 * i + me as u64;
        wait_for(mine);
        turn.store(mine + 1, Ordering::Release);
        other.unpark();
    }
    if me == 0 {
        wait_for(2 * n);
    }
    start.elapsed()
}

/// The same protocol as the kcoro rows: publish the handle, count, park until released.
fn spawn_parked(n: u64) -> Result<Measurement, String> {
    let base = harness::proc_status_bytes("VmRSS")?;
    let release = Arc::new(AtomicBool::new(false));
    let parked = Arc::new(AtomicU64::new(0));
    let slots: Arc<Vec<OnceLock<Coroutine>>> = Arc::new((0..n).map(|_| OnceLock::new()).collect());

    let start = Instant::now();
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let (release, parked, slots) = (release.clone(), parked.clone(), slots.clone());
        handles.push(spawn(move || {
            let _ = slots[i].set(coroutine::current());
            parked.fetch_add(1, Ordering::Release);
            // Acquire: pairs with the Release store of `release` by the driver.
            while !release.load(Ordering::Acquire) {
                coroutine::park();
            }
        }));
    }
    // Acquire: pairs with each coroutine's Release increment, so its slot is visible.
    let mut stall = Stall::new();
    while parked.load(Ordering::Acquire) < n && !stall.stuck(parked.load(Ordering::Relaxed)) {
        coroutine::sleep(Duration::from_millis(1));
    }
    let peak = harness::proc_status_bytes("VmHWM")?;

    release.store(true, Ordering::Release);
    for slot in slots.iter() {
        if let Some(co) = slot.get() {
            co.unpark();
        }
    }
    let mut first_err = None;
    for h in handles {
        if let Err(p) = h.join() {
            first_err.get_or_insert_with(|| format!("join failed: {}", panic_text(&*p)));
        }
    }
    stall.check(parked.load(Ordering::Relaxed), n, first_err)?;
    let mut m = Measurement::per_op(start.elapsed(), n);
    m.bytes_per_op = Some(bytes_per(base, peak, n));
    Ok(m)
}

/// The message of a panic payload.
fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}
