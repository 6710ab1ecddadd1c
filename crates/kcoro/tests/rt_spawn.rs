//! Spawning, joining, panics, stealing and fairness on the multi-worker runtime.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcoro::Runtime;

fn rt(workers: usize) -> Runtime {
    Runtime::builder().workers(workers).build().expect("runtime starts")
}

#[test]
fn run_returns_the_main_coroutine_value() {
    assert_eq!(kcoro::run(|| 6 * 7), 42);
}

/// How many coroutines `spawn_many_across_workers_with_stealing` holds at once: 100k, or
/// 20k where guard pages are mprotect'ed (kernels before 6.13, qemu-user), since each
/// stack then costs two mappings and `vm.max_map_count` (65530 by default) caps a process
/// near 32k stacks.
fn many() -> u64 {
    if kcoro::guard_mode() == Some(kcoro::GuardMode::Madvise) { 100_000 } else { 20_000 }
}

#[test]
fn spawn_many_across_workers_with_stealing() {
    let rt = rt(2);
    let threads = Arc::new(Mutex::new(HashSet::new()));
    let t2 = Arc::clone(&threads);
    let (n, sum) = rt.block_on(move || {
        let n = many(); // the guard mode is known once this coroutine has its stack
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let threads = Arc::clone(&t2);
                kcoro::spawn(move || {
                    threads.lock().unwrap().insert(std::thread::current().id());
                    if i == n - 1 {
                        // Spawned last, this one runs first on the spawner's worker (LIFO slot).
                        // Block that worker (as a long computation would) until the other
                        // worker has stolen fresh coroutines queued behind us; fail after 10 s.
                        let handle = kcoro::Handle::try_current().unwrap();
                        let deadline = std::time::Instant::now() + Duration::from_secs(10);
                        while handle.stats().steals == 0 && std::time::Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    kcoro::yield_now();
                    i
                })
            })
            .collect();
        (n, handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>())
    });
    assert_eq!(sum, (0..n).sum::<u64>());
    let st = rt.stats();
    assert_eq!(st.completed, st.spawned);
    assert_eq!(st.spawned, n + 1);
    assert!(st.steals > 0, "an idle worker stole fresh coroutines: {st:?}");
    assert_eq!(threads.lock().unwrap().len(), 2, "both workers ran coroutines");
}

#[test]
fn panics_are_contained_and_reported_through_join() {
    let rt = rt(2);
    let (msg, after) = rt.block_on(|| {
        let h = kcoro::spawn(|| -> u32 { panic!("boom {}", 7) });
        let err = h.join().unwrap_err();
        assert!(err.is_panic());
        let msg = err.to_string();
        // The worker that ran the panicking coroutine lives on.
        let after: u32 = (0..100).map(|i| kcoro::spawn(move || i).join().unwrap()).sum();
        (msg, after)
    });
    assert_eq!(msg, "coroutine panicked: boom 7");
    assert_eq!(after, 4950);
    // A panic in block_on's coroutine resumes on the caller.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rt.block_on(|| panic!("main"))));
    assert!(r.is_err());
    assert_eq!(rt.block_on(|| 1), 1, "runtime still usable");
}

#[test]
fn spawn_from_plain_thread_and_join_from_thread_and_future() {
    let rt = rt(2);
    let h = rt.spawn(|| 5);
    assert_eq!(h.join().unwrap(), 5);
    let handle = rt.handle();
    let t = std::thread::spawn(move || handle.spawn(|| "x").join().unwrap());
    assert_eq!(t.join().unwrap(), "x");
    let fut = rt.spawn(|| {
        kcoro::sleep(Duration::from_millis(2));
        9
    });
    assert_eq!(block_on_future(fut).unwrap(), 9);
}

/// A minimal executor: polls a future, parking the thread between wake-ups.
fn block_on_future<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn spawn_blocking_is_joinable_from_coroutine_and_thread() {
    let rt = rt(1);
    let v = rt.block_on(|| {
        let h = kcoro::spawn_blocking(|| {
            std::thread::sleep(Duration::from_millis(5));
            11
        });
        // The only worker stays free while the blocking job runs.
        let other = kcoro::spawn(|| 1).join().unwrap();
        h.join().unwrap() + other
    });
    assert_eq!(v, 12);
    let h = rt.handle().spawn_blocking(|| panic!("blocking boom"));
    assert!(h.join().unwrap_err().is_panic());
}

#[test]
fn yield_loop_cannot_starve_inject_queue_or_timers() {
    // One worker: a coroutine that only yields must still let a spawn from outside and a
    // sleeping coroutine run.
    let rt = rt(1);
    let injected = Arc::new(AtomicBool::new(false));
    let slept = Arc::new(AtomicBool::new(false));
    let (i2, s2) = (Arc::clone(&injected), Arc::clone(&slept));
    let handle = rt.handle();
    let spinner = rt.spawn(move || {
        let s3 = Arc::clone(&s2);
        let sleeper = kcoro::spawn(move || {
            kcoro::sleep(Duration::from_millis(3));
            s3.store(true, SeqCst);
        });
        // A watchdog instead of a hang: starvation makes the test fail, not stall.
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        while !(i2.load(SeqCst) && s2.load(SeqCst)) {
            if std::time::Instant::now() > give_up {
                return Err(format!("starved: injected={} slept={}", i2.load(SeqCst), s2.load(SeqCst)));
            }
            kcoro::yield_now();
        }
        sleeper.join().unwrap();
        Ok(())
    });
    std::thread::sleep(Duration::from_millis(1));
    let flag = Arc::clone(&injected);
    // Not joined here: with a starving scheduler this spawn never runs.
    drop(handle.spawn(move || flag.store(true, SeqCst)));
    spinner.join().unwrap().unwrap();
    assert!(slept.load(SeqCst));
}

#[test]
fn started_coroutines_stay_on_their_worker() {
    let rt = rt(2);
    let moved = Arc::new(AtomicUsize::new(0));
    let m2 = Arc::clone(&moved);
    rt.block_on(move || {
        let hs: Vec<_> = (0..200)
            .map(|_| {
                let m = Arc::clone(&m2);
                kcoro::spawn(move || {
                    let home = std::thread::current().id();
                    for _ in 0..20 {
                        kcoro::sleep(Duration::from_micros(50));
                        kcoro::yield_now();
                        if std::thread::current().id() != home {
                            m.fetch_add(1, SeqCst);
                        }
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(moved.load(SeqCst), 0);
}

#[test]
fn spawn_with_options_names_and_sizes() {
    let rt = rt(1);
    let r = rt.block_on(|| {
        let opts = kcoro::SpawnOptions::new().name("big").stack_size(256 << 10);
        let h = kcoro::spawn_with(opts, || {
            // Uses ~128 KiB of stack: fine on 256 KiB.
            let buf = [7u8; 128 << 10];
            std::hint::black_box(&buf).iter().map(|&b| b as u64).sum::<u64>()
        })
        .unwrap();
        h.join().unwrap()
    });
    assert_eq!(r, 7 * (128 << 10));
}

#[test]
fn spawn_outside_runtime_is_a_clear_error() {
    let err = kcoro::try_spawn(|| ()).unwrap_err();
    assert!(matches!(err, kcoro::Error::NoRuntime));
    assert!(err.to_string().contains("no kcoro runtime"));
}

#[test]
fn migrate_started_opt_in_runs_everything() {
    // SAFETY: these coroutines keep only Send data (Arcs, integers) across suspensions.
    let builder = unsafe { Runtime::builder().workers(2).migrate_started(true) };
    let rt = builder.build().unwrap();
    let total = Arc::new(AtomicUsize::new(0));
    let t2 = Arc::clone(&total);
    rt.block_on(move || {
        let hs: Vec<_> = (0..1000)
            .map(|_| {
                let t = Arc::clone(&t2);
                kcoro::spawn(move || {
                    for _ in 0..10 {
                        kcoro::sleep(Duration::from_micros(20));
                        kcoro::yield_now();
                    }
                    t.fetch_add(1, SeqCst);
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
    });
    assert_eq!(total.load(SeqCst), 1000);
    assert_eq!(rt.stats().parked, 0);
}

#[test]
fn panicking_result_destructor_does_not_kill_the_worker() {
    struct PanicOnDrop;
    impl Drop for PanicOnDrop {
        fn drop(&mut self) {
            panic!("destructor of a result nobody joined");
        }
    }
    // One worker: if it died, the parked coroutine pinned to it could never finish.
    let rt = rt(1);
    let main = rt.spawn(|| {
        let me = kcoro::park::current();
        let waiter = kcoro::spawn(move || {
            kcoro::sleep(Duration::from_millis(5));
            me.unpark();
            true
        });
        // Detached: its result is dropped on the worker when the coroutine finishes.
        drop(kcoro::spawn(|| PanicOnDrop));
        kcoro::park::park();
        waiter.join().unwrap()
    });
    // A watchdog rather than a hang if the worker died.
    let woke = main.join_timeout(Duration::from_secs(20)).expect("the worker survived").unwrap();
    assert!(woke);
    assert_eq!(rt.block_on(|| kcoro::spawn(|| 3).join().unwrap()), 3, "the worker lives on");
}

#[test]
fn spread_spawns_start_on_the_workers_in_turn_and_stay() {
    const N: usize = 64;
    let rt = rt(2);
    let places = rt.block_on(|| {
        let hs: Vec<_> = (0..N)
            .map(|_| {
                kcoro::spawn_with(kcoro::SpawnOptions::new().spread(), || {
                    let start = kcoro::worker_index().expect("on a worker");
                    kcoro::sleep(Duration::from_micros(100));
                    (start, kcoro::worker_index().expect("on a worker"))
                })
                .expect("spawn")
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect::<Vec<_>>()
    });
    assert!(places.iter().all(|(start, end)| start == end), "a coroutine moved: {places:?}");
    let on_first = places.iter().filter(|(w, _)| *w == 0).count();
    assert_eq!((on_first, N - on_first), (N / 2, N / 2), "spread in turn: {places:?}");
}

#[test]
fn spread_on_one_worker_runs_everything_there() {
    let rt = rt(1);
    let places = rt.block_on(|| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                kcoro::spawn_with(kcoro::SpawnOptions::new().spread(), kcoro::worker_index).expect("spawn")
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect::<Vec<_>>()
    });
    assert_eq!(places, vec![Some(0); 8]);
}

/// Where each of `n` coroutines spawned with `on_worker(index(i))` started and ended (a
/// sleep in between, so a move would show).
fn placed_on(rt: &kcoro::Runtime, n: usize, index: fn(usize) -> usize) -> Vec<(usize, usize, usize)> {
    rt.block_on(move || {
        let hs: Vec<_> = (0..n)
            .map(|i| {
                kcoro::spawn_with(kcoro::SpawnOptions::new().on_worker(index(i)), move || {
                    let start = kcoro::worker_index().expect("on a worker");
                    kcoro::sleep(Duration::from_micros(100));
                    (i, start, kcoro::worker_index().expect("on a worker"))
                })
                .expect("spawn")
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("join")).collect()
    })
}

#[test]
fn on_worker_starts_the_coroutine_on_that_worker_and_it_stays() {
    let rt = rt(2);
    // Alternating and all on the far side of the spawner, modulo the worker count.
    for (index, want) in [(|i| i % 2, |i| i % 2), (|_| 1, |_| 1), (|i| i + 3, |i| (i + 3) % 2)]
        as [(fn(usize) -> usize, fn(usize) -> usize); 3]
    {
        let places = placed_on(&rt, 32, index);
        assert!(places.iter().all(|&(i, start, end)| start == want(i) && end == want(i)), "{places:?}");
    }
}

#[test]
fn on_worker_from_outside_the_workers_starts_there() {
    let rt = rt(2);
    for want in [0, 1, 1, 0] {
        let h = rt.handle().spawn_with(kcoro::SpawnOptions::new().on_worker(want), kcoro::worker_index);
        let h = h.expect("spawn");
        assert_eq!(rt.block_on(move || h.join().expect("join")), Some(want));
    }
}

#[test]
fn worker_counters_add_up_to_the_runtime_totals() {
    let rt = rt(2);
    assert_eq!(kcoro::worker_index(), None, "the test thread is no worker");
    rt.block_on(|| {
        let hs: Vec<_> = (0..100)
            .map(|_| kcoro::spawn_with(kcoro::SpawnOptions::new().spread(), kcoro::yield_now).expect("spawn"))
            .collect();
        for h in hs {
            h.join().expect("join");
        }
    });
    let per_worker = rt.worker_counters();
    let total = rt.stats();
    assert_eq!(per_worker.len(), 2);
    let sum = |f: fn(&kcoro::WorkerCounters) -> u64| per_worker.iter().map(f).sum::<u64>();
    // The 100 spawned by a coroutine plus block_on's own from this thread.
    assert_eq!(sum(|w| w.spawned), 100);
    assert_eq!(total.spawned, 101);
    assert_eq!(sum(|w| w.started), 101);
    assert_eq!(sum(|w| w.completed), total.completed);
    assert_eq!(sum(|w| w.resumes), total.resumes);
    assert!(per_worker.iter().all(|w| w.started >= 50), "spread shares the starts: {per_worker:?}");
}

/// A ping-pong pair started on two workers, whose echo works 50 µs (blocking its thread)
/// before each reply: longer than an idle worker's short spin, so the driver's worker goes
/// to sleep and the echo's hand-off ends that sleep soon after. The worker must then be
/// partnered (and spin longer next time). Without the work, both workers may keep
/// spinning and never sleep, which needs no partnering.
///
/// "Soon after" is the runtime's `PARTNER_WAKE`, 200 µs from the start of the sleep to
/// the worker running again. With the CPUs taken by other work (scripts/stress.sh), the
/// echo's 50 µs sleep and each wake-up can take milliseconds, and no sleep ends that soon:
/// then nothing must be partnered, and the test says it could not judge. What it checks
/// is the rule: once a round trip in which the driver's worker slept took less than
/// 200 µs (so that sleep was ended within 200 µs by the echo's hand-off), the worker is
/// partnered, and its next idle spin shows in `partner_spins`.
#[test]
fn a_sleep_cut_short_by_another_workers_hand_off_makes_a_worker_partnered() {
    use kcoro::{SpawnOptions, chan};
    /// The runtime's `PARTNER_WAKE`.
    const PARTNER_WAKE: Duration = Duration::from_micros(200);
    const BATCHES: u32 = 100;
    let rt = rt(2);
    let (spins, prompt_batch) = rt.block_on(|| {
        let spread = || SpawnOptions::new().spread();
        let (ping_tx, ping_rx) = chan::rendezvous::<u32>();
        let (pong_tx, pong_rx) = chan::rendezvous::<u32>();
        let echo = kcoro::spawn_with(spread(), move || {
            while let Ok(v) = ping_rx.recv() {
                std::thread::sleep(Duration::from_micros(50));
                pong_tx.send(v).unwrap();
            }
            kcoro::worker_index()
        })
        .unwrap();
        let handle = kcoro::Handle::try_current().expect("inside the runtime");
        let driver = kcoro::spawn_with(spread(), move || {
            let me = kcoro::worker_index().expect("on a worker");
            let spins = || handle.worker_counters().iter().map(|c| c.partner_spins).sum::<u64>();
            let sleeps = || handle.worker_counters()[me].sleeps;
            // The first batch in which a sleep of this worker was ended promptly.
            let mut prompt_batch = None;
            for batch in 0..BATCHES {
                for i in 0..50 {
                    let (before, t0) = (sleeps(), Instant::now());
                    ping_tx.send(batch * 50 + i).unwrap();
                    assert_eq!(pong_rx.recv().unwrap(), batch * 50 + i);
                    if prompt_batch.is_none() && sleeps() > before && t0.elapsed() < PARTNER_WAKE {
                        prompt_batch = Some(batch);
                    }
                }
                if spins() > 0 {
                    break;
                }
            }
            (kcoro::worker_index(), spins(), prompt_batch)
        })
        .unwrap();
        let (at, spins, prompt_batch) = driver.join().unwrap();
        assert_ne!(at, echo.join().unwrap(), "spread put the two on different workers");
        (spins, prompt_batch)
    });
    match prompt_batch {
        _ if spins > 0 => {}
        // A whole batch followed the prompt wake: its idle spins were partnered ones.
        Some(b) if b + 1 < BATCHES => {
            panic!("a sleep ended within {PARTNER_WAKE:?} in batch {b} partnered no worker")
        }
        _ => {
            eprintln!("note: no sleep ended within {PARTNER_WAKE:?} (a busy machine); partnering not judged")
        }
    }
}

/// A worker with nothing to do sleeps, and says so in its counters; a worker kept busy
/// by a coroutine that never parks does not sleep meanwhile.
#[test]
fn idle_workers_count_their_sleeps() {
    let rt = rt(2);
    let handle = rt.handle();
    let sleeps = || handle.worker_counters().iter().map(|c| c.sleeps).collect::<Vec<_>>();
    rt.block_on(|| ());
    // Nothing runs now: both workers go to sleep within their spin's few microseconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sleeps().contains(&0) {
        assert!(std::time::Instant::now() < deadline, "an idle worker never slept: {:?}", sleeps());
        std::thread::sleep(Duration::from_millis(1));
    }
    let busy_worker = rt.block_on(|| {
        let me = kcoro::worker_index().expect("on a worker");
        let before = kcoro::Handle::try_current().expect("inside").worker_counters()[me].sleeps;
        let until = std::time::Instant::now() + Duration::from_millis(20);
        while std::time::Instant::now() < until {
            std::hint::spin_loop();
        }
        let after = kcoro::Handle::try_current().expect("inside").worker_counters()[me].sleeps;
        (before, after)
    });
    assert_eq!(busy_worker.0, busy_worker.1, "a worker slept while its coroutine ran");
}

#[test]
fn a_coroutine_in_a_finished_ones_place_starts_with_its_own_token() {
    use kcoro::SpawnOptions;
    use kcoro::sync::CancelToken;
    // One worker: each coroutine finishes before the next is spawned, so spawns reuse
    // finished coroutines' tasks.
    let rt = rt(1);
    rt.block_on(|| {
        let cancelled = CancelToken::new();
        cancelled.cancel();
        for i in 0..300 {
            let (opts, want) = match i % 3 {
                0 => (SpawnOptions::new().cancel_token(cancelled.clone()).name(format!("c{i}")), Some(true)),
                1 => (SpawnOptions::new().cancel_token(CancelToken::new()), Some(false)),
                _ => (SpawnOptions::new(), None),
            };
            let h = kcoro::spawn_with(opts, || kcoro::sync::current_token().map(|t| t.is_cancelled()));
            assert_eq!(h.expect("spawns").join().expect("joins"), want, "coroutine {i}");
        }
    });
    let reused: u64 = rt.worker_counters().iter().map(|c| c.reused).sum();
    assert!(reused >= 290, "spawns reused finished tasks only {reused} times of 300");
}

/// `Builder::idle_spin` bounds each idle spin: a coroutine that sleeps on a timer 20 times
/// leaves its one worker idle at least 20 times, each idle period spins at least one round
/// (unless the spin is 0) and at most `rounds`, and each ends in a sleep or in work found
/// (a resume). With 0 rounds the worker never spins and the timers still fire. (Whether
/// it sleeps is not asserted: beside busy CPUs a round can outlast the timer.)
#[test]
fn idle_spin_bounds_the_rounds_an_idle_worker_spins() {
    const NAPS: u64 = 20;
    for rounds in [0u32, 3] {
        let rt = Runtime::builder().workers(1).idle_spin(rounds).build().unwrap();
        rt.block_on(|| {
            for _ in 0..NAPS {
                kcoro::sleep(Duration::from_millis(2));
            }
        });
        let c = rt.handle().worker_counters()[0];
        drop(rt);
        if rounds == 0 {
            assert_eq!(c.spin_rounds, 0, "{c:?}");
        } else {
            let episodes = c.sleeps + c.resumes + 1;
            assert!(c.spin_rounds >= NAPS, "every nap leaves the worker idle: {c:?}");
            assert!(c.spin_rounds <= u64::from(rounds) * episodes, "{c:?}");
        }
    }
}
