//! Shutdown cancels sleepers, unwinds parked coroutines (destructors run) and leaks no
//! stack.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use kcoro::{JoinError, Runtime};

struct CountDrop(Arc<AtomicUsize>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[test]
fn shutdown_with_sleepers_and_parked_leaks_nothing() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let dropped = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let mut joins = Vec::new();
    for i in 0..200 {
        let (d, s) = (Arc::clone(&dropped), Arc::clone(&started));
        joins.push(rt.spawn(move || {
            let _guard = CountDrop(d);
            s.fetch_add(1, SeqCst);
            if i % 2 == 0 {
                kcoro::sleep(Duration::from_secs(3600));
            } else {
                loop {
                    kcoro::park::park();
                }
            }
        }));
    }
    // Some never start: spawned after the workers are told to stop is impossible, so
    // spawn a batch that sits queued behind a busy coroutine on a full runtime instead.
    while started.load(SeqCst) < 200 {
        std::thread::sleep(Duration::from_millis(1));
    }
    // The last to start may not have suspended yet: wait until all 200 are parked (bounded,
    // so a coroutine that never parks fails the assertion below instead of hanging).
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let st = handle.stats();
        if st.parked == 200 || Instant::now() > deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(before.stacks_live, 200);
    assert_eq!(before.parked, 200, "{before:?}");
    assert!(rt.shutdown_timeout(Duration::from_secs(10)), "clean shutdown");
    assert_eq!(dropped.load(SeqCst), 200, "every parked coroutine was unwound");
    let after = handle.stats();
    assert_eq!(after.stacks_live, 0, "no stack leaked: {after:?}");
    assert_eq!(after.leaked, 0);
    for j in joins {
        assert!(matches!(j.join(), Err(JoinError::Cancelled)));
    }
    // Spawning on a shut-down runtime fails cleanly.
    assert!(matches!(handle.spawn(|| ()).join(), Err(JoinError::Spawn(kcoro::Error::ShuttingDown))));
}

#[test]
fn dropping_the_runtime_unwinds_unstarted_coroutines_too() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let handle;
    {
        let rt = Runtime::builder().workers(1).build().unwrap();
        handle = rt.handle();
        let hog = CountDrop(Arc::clone(&dropped));
        // The first coroutine keeps the only worker busy until shutdown, so most of the
        // rest never start: their closures (and captures) are dropped unrun.
        rt.spawn(move || {
            let _g = hog;
            loop {
                kcoro::sleep(Duration::from_millis(1));
            }
        });
        for _ in 0..50 {
            let d = Arc::clone(&dropped);
            let g = CountDrop(d);
            rt.spawn(move || drop(g));
        }
    }
    assert_eq!(dropped.load(SeqCst), 51);
    assert_eq!(handle.stats().stacks_live, 0);
}

/// Records the thread its value is dropped on.
struct DropThread(Arc<std::sync::Mutex<Vec<(String, String)>>>, String);

impl Drop for DropThread {
    fn drop(&mut self) {
        let here = std::thread::current().name().unwrap_or("?").to_string();
        self.0.lock().unwrap().push((self.1.clone(), here));
    }
}

#[test]
fn started_coroutines_are_unwound_on_their_own_worker() {
    // A started coroutine may hold thread-bound data on its stack, so shutdown must run its
    // destructors on the worker it ran on, never on the thread that drops the runtime.
    let rt = Runtime::builder().workers(2).build().unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Arc::new(AtomicUsize::new(0));
    for _ in 0..50 {
        let (log, started) = (Arc::clone(&log), Arc::clone(&started));
        drop(rt.spawn(move || {
            let home = std::thread::current().name().unwrap_or("?").to_string();
            let _guard = DropThread(log, home);
            started.fetch_add(1, SeqCst);
            loop {
                kcoro::park::park();
            }
        }));
    }
    while started.load(SeqCst) < 50 {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(rt);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 50);
    for (home, dropped_on) in log.iter() {
        assert!(home.starts_with("kcoro-worker-"), "{home}");
        assert_eq!(home, dropped_on, "unwound on a different thread than it ran on");
    }
}

#[test]
fn dropping_the_runtime_inside_its_own_coroutine_does_not_hang() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let handle = rt.handle();
    let dropper = handle.spawn(move || {
        drop(rt);
        "dropped"
    });
    let result = dropper.join_timeout(Duration::from_secs(20)).expect("the drop returned");
    assert_eq!(result.unwrap(), "dropped");
    assert!(matches!(handle.spawn(|| ()).join(), Err(JoinError::Spawn(kcoro::Error::ShuttingDown))));
}
