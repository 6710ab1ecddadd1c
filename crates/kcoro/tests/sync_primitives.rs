//! WaitGroup, Semaphore and Mutex: waiters park (never block a worker), are served in
//! order, give up on their ambient token, and never lose a grant. Behaviour only: every
//! body runs under a watchdog, so a lost wake-up or a blocked worker fails instead of
//! hanging.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex as StdMutex};
use std::time::{Duration, Instant};

use kcoro::sync::{CancelToken, Cancelled, Mutex, Semaphore, WaitError, WaitGroup};
use kcoro::{Handle, JoinError, JoinHandle, Runtime, SpawnOptions};

/// How long a test body may take before it fails instead of hanging.
const WATCHDOG: Duration = Duration::from_secs(20);

/// Runs `body` as a coroutine on a runtime with `workers` workers, under the watchdog.
fn run_on<T: Send + 'static>(workers: usize, body: impl FnOnce() -> T + Send + 'static) -> T {
    let rt = Runtime::builder().workers(workers).build().expect("runtime starts");
    match rt.spawn(body).join_timeout(WATCHDOG) {
        Ok(Ok(v)) => v,
        Ok(Err(JoinError::Panicked(p))) => std::panic::resume_unwind(p),
        Ok(Err(e)) => panic!("test body did not finish: {e}"),
        Err(_) => {
            std::mem::forget(rt); // a blocked worker would hang the shutdown too
            panic!("watchdog: test body still running after {WATCHDOG:?} (lost wake-up or blocked worker)")
        }
    }
}

fn join<T>(h: JoinHandle<T>) -> T {
    match h.join_timeout(WATCHDOG) {
        Ok(r) => r.unwrap_or_else(|e| panic!("coroutine failed: {e}")),
        Err(_) => panic!("watchdog: coroutine still running after {WATCHDOG:?}"),
    }
}

/// Yields until at least `n` coroutines of the current runtime are parked.
fn until_parked(n: u64) {
    let handle = Handle::try_current().expect("in a runtime");
    while handle.stats().parked < n {
        kcoro::yield_now();
    }
}

#[test]
fn wait_group_waits_for_100_coroutines() {
    run_on(2, || {
        let wg = WaitGroup::new();
        let hits = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            wg.add(1);
            let (wg, hits) = (wg.clone(), Arc::clone(&hits));
            kcoro::spawn(move || {
                if i % 3 == 0 {
                    kcoro::yield_now();
                }
                hits.fetch_add(1, SeqCst);
                wg.done();
            });
        }
        wg.wait().unwrap();
        assert_eq!(hits.load(SeqCst), 100);
        assert_eq!(wg.count(), 0);
        assert_eq!(wg.wait(), Ok(()), "a zero count returns at once");
    });
}

#[test]
fn wait_group_wait_gives_up_when_its_ambient_token_is_cancelled() {
    run_on(2, || {
        let wg = WaitGroup::new();
        wg.add(1);
        let token = CancelToken::new();
        let w2 = wg.clone();
        let opts = SpawnOptions::new().cancel_token(token.clone());
        let waiter = kcoro::spawn_with(opts, move || w2.wait()).unwrap();
        let canceller = kcoro::spawn(move || {
            until_parked(2); // the body (joining this one) and the waiter, queued and parked
            token.cancel();
        });
        join(canceller);
        assert_eq!(join(waiter), Err(Cancelled));
        assert_eq!(wg.count(), 1, "a cancelled wait changes nothing");
        wg.done();
        assert_eq!(wg.wait_timeout(Duration::ZERO), Ok(()));
    });
}

#[test]
fn wait_group_wait_times_out_and_plain_threads_count_down() {
    run_on(2, || {
        let wg = WaitGroup::new();
        wg.add(2);
        assert_eq!(wg.wait_timeout(Duration::from_millis(1)), Err(WaitError::Timeout));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let wg = wg.clone();
                std::thread::spawn(move || wg.done())
            })
            .collect();
        wg.wait().unwrap(); // a coroutine woken by threads
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(wg.count(), 0);
    });
}

#[test]
fn semaphore_never_exceeds_its_permits() {
    run_on(2, || {
        let sem = Arc::new(Semaphore::new(3));
        let inside = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let (sem, inside, max) = (Arc::clone(&sem), Arc::clone(&inside), Arc::clone(&max));
                kcoro::spawn(move || {
                    let _permit = sem.acquire().unwrap();
                    max.fetch_max(inside.fetch_add(1, SeqCst) + 1, SeqCst);
                    for _ in 0..3 {
                        kcoro::yield_now();
                    }
                    inside.fetch_sub(1, SeqCst);
                })
            })
            .collect();
        handles.into_iter().for_each(join);
        assert!(max.load(SeqCst) <= 3, "{} holders at once", max.load(SeqCst));
        assert_eq!(sem.available_permits(), 3);
    });
}

#[test]
fn semaphore_hands_off_in_fifo_order() {
    run_on(2, || {
        let sem = Arc::new(Semaphore::new(1));
        let order = Arc::new(StdMutex::new(Vec::new()));
        let held = sem.acquire().unwrap();
        let handles: Vec<_> = (0..10)
            .map(|i| {
                let (sem, order) = (Arc::clone(&sem), Arc::clone(&order));
                let h = kcoro::spawn(move || {
                    let _permit = sem.acquire().unwrap();
                    order.lock().unwrap().push(i);
                    kcoro::yield_now(); // others arriving now would have to queue
                });
                until_parked(i + 1); // waiter `i` is queued before `i + 1` starts
                h
            })
            .collect();
        assert!(sem.try_acquire().is_none());
        drop(held);
        handles.into_iter().for_each(join);
        assert_eq!(*order.lock().unwrap(), (0..10).collect::<Vec<_>>());
        assert_eq!(sem.available_permits(), 1);
    });
}

#[test]
fn acquire_timeout_times_out_and_loses_no_permit() {
    run_on(2, || {
        let sem = Arc::new(Semaphore::new(2));
        let held = sem.acquire_many(2).unwrap();
        let s1 = Arc::clone(&sem);
        let timed = kcoro::spawn(move || s1.acquire_timeout(Duration::from_millis(5)).map(drop));
        // Parked, or already timed out: on a busy or emulated machine the 5 ms can run out
        // before we look, and then nothing is parked for `until_parked` to see.
        let handle = Handle::try_current().expect("in a runtime");
        while handle.stats().parked < 1 && !timed.is_finished() {
            kcoro::yield_now();
        }
        let s2 = Arc::clone(&sem);
        let patient = kcoro::spawn(move || s2.acquire().map(|p| p.num_permits()));
        assert_eq!(join(timed), Err(WaitError::Timeout));
        assert_eq!(sem.acquire_timeout(Duration::ZERO).map(drop), Err(WaitError::Timeout));
        drop(held); // the waiter queued behind the timed-out one gets a permit
        assert_eq!(join(patient), Ok(1));
        assert_eq!(sem.available_permits(), 2, "no permit lost");
    });
}

#[test]
fn try_lock_and_try_acquire_never_wait_nor_barge() {
    run_on(2, || {
        let sem = Arc::new(Semaphore::new(2));
        let a = sem.try_acquire().unwrap();
        let b = sem.try_acquire().unwrap();
        assert!(sem.try_acquire().is_none());
        let s2 = Arc::clone(&sem);
        let pair = kcoro::spawn(move || s2.acquire_many(2).map(|p| p.num_permits()));
        until_parked(1);
        drop(a);
        assert_eq!(sem.available_permits(), 1);
        assert!(sem.try_acquire().is_none(), "the free permit waits for the queued pair");
        drop(b);
        assert_eq!(join(pair), Ok(2));
        assert!(sem.try_acquire_many(2).is_some());

        let m = Arc::new(Mutex::new(0));
        let g = m.try_lock().unwrap();
        let m2 = Arc::clone(&m);
        let other = kcoro::spawn(move || m2.try_lock().is_none());
        assert!(join(other), "try_lock fails while held elsewhere");
        drop(g);
        assert!(m.try_lock().is_some());
    });
}

/// Waits on this plain thread until `rt` has `n` parked coroutines.
fn until_parked_on(rt: &Runtime, n: u64) {
    let deadline = Instant::now() + WATCHDOG;
    while rt.stats().parked < n {
        assert!(Instant::now() < deadline, "watchdog: fewer than {n} coroutines ever parked");
        std::thread::yield_now();
    }
}

/// A parked waiter's token is cancelled (by one thread) while the permit it waits for is
/// released (by another), both let go at once: whichever wins, the permit ends up back in
/// the semaphore exactly once.
#[test]
fn cancel_vs_grant_race_conserves_permits() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let sem = Arc::new(Semaphore::new(1));
    let mut outcomes = [0u32; 2];
    for i in 0..2000 {
        sem.acquire().unwrap().forget(); // held by this thread; given back with add_permits
        let token = CancelToken::new();
        let s2 = Arc::clone(&sem);
        let opts = SpawnOptions::new().cancel_token(token.clone());
        let waiter = rt.handle().spawn_with(opts, move || s2.acquire().map(drop)).unwrap();
        if i % 4 != 0 {
            until_parked_on(&rt, 1); // mostly race against a parked waiter, else its arrival
        }
        let go = Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                go.wait();
                token.cancel();
            });
            go.wait();
            sem.add_permits(1);
        });
        outcomes[usize::from(join(waiter).is_err())] += 1;
        assert_eq!(sem.available_permits(), 1, "iteration {i}: permit lost or duplicated");
    }
    eprintln!("granted {}, cancelled {}", outcomes[0], outcomes[1]);
}

/// Like the cancel race, with the waiter's deadline instead of a token.
#[test]
fn timeout_vs_grant_race_conserves_permits() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let sem = Arc::new(Semaphore::new(1));
    let mut outcomes = [0u32; 2];
    for i in 0..500u64 {
        sem.acquire().unwrap().forget();
        let s2 = Arc::clone(&sem);
        let timeout = Duration::from_micros(100 + i % 7 * 300);
        let waiter = rt.spawn(move || s2.acquire_timeout(timeout).map(drop));
        // Parked, or already timed out (the deadline may pass before we look).
        let deadline = Instant::now() + WATCHDOG;
        while rt.stats().parked < 1 && !waiter.is_finished() {
            assert!(Instant::now() < deadline, "watchdog: the waiter never parked");
            std::thread::yield_now();
        }
        // Release around the deadline: some grants land first, some timeouts do.
        let release_at = Instant::now() + Duration::from_micros(i % 11 * 200);
        while Instant::now() < release_at {
            std::hint::spin_loop();
        }
        sem.add_permits(1);
        outcomes[usize::from(join(waiter).is_err())] += 1;
        assert_eq!(sem.available_permits(), 1, "iteration {i}: permit lost or duplicated");
    }
    eprintln!("granted {}, timed out {}", outcomes[0], outcomes[1]);
}

/// Like [`run_on`], for a body whose length grows with the machine's load, watched for
/// what a hang is: `progress` standing still for a whole [`WATCHDOG`] period. A lock
/// convoy hands the lock across workers at every unlock; with the CPUs taken by other
/// work each hand-off waits for the OS to run the woken worker, and the 80,000 hand-offs
/// below took 12-20 s with two CPU hogs where they take 0.2 s on an idle machine. A fixed
/// limit on the whole body failed that by chance; a lost wake-up stops `progress`.
fn run_on_progressing<T: Send + 'static>(
    workers: usize,
    progress: &Arc<AtomicUsize>,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let rt = Runtime::builder().workers(workers).build().expect("runtime starts");
    let mut handle = rt.spawn(body);
    let mut seen = progress.load(SeqCst);
    loop {
        match handle.join_timeout(WATCHDOG) {
            Ok(Ok(v)) => return v,
            Ok(Err(JoinError::Panicked(p))) => std::panic::resume_unwind(p),
            Ok(Err(e)) => panic!("test body did not finish: {e}"),
            Err(back) => {
                let now = progress.load(SeqCst);
                if now == seen {
                    std::mem::forget(rt); // a blocked worker would hang the shutdown too
                    panic!("watchdog: no progress for {WATCHDOG:?} (lost wake-up or blocked worker)");
                }
                (seen, handle) = (now, back);
            }
        }
    }
}

#[test]
fn mutex_counts_exactly_under_contention() {
    let progress = Arc::new(AtomicUsize::new(0));
    let steps = Arc::clone(&progress);
    let total = run_on_progressing(2, &progress, move || {
        let m = Arc::new(Mutex::new(0u64));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (m, steps) = (Arc::clone(&m), Arc::clone(&steps));
                kcoro::spawn(move || {
                    for j in 0..10_000 {
                        let mut g = m.lock().unwrap();
                        let v = *g; // a non-atomic read-modify-write: lost updates would show
                        if j % 1000 == 0 {
                            kcoro::yield_now();
                        }
                        *g = v + 1;
                        steps.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        // No limit of their own: the body's watchdog sees a stalled one stop `progress`.
        for h in handles {
            h.join().unwrap_or_else(|e| panic!("coroutine failed: {e}"));
        }
        Arc::try_unwrap(m).unwrap_or_else(|_| panic!("all clones dropped")).into_inner()
    });
    assert_eq!(total, 80_000);
    assert_eq!(progress.load(SeqCst), 80_000);
}

/// With one worker, a mutex that blocked the thread would deadlock here: the holder yields
/// while holding, so the contenders run and must park for it to run again.
#[test]
fn mutex_waiters_park_while_the_holder_yields_on_one_worker() {
    let (value, parked) = run_on(1, || {
        let m = Arc::new(Mutex::new(0u32));
        let mut g = m.lock().unwrap();
        let contenders: Vec<_> = (0..3)
            .map(|_| {
                let m = Arc::clone(&m);
                kcoro::spawn(move || *m.lock().unwrap() += 1)
            })
            .collect();
        until_parked(3);
        let parked = Handle::try_current().unwrap().stats().parked;
        *g += 1;
        drop(g);
        contenders.into_iter().for_each(join);
        let v = *m.lock().unwrap();
        (v, parked)
    });
    assert_eq!(value, 4);
    assert!(parked >= 3, "contenders parked: {parked}");
}

#[test]
fn mutex_shared_by_plain_threads_and_coroutines() {
    let total = run_on(2, || {
        let m = Arc::new(Mutex::new(0u64));
        let wg = WaitGroup::new();
        for k in 0..4 {
            wg.add(1);
            let (m, wg) = (Arc::clone(&m), wg.clone());
            let work = move || {
                for j in 0..5_000 {
                    let mut g = m.lock().unwrap();
                    let v = *g;
                    if j % 500 == 0 {
                        kcoro::yield_now(); // a coroutine yields holding it; a thread yields its thread
                    }
                    *g = v + 1;
                }
                wg.done();
            };
            if k % 2 == 0 {
                std::thread::spawn(work);
            } else {
                kcoro::spawn(work);
            }
        }
        wg.wait().unwrap();
        *m.lock().unwrap()
    });
    assert_eq!(total, 20_000);
}

#[test]
fn mutex_lock_gives_up_on_cancel_and_timeout_without_losing_the_lock() {
    run_on(2, || {
        let m = Arc::new(Mutex::new(0));
        let g = m.lock().unwrap();
        let token = CancelToken::new();
        let m2 = Arc::clone(&m);
        let opts = SpawnOptions::new().cancel_token(token.clone());
        let cancelled = kcoro::spawn_with(opts, move || m2.lock().map(drop)).unwrap();
        until_parked(1);
        token.cancel();
        assert_eq!(join(cancelled), Err(Cancelled));
        assert_eq!(m.lock_timeout(Duration::from_millis(1)).map(drop), Err(WaitError::Timeout));
        drop(g);
        assert!(m.try_lock().is_some(), "neither give-up kept the lock");
    });
}

/// A runtime shutting down unwinds its parked coroutines; a waiter unwound in the queue
/// must not be handed the permit released later.
#[test]
fn semaphore_waiter_unwound_at_shutdown_takes_no_permit() {
    let sem = Arc::new(Semaphore::new(1));
    let held = sem.try_acquire().unwrap();
    let rt = Runtime::builder().workers(1).build().unwrap();
    let s2 = Arc::clone(&sem);
    let reached = Arc::new(AtomicBool::new(false));
    let r2 = Arc::clone(&reached);
    let _waiter = rt.spawn(move || {
        let _p = s2.acquire();
        r2.store(true, SeqCst); // not reached: unwound while parked
    });
    until_parked_on(&rt, 1);
    assert!(rt.shutdown_timeout(WATCHDOG), "shutdown unwound every coroutine");
    assert!(!reached.load(SeqCst));
    drop(held);
    assert_eq!(sem.available_permits(), 1, "the unwound waiter left the queue");
}

/// A waiter granted its permit but unwound by shutdown before it ran gives the permit
/// back. Each round races the grant against the shutdown; either way no permit is lost.
#[test]
fn semaphore_waiter_granted_then_unwound_gives_the_permit_back() {
    for i in 0..50 {
        let sem = Arc::new(Semaphore::new(1));
        let held = sem.try_acquire().unwrap();
        let rt = Runtime::builder().workers(1).build().unwrap();
        let s2 = Arc::clone(&sem);
        let _waiter = rt.spawn(move || s2.acquire().map(|_| kcoro::yield_now()));
        until_parked_on(&rt, 1);
        drop(held); // grants the parked waiter and schedules it...
        assert!(rt.shutdown_timeout(WATCHDOG)); // ...which may be unwound before it runs
        assert_eq!(sem.available_permits(), 1, "round {i}: the granted permit was lost");
    }
}
