//! How far apart the machine's two CPUs are right now: the round trip of one cache line
//! between two spinning threads.
//!
//! On the 2-vCPU VMs we measure on, this is bimodal and changes while the machine runs:
//! about 65 ns when the host keeps the two vCPUs close (one core complex), about 350 ns
//! when it places them apart. Every row where coroutines on two workers talk follows it
//! (a scope of 100 children: ~40 µs near, ~120 µs far), so the harness measures it before
//! each run and prints it beside rows whose runs disagree: a reader can tell the host's
//! placement from the runtime's.

use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::Instant;

use crate::net_suite::sys::{allowed_cpus, pin_current_thread};

/// Round trips per probe: a few milliseconds.
const ROUND_TRIPS: u64 = 20_000;
/// Round trips before the clock starts: both threads running and the line warm.
const WARM_UP: u64 = 2_000;

/// Nanoseconds per round trip of a cache line between two threads pinned to the first
/// two CPUs this process may use (each waits for the other's increment). `None` if there
/// are fewer than two, or pinning fails.
pub fn round_trip_ns() -> Option<f64> {
    let cpus = allowed_cpus().ok()?;
    let (&near, &far) = (cpus.first()?, cpus.get(1)?);
    let line = AtomicU64::new(0);
    std::thread::scope(|s| {
        let echo = s.spawn(|| {
            pin_current_thread(far).ok()?;
            for i in 0..ROUND_TRIPS {
                wait_for(&line, 2 * i + 1);
                line.store(2 * i + 2, Release);
            }
            Some(())
        });
        let timer = s.spawn(|| {
            // Pinned or not, the echo needs its replies: the loop runs either way.
            let pinned = pin_current_thread(near).is_ok();
            let mut start = Instant::now();
            for i in 0..ROUND_TRIPS {
                if i == WARM_UP {
                    start = Instant::now();
                }
                line.store(2 * i + 1, Release);
                wait_for(&line, 2 * i + 2);
            }
            pinned.then(|| start.elapsed().as_nanos() as f64 / (ROUND_TRIPS - WARM_UP) as f64)
        });
        let ns = timer.join().ok()??;
        echo.join().ok()??;
        Some(ns)
    })
}

fn wait_for(line: &AtomicU64, value: u64) {
    let mut spins = 0u32;
    while line.load(Acquire) != value {
        spins += 1;
        if spins.is_multiple_of(4096) {
            // The other thread is not running (not yet on its CPU): let it.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_round_trip_is_measured_when_two_cpus_are_allowed() {
        let two = super::allowed_cpus().is_ok_and(|c| c.len() >= 2);
        match super::round_trip_ns() {
            Some(ns) => assert!(ns.is_finite() && ns > 0.0, "{ns} ns per round trip"),
            None => assert!(!two, "two CPUs are allowed, yet no round trip was measured"),
        }
    }
}
