//! `runtime` suite, kcoro rows: a fresh `Runtime` with two workers per run, the driver
//! running as the `block_on` coroutine, and the runtime dropped (shut down) at the end.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kcoro::park::{self, Unparker};

use super::{SLEEP, Stall, WORKERS, bytes_per, unknown, warmup};
use crate::harness::{self, Measurement};

/// Runs `case` with `n` operations on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    let rt = kcoro::Runtime::builder()
        .workers(WORKERS)
        .build()
        .map_err(|e| format!("kcoro: cannot build runtime: {e}"))?;
    let out = match case {
        "yield" => rt.block_on(move || {
            yields(warmup(n));
            let start = Instant::now();
            yields(n);
            Ok(Measurement::per_op(start.elapsed(), n))
        }),
        "spawn_join" => rt.block_on(move || {
            spawn_join(warmup(n))?;
            let start = Instant::now();
            spawn_join(n)?;
            Ok(Measurement::per_op(start.elapsed(), n))
        }),
        "pingpong_park" => rt.block_on(move || {
            pingpong(warmup(n))?;
            Ok(Measurement::per_op(pingpong(n)?, n))
        }),
        "sleep_1ms_accuracy" => rt.block_on(move || {
            let mut over = Duration::ZERO;
            for _ in 0..n {
                let start = Instant::now();
                kcoro::sleep(SLEEP);
                over += start.elapsed().saturating_sub(SLEEP);
            }
            Ok(Measurement::per_op(over, n))
        }),
        "spawn_1m_parked" => rt.block_on(move || spawn_parked(n)),
        _ => Err(unknown(case)),
    };
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

/// `n` round trips between two coroutines over park/unpark and a turn counter: side
/// `s` owns the turns `2i + s`, waits for its turn, passes it on and unparks the other.
/// As in the Go peer, the measuring coroutine is side 0 and spawns side 1.
/// Returns the time side 0 measured from both being ready to the last turn coming back.
fn pingpong(n: u64) -> Result<Duration, String> {
    let turn = Arc::new(AtomicU64::new(0));
    let slots: Arc<[OnceLock<Unparker>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
    let (t1, s1) = (turn.clone(), slots.clone());
    let b = kcoro::spawn(move || pingpong_side(1, n, &t1, &s1));
    let elapsed = pingpong_side(0, n, &turn, &slots);
    b.join().map_err(|e| format!("side B failed: {e}"))?;
    Ok(elapsed)
}

fn pingpong_side(me: usize, n: u64, turn: &AtomicU64, slots: &[OnceLock<Unparker>; 2]) -> Duration {
    let _ = slots[me].set(park::current());
    let other = loop {
        if let Some(u) = slots[1 - me].get() {
            break u.clone();
        }
        kcoro::yield_now();
    };
    let wait_for = |t: u64| {
        // Acquire: pairs with the Release store of the other side.
        while turn.load(Ordering::Acquire) != t {
            park::park();
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

/// Spawns `n` coroutines that each publish their `Unparker`, count themselves parked
/// and park until released; samples peak RSS once all are parked, then wakes and joins
/// them all.
fn spawn_parked(n: u64) -> Result<Measurement, String> {
    let base = harness::proc_status_bytes("VmRSS")?;
    let release = Arc::new(AtomicBool::new(false));
    let parked = Arc::new(AtomicU64::new(0));
    let slots: Arc<Vec<OnceLock<Unparker>>> = Arc::new((0..n).map(|_| OnceLock::new()).collect());

    let start = Instant::now();
    let mut handles = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let (release, parked, slots) = (release.clone(), parked.clone(), slots.clone());
        handles.push(kcoro::spawn(move || {
            let _ = slots[i].set(park::current());
            parked.fetch_add(1, Ordering::Release);
            // Acquire: pairs with the Release store of `release` by the driver.
            while !release.load(Ordering::Acquire) {
                park::park();
            }
        }));
    }
    // Acquire: pairs with each coroutine's Release increment, so its slot is visible.
    let mut stall = Stall::new();
    while parked.load(Ordering::Acquire) < n && !stall.stuck(parked.load(Ordering::Relaxed)) {
        kcoro::sleep(Duration::from_millis(1));
    }
    let peak = harness::proc_status_bytes("VmHWM")?;

    release.store(true, Ordering::Release);
    for slot in slots.iter() {
        if let Some(u) = slot.get() {
            u.unpark();
        }
    }
    let mut first_err = None;
    for h in handles {
        if let Err(e) = h.join() {
            first_err.get_or_insert_with(|| format!("join failed: {e}"));
        }
    }
    stall.check(parked.load(Ordering::Relaxed), n, first_err)?;
    let mut m = Measurement::per_op(start.elapsed(), n);
    m.bytes_per_op = Some(bytes_per(base, peak, n));
    Ok(m)
}
