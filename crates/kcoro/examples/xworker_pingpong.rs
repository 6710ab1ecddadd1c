//! What pinning started coroutines to their worker costs a ping-pong pair that ended up on
//! two different workers, with and without `Builder::migrate_started`.
//!
//! `cargo run --release -p kcoro --example xworker_pingpong`
//!
//! The two sides start on workers 0 and 1 (`SpawnOptions::on_worker`), then exchange up
//! to `ROUNDS` turns over park/unpark, stopping early after `BUDGET` so the run ends in
//! seconds on a loaded machine too (where each cross-thread wake can wait for the OS to
//! run the sleeping worker). Pinned (the default), every wake crosses threads; with
//! migration the woken side moves to the waker's worker after the first exchange.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kcoro::SpawnOptions;
use kcoro::park::{self, Unparker};

const ROUNDS: u64 = 100_000;
const BUDGET: Duration = Duration::from_secs(2);

/// What both sides share.
#[derive(Default)]
struct Pair {
    turn: AtomicU64,
    /// Set by side 0 when the budget is spent; both sides stop after that round.
    stop: AtomicBool,
    unparkers: [OnceLock<Unparker>; 2],
    threads: [OnceLock<String>; 2],
}

/// One side's loop: its time and the rounds it played.
fn side(me: usize, pair: &Pair) -> (Duration, u64) {
    let _ = pair.unparkers[me].set(park::current());
    let _ = pair.threads[me].set(std::thread::current().name().unwrap_or("?").to_string());
    let other = loop {
        match pair.unparkers[1 - me].get() {
            Some(u) => break u.clone(),
            None => kcoro::yield_now(),
        }
    };
    let start = Instant::now();
    for round in 0..ROUNDS {
        let mine = 2 * round + me as u64;
        while pair.turn.load(Ordering::Acquire) != mine {
            park::park();
        }
        if me == 0 && round % 64 == 63 && start.elapsed() > BUDGET {
            pair.stop.store(true, Ordering::Relaxed);
        }
        // Read before passing the turn: side 1 sees side 0's flag through `turn`.
        let stopping = pair.stop.load(Ordering::Relaxed);
        pair.turn.store(mine + 1, Ordering::Release);
        other.unpark();
        if stopping {
            return (start.elapsed(), round + 1);
        }
    }
    (start.elapsed(), ROUNDS)
}

/// One pair on two workers: side 0's time and rounds, or `None` if it failed.
fn play() -> Option<(Duration, u64)> {
    let pair = Arc::new(Pair::default());
    let spawn_side = |me: usize| {
        let pair = Arc::clone(&pair);
        kcoro::spawn_with(SpawnOptions::new().on_worker(me), move || side(me, &pair))
    };
    let (a, b) = (spawn_side(0).ok()?, spawn_side(1).ok()?);
    let result = a.join().ok()?;
    b.join().ok()?;
    assert_ne!(pair.threads[0].get(), pair.threads[1].get(), "the sides ran on two workers");
    Some(result)
}

fn measure(migrate: bool) -> Option<(Duration, u64)> {
    let builder = kcoro::Runtime::builder().workers(2);
    // SAFETY: the sides keep only Send data (Arcs, an Unparker, integers) across parks.
    let builder = if migrate { unsafe { builder.migrate_started(true) } } else { builder };
    let rt = builder.build().ok()?;
    rt.block_on(play)
}

fn main() {
    for (label, migrate) in [("pinned (default)", false), ("migrate_started", true)] {
        match measure(migrate) {
            Some((elapsed, rounds)) => println!(
                "{label:>17}: {:.0} ns per round trip across workers ({rounds} round trips)",
                elapsed.as_nanos() as f64 / rounds as f64
            ),
            None => {
                eprintln!("{label:>17}: the pair failed");
                std::process::exit(1);
            }
        }
    }
}
