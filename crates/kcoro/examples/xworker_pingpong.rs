//! What pinning started coroutines to their worker costs a ping-pong pair that ended up on
//! two different workers, with and without `Builder::migrate_started`.
//!
//! `cargo run --release -p kcoro --example xworker_pingpong`
//!
//! Both sides are spawned from the main coroutine until the scheduler happens to start
//! them on different workers (an idle worker steals one), then they exchange `ROUNDS`
//! turns over park/unpark. Pinned (the default), every wake crosses threads; with
//! migration the woken side moves to the waker's worker after the first exchange.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kcoro::park::{self, Unparker};

const ROUNDS: u64 = 100_000;

fn side(
    me: usize,
    turn: &AtomicU64,
    slots: &[OnceLock<Unparker>; 2],
    threads: &[OnceLock<String>; 2],
) -> Duration {
    let _ = slots[me].set(park::current());
    let _ = threads[me].set(std::thread::current().name().unwrap_or("?").to_string());
    let other = loop {
        match slots[1 - me].get() {
            Some(u) => break u.clone(),
            None => kcoro::yield_now(),
        }
    };
    let start = Instant::now();
    for i in 0..ROUNDS {
        let mine = 2 * i + me as u64;
        while turn.load(Ordering::Acquire) != mine {
            park::park();
        }
        turn.store(mine + 1, Ordering::Release);
        other.unpark();
    }
    start.elapsed()
}

/// One pair; `None` if both sides started on the same worker.
fn pair() -> Option<Duration> {
    let turn = Arc::new(AtomicU64::new(0));
    let slots: Arc<[OnceLock<Unparker>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
    let threads: Arc<[OnceLock<String>; 2]> = Arc::new([OnceLock::new(), OnceLock::new()]);
    let spawn_side = |me| {
        let (t, s, th) = (Arc::clone(&turn), Arc::clone(&slots), Arc::clone(&threads));
        kcoro::spawn(move || side(me, &t, &s, &th))
    };
    let (a, b) = (spawn_side(0), spawn_side(1));
    let elapsed = a.join().ok()?;
    b.join().ok()?;
    (threads[0].get() != threads[1].get()).then_some(elapsed)
}

fn measure(migrate: bool) -> Option<Duration> {
    let builder = kcoro::Runtime::builder().workers(2);
    // SAFETY: the sides keep only Send data (Arcs, an Unparker, integers) across parks.
    let builder = if migrate { unsafe { builder.migrate_started(true) } } else { builder };
    let rt = builder.build().ok()?;
    rt.block_on(|| (0..50).find_map(|_| pair()))
}

fn main() {
    for (label, migrate) in [("pinned (default)", false), ("migrate_started", true)] {
        match measure(migrate) {
            Some(d) => println!(
                "{label:>17}: {:.0} ns per round trip across workers",
                d.as_nanos() as f64 / ROUNDS as f64
            ),
            None => println!("{label:>17}: the pair never started on two workers in 50 tries"),
        }
    }
}
