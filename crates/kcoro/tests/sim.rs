//! Deterministic simulation: replay from a seed, different seeds explore different
//! interleavings, a planted race is found, the virtual clock, and what is unavailable.

use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcoro::chan;
use kcoro::sim;

type Log = Arc<Mutex<Vec<String>>>;

fn note(log: &Log, event: String) {
    log.lock().unwrap().push(event);
}

/// A small concurrent program with every kind of scheduling point: spawns, yields,
/// channel hand-offs, an unbiased select, sleeps and a scope. It records what happened,
/// in order, with virtual timestamps.
fn busy_program() -> Vec<String> {
    let log: Log = Arc::default();
    let start = kcoro::now();
    let (tx_a, rx_a) = chan::buffered::<u32>(2);
    let (tx_b, rx_b) = chan::rendezvous::<u32>();
    // Held open until every value is in, so the select below never sees `Closed`.
    let keep_open = (tx_a.clone(), tx_b.clone());
    let mut hs = Vec::new();
    for (name, tx) in [("a", tx_a), ("b", tx_b)] {
        let log = Arc::clone(&log);
        hs.push(kcoro::spawn(move || {
            for i in 0..6 {
                tx.send(i).unwrap();
                note(&log, format!("{name} sent {i}"));
                if i % 2 == 0 {
                    kcoro::yield_now();
                }
            }
        }));
    }
    for _ in 0..12 {
        kcoro::select_unbiased! {
            recv(rx_a) -> v => note(&log, format!("got a {v:?}")),
            recv(rx_b) -> v => note(&log, format!("got b {v:?}")),
        }
    }
    drop(keep_open);
    kcoro::scope(|s| {
        for (i, ms) in [30u64, 10, 20].into_iter().enumerate() {
            let log = Arc::clone(&log);
            s.spawn(move || {
                kcoro::sleep(Duration::from_millis(ms));
                note(&log, format!("sleeper {i} woke at {:?}", kcoro::now() - start));
            });
        }
    })
    .unwrap();
    hs.into_iter().for_each(|h| h.join().unwrap());
    Arc::try_unwrap(log).unwrap().into_inner().unwrap()
}

#[test]
fn one_seed_gives_identical_event_logs_and_traces() {
    for seed in [0, 1, 0xDEAD_BEEF] {
        let (log1, trace1) = sim::run(seed, busy_program);
        let (log2, trace2) = sim::run(seed, busy_program);
        assert_eq!(log1.len(), 12 + 12 + 3);
        assert_eq!(log1, log2, "seed {seed}: same program, same seed, same events");
        assert_eq!(trace1, trace2, "seed {seed}: same schedule");
        assert!(trace1.steps > 20, "the trace counts resumes: {trace1:?}");
    }
}

#[test]
fn different_seeds_give_different_interleavings() {
    let logs: std::collections::HashSet<Vec<String>> =
        (0..20).map(|seed| sim::run(seed, busy_program).0).collect();
    assert!(logs.len() > 1, "20 seeds produced a single interleaving");
}

#[test]
fn virtual_clock_fires_timers_in_deadline_order_and_jumps() {
    let (order, _) = sim::run(5, || {
        let start = kcoro::now();
        let woke: Arc<Mutex<Vec<(u64, Duration)>>> = Arc::default();
        let hs: Vec<_> = [3u64, 1, 2]
            .into_iter()
            .map(|h| {
                let woke = Arc::clone(&woke);
                kcoro::spawn(move || {
                    kcoro::sleep(Duration::from_secs(h * 3600));
                    woke.lock().unwrap().push((h, kcoro::now() - start));
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        Arc::try_unwrap(woke).unwrap().into_inner().unwrap()
    });
    let hours: Vec<u64> = order.iter().map(|(h, _)| *h).collect();
    assert_eq!(hours, [1, 2, 3]);
    for (h, at) in order {
        let want = Duration::from_secs(h * 3600);
        assert!(at >= want && at < want + Duration::from_millis(1), "hour {h} woke at {at:?}");
    }
}

#[test]
fn a_planted_race_is_found_and_replays() {
    // Check-then-act across a channel hand-off: two withdrawals of 60 from 100 both pass
    // the check in some interleavings.
    let body = |_seed: u64| {
        let balance = Arc::new(AtomicU64::new(100));
        let (tx, rx) = chan::unlimited::<()>();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (balance, tx) = (Arc::clone(&balance), tx.clone());
                kcoro::spawn(move || {
                    if balance.load(SeqCst) >= 60 {
                        kcoro::yield_now(); // the window
                        let b = balance.load(SeqCst);
                        balance.store(b.wrapping_sub(60), SeqCst);
                    }
                    tx.send(()).unwrap();
                })
            })
            .collect();
        drop(tx);
        assert_eq!(rx.iter().count(), 2);
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert!(balance.load(SeqCst) <= 100, "overdrawn: balance wrapped");
    };
    let failure = sim::explore(0..1000, body).expect_err("the race is found within 1000 seeds");
    assert!(failure.message.contains("overdrawn"), "{failure}");
    // Replay: the failing seed fails again, every time.
    for _ in 0..3 {
        assert_eq!(sim::explore([failure.seed], body), Err(failure.clone()));
    }
    // `check` reports the seed.
    let panic = std::panic::catch_unwind(|| sim::check(0..1000, body)).expect_err("check fails");
    let msg = panic.downcast_ref::<String>().expect("string payload");
    assert!(msg.contains(&format!("seed {}", failure.seed)), "{msg}");
}

#[test]
fn a_correct_program_passes_many_seeds() {
    let passed = sim::explore(0..200, |_| {
        let total = AtomicU64::new(0);
        kcoro::scope(|s| {
            for i in 0..8 {
                let total = &total;
                s.spawn(move || {
                    kcoro::yield_now();
                    total.fetch_add(i, SeqCst);
                });
            }
        })
        .unwrap();
        assert_eq!(total.load(SeqCst), 28);
    });
    assert_eq!(passed, Ok(200));
}

#[test]
fn io_is_unavailable_and_blocking_jobs_run_inline() {
    sim::run(1, || {
        let err = kcoro::net::TcpListener::bind("127.0.0.1:0").expect_err("no sockets in simulation");
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported);
        assert!(err.to_string().contains("deterministic"), "{err}");
        let worker = std::thread::current().id();
        let ran_on = kcoro::spawn_blocking(move || std::thread::current().id()).join().unwrap();
        assert_eq!(ran_on, worker, "inline, on the simulation's only thread");
    });
}

#[test]
fn timeouts_use_the_virtual_clock() {
    sim::run(9, || {
        let (_tx, rx) = chan::rendezvous::<u8>();
        let start = kcoro::now();
        assert_eq!(rx.recv_timeout(Duration::from_secs(86_400)), Err(chan::ChanError::Timeout));
        assert!(kcoro::now() - start >= Duration::from_secs(86_400));
    });
}

#[test]
fn a_deadlock_is_reported_not_hung() {
    let body = |_seed: u64| {
        let (tx1, rx1) = chan::rendezvous::<u8>();
        let (tx2, rx2) = chan::rendezvous::<u8>();
        let h = kcoro::spawn(move || {
            let _ = rx1.recv(); // waits for the main coroutine, which waits for us
            tx2.send(1).ok();
        });
        let _ = rx2.recv();
        tx1.send(1).ok();
        h.join().unwrap();
    };
    let failure = sim::explore([3], body).expect_err("deadlock detected");
    assert!(failure.message.contains("deadlock under seed 3"), "{failure}");
    assert!(failure.message.contains("all 2 coroutines parked"), "{failure}");
}

#[test]
fn sync_primitives_wait_on_the_virtual_clock() {
    sim::run(11, || {
        let sem = kcoro::sync::Semaphore::new(0);
        let start = kcoro::now();
        assert!(matches!(
            sem.acquire_timeout(Duration::from_secs(3600)),
            Err(kcoro::sync::WaitError::Timeout)
        ));
        assert!(kcoro::now() - start >= Duration::from_secs(3600));
        let wg = kcoro::sync::WaitGroup::new();
        wg.add(1);
        let w = wg.clone();
        kcoro::spawn(move || {
            kcoro::sleep(Duration::from_secs(60));
            w.done();
        });
        wg.wait().unwrap();
        assert!(kcoro::now() - start >= Duration::from_secs(3660));
    });
}
