//! Timers on the runtime: sleeps never end early and fire in deadline order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcoro::Runtime;

#[test]
fn sleeps_fire_in_order_and_never_early() {
    // One worker, so wake order is the order the driver fired the timers in.
    let rt = Runtime::builder().workers(1).build().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o2 = Arc::clone(&order);
    rt.block_on(move || {
        let start = Instant::now() + Duration::from_millis(200);
        // Spawned in scrambled order; deadlines 1 ms apart.
        let handles: Vec<_> = (0..40u32)
            .map(|i| (i * 17) % 40)
            .map(|k| {
                let order = Arc::clone(&o2);
                let deadline = start + Duration::from_millis(u64::from(k));
                kcoro::spawn(move || {
                    // Only timers armed well before their deadline say anything about firing
                    // order; on a loaded machine a late coroutine finds its deadline passed.
                    let armed_early = Instant::now() + Duration::from_millis(50) < deadline;
                    kcoro::sleep_until(deadline);
                    let now = Instant::now();
                    assert!(now >= deadline, "timer {k} fired early");
                    order.lock().unwrap().push((k, armed_early));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    let order = order.lock().unwrap().clone();
    assert_eq!(order.len(), 40);
    let fired: Vec<u32> = order.iter().filter(|(_, early)| *early).map(|&(k, _)| k).collect();
    assert!(fired.len() >= 2, "too few timers armed in time to check ordering: {order:?}");
    assert!(fired.windows(2).all(|w| w[0] < w[1]), "timers fired out of deadline order: {fired:?}");
    // A coroutine that ran after its deadline armed no timer: count the ones armed early.
    assert!(rt.stats().timer_fires >= fired.len() as u64);
}

#[test]
fn many_concurrent_sleepers_all_wake() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let n = rt.block_on(|| {
        let hs: Vec<_> = (0..10_000u64)
            .map(|i| {
                kcoro::spawn(move || {
                    let d = Duration::from_micros(i % 5000);
                    let t = Instant::now();
                    kcoro::sleep(d);
                    assert!(t.elapsed() >= d);
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).count()
    });
    assert_eq!(n, 10_000);
    assert_eq!(rt.stats().timers_armed, 0);
}

#[test]
fn sleep_on_plain_thread_works() {
    let t = Instant::now();
    kcoro::sleep(Duration::from_millis(2));
    assert!(t.elapsed() >= Duration::from_millis(2));
}

/// A timer already due when an idle worker goes to wait in the reactor wakes a coroutine
/// of its own: the worker must run it, not wait for the next (here far) timer.
#[test]
fn a_timer_due_as_the_worker_goes_idle_is_not_slept_through() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for workers in [1, 2] {
            let rt = Runtime::builder().workers(workers).build().unwrap();
            rt.block_on(|| {
                // Keeps a far timer armed: the next expiration is an hour away.
                drop(kcoro::spawn(|| kcoro::sleep(Duration::from_secs(3600))));
                for _ in 0..2000 {
                    kcoro::sleep(Duration::from_micros(5));
                }
            });
            rt.shutdown_timeout(Duration::from_secs(5));
        }
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(120)).expect("a coroutine slept through its timer");
}

#[test]
fn unpark_at_fires_once_and_cancel_reports_whether_it_was_armed() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let h = rt.handle();
    let fired = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    struct Count(Arc<std::sync::atomic::AtomicUsize>, std::thread::Thread);
    impl kcoro::park::Unpark for Count {
        fn unpark(&self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.1.unpark();
        }
    }
    let who =
        || kcoro::park::Unparker::from_unpark(Arc::new(Count(Arc::clone(&fired), std::thread::current())));
    // Cancelled before its deadline: never fires, and a second cancel finds nothing.
    let far = h.unpark_at(Instant::now() + Duration::from_secs(3600), who());
    assert!(h.cancel_timer(far));
    assert!(!h.cancel_timer(far));
    // Due at once: fires, after which cancel finds nothing.
    let near = h.unpark_at(Instant::now(), who());
    let near = kcoro::TimerId::from_raw(near.into_raw());
    while fired.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        std::thread::park();
    }
    assert!(!h.cancel_timer(near), "a fired timer cannot be cancelled");
    assert_eq!(fired.load(std::sync::atomic::Ordering::SeqCst), 1, "only the armed timer fired");
}
