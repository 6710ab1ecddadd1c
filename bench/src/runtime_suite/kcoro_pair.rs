//! `pair_one_worker` and `pair_two_workers`: a pair of coroutines ping-ponging over two
//! rendezvous channels, started on one worker or on both. Started coroutines stay on their
//! worker, so the second case pays a cross-worker wake on every hop; the two rows show
//! what that costs. Placement comes from `SpawnOptions::spread()` (spawns start on the
//! workers in turn) and is checked, so a row never reports the other placement.

use std::time::{Duration, Instant};

use kcoro::SpawnOptions;
use kcoro::chan;

use super::warmup;
use crate::harness::Measurement;

/// Measures `n` round trips (after a warm-up) of a pair on one worker or on two.
pub fn run(n: u64, two_workers: bool) -> Result<Measurement, String> {
    let spread = || SpawnOptions::new().spread();
    let spawn = |opts, f: Party| kcoro::spawn_with(opts, f).map_err(|e| format!("spawn: {e}"));
    let (ping_tx, ping_rx) = chan::rendezvous::<u64>();
    let (pong_tx, pong_rx) = chan::rendezvous::<u64>();
    let total = warmup(n) + n;
    let echo = spawn(
        spread(),
        Box::new(move || {
            for _ in 0..total {
                let v = ping_rx.recv().map_err(|e| format!("echo recv: {e}"))?;
                pong_tx.send(v).map_err(|e| format!("echo send: {e}"))?;
            }
            Ok((kcoro::worker_index(), Duration::ZERO))
        }),
    )?;
    if !two_workers {
        // Spreads go round the workers: one more puts the driver on the echo's worker.
        spawn(spread(), Box::new(|| Ok((None, Duration::ZERO))))?.join().map_err(|e| e.to_string())??;
    }
    let driver = spawn(
        spread(),
        Box::new(move || {
            let round = |i| -> Result<(), String> {
                ping_tx.send(i).map_err(|e| format!("ping: {e}"))?;
                match pong_rx.recv() {
                    Ok(back) if back == i => Ok(()),
                    other => Err(format!("pong: sent {i}, got {other:?}")),
                }
            };
            (0..warmup(n)).try_for_each(round)?;
            let start = Instant::now();
            (0..n).try_for_each(round)?;
            Ok((kcoro::worker_index(), start.elapsed()))
        }),
    )?;
    let (at, elapsed) = driver.join().map_err(|e| e.to_string())??;
    let (echo_at, _) = echo.join().map_err(|e| e.to_string())??;
    if (at != echo_at) != two_workers {
        return Err(format!("placement: driver on worker {at:?}, echo on {echo_at:?}"));
    }
    Ok(Measurement::per_op(elapsed, n))
}

/// A party's body: where it ran, and (for the driver) its timed part.
type Party = Box<dyn FnOnce() -> Result<(Option<usize>, Duration), String> + Send>;
