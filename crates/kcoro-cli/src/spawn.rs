//! `kcoro demo spawn`: the original demo. Spawns 100,000 coroutines that sleep on the timer
//! wheel, yield and join, then passes a token around a ring of 1,000 coroutines, and
//! prints what it measured.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kcoro::park::Unparker;

use crate::args::SpawnArgs;

pub fn run(args: &SpawnArgs) -> ExitCode {
    let mut builder = kcoro::Runtime::builder();
    if let Some(w) = args.runtime_workers {
        builder = builder.workers(w as usize);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kcoro: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let n = args.coroutines;
    let rss_before = rss_kib();
    let woke = Arc::new(AtomicU64::new(0));
    let w2 = Arc::clone(&woke);
    let started = Instant::now();
    let report = rt.block_on(move || {
        // Phase 1: spawn N coroutines that each sleep 1–10 ms, yield, and return a value.
        let t = Instant::now();
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let woke = Arc::clone(&w2);
                kcoro::spawn(move || {
                    kcoro::sleep(Duration::from_millis(1 + i % 10));
                    woke.fetch_add(1, Relaxed);
                    kcoro::yield_now();
                    i
                })
            })
            .collect();
        let spawn_time = t.elapsed();
        let peak_parked = kcoro::Handle::try_current().map_or(0, |h| h.stats().parked);
        let rss_during = rss_kib();
        let sum: u64 = handles.into_iter().map(|h| h.join().unwrap_or(0)).sum();
        let phase1 = t.elapsed();
        // Phase 2: a ring of 1,000 coroutines passing a token 100 times around.
        let t = Instant::now();
        let hops = token_ring(1_000, 100);
        (spawn_time, phase1, sum, peak_parked, rss_during, hops, t.elapsed())
    });
    let (spawn_time, phase1, sum, peak_parked, rss_during, hops, ring_time) = report;
    let total = started.elapsed();
    let st = rt.stats();
    let expect = n * (n - 1) / 2;
    println!("kcoro demo spawn on {} workers", st.workers);
    println!(
        "  spawned {n} coroutines in {:.1} ms ({:.0} ns each); {} parked on the timer wheel at once",
        ms(spawn_time),
        spawn_time.as_nanos() as f64 / n as f64,
        peak_parked
    );
    println!(
        "  all slept 1-10 ms, woke ({}), yielded and joined in {:.1} ms",
        woke.load(Relaxed),
        ms(phase1)
    );
    if let (Some(a), Some(b)) = (rss_before, rss_during) {
        println!(
            "  resident memory while parked: +{} KiB ({:.2} KiB per coroutine)",
            b - a,
            (b - a) as f64 / n as f64
        );
    }
    println!(
        "  token ring: {hops} hand-offs between 1000 coroutines in {:.1} ms ({:.0} ns per hop)",
        ms(ring_time),
        ring_time.as_nanos() as f64 / hops.max(1) as f64
    );
    println!(
        "  stats: spawned {} completed {} resumes {} steals {}/{} probes, timer fires {}, stacks {} in {} mappings",
        st.spawned,
        st.completed,
        st.resumes,
        st.steals,
        st.steal_probes,
        st.timer_fires,
        st.stacks_allocated,
        st.stack_mappings
    );
    println!("  total {:.1} ms", ms(total));
    if sum != expect {
        eprintln!("kcoro: wrong result: sum {sum}, expected {expect}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// `size` coroutines in a ring, each waiting for its turn on a shared counter and waking
/// the next one, `laps` times around. Returns the number of hand-offs.
fn token_ring(size: usize, laps: u64) -> u64 {
    let turn = Arc::new(AtomicU64::new(0));
    let total = size as u64 * laps;
    let slots: Arc<Vec<OnceLock<Unparker>>> = Arc::new((0..size).map(|_| OnceLock::new()).collect());
    let handles: Vec<_> = (0..size)
        .map(|i| {
            let (turn, slots) = (Arc::clone(&turn), Arc::clone(&slots));
            kcoro::spawn(move || {
                let _ = slots[i].set(kcoro::park::current());
                let next = loop {
                    // The neighbour publishes its unparker when it first runs.
                    match slots[(i + 1) % size].get() {
                        Some(u) => break u.clone(),
                        None => kcoro::yield_now(),
                    }
                };
                let mut mine = i as u64;
                while mine < total {
                    while turn.load(Relaxed) != mine {
                        kcoro::park::park();
                    }
                    turn.store(mine + 1, Relaxed);
                    next.unpark();
                    mine += size as u64;
                }
            })
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
    turn.load(Relaxed)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
