//! Cancellation tokens wake coroutines, threads and futures at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use kcoro::Runtime;
use kcoro::sync::CancelToken;

#[test]
fn parked_coroutines_wake_on_cancel_of_an_ancestor() {
    let rt = Runtime::builder().workers(2).build().unwrap();
    let root = CancelToken::new();
    let waiting = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let token = if i % 2 == 0 { root.child() } else { root.child().child() };
            let waiting = Arc::clone(&waiting);
            rt.spawn(move || {
                waiting.fetch_add(1, SeqCst);
                token.cancelled();
                token.is_cancelled()
            })
        })
        .collect();
    while waiting.load(SeqCst) < 100 {
        std::thread::sleep(Duration::from_millis(1));
    }
    root.cancel();
    for h in handles {
        // A watchdog rather than a hang if a wake were lost.
        assert!(h.join_timeout(Duration::from_secs(20)).expect("woken by the cancel").unwrap());
    }
    assert_eq!(rt.stats().parked, 0);
}

#[test]
fn cancel_wakes_a_deadline_wait_long_before_its_deadline() {
    let rt = Runtime::builder().workers(1).build().unwrap();
    let token = CancelToken::new();
    let t2 = token.clone();
    let waiter = rt.spawn(move || t2.cancelled_deadline(Instant::now() + Duration::from_secs(3600)));
    let canceller = rt.spawn(move || {
        kcoro::sleep(Duration::from_millis(2));
        token.cancel();
    });
    canceller.join().unwrap();
    // By event order: the waiter returns `true` (cancelled), which it can only do once the
    // cancel happened, and it did not wait for its hour-long deadline (join_timeout).
    let cancelled = waiter.join_timeout(Duration::from_secs(20)).expect("woken by the cancel").unwrap();
    assert!(cancelled);
    assert_eq!(rt.stats().timers_armed, 0, "the deadline's timer was disarmed");
}

#[test]
fn cancelled_future_completes_on_cancel() {
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let token = CancelToken::new();
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(Arc::clone(&count));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(token.cancelled_async());
    assert!(fut.as_mut().poll(&mut cx).is_pending());
    assert!(fut.as_mut().poll(&mut cx).is_pending(), "re-polling re-registers");
    token.child().cancel(); // a child's cancel does not reach the parent
    assert_eq!(count.0.load(SeqCst), 0);
    token.cancel();
    assert_eq!(count.0.load(SeqCst), 1, "woken exactly once");
    assert!(matches!(fut.as_mut().poll(&mut cx), Poll::Ready(())));
}

#[test]
fn cancelled_error_maps_to_ecanceled() {
    assert_eq!(kcoro::sync::Cancelled.code(), kcoro::code::CANCELED);
    assert_eq!(kcoro::code::CANCELED, -125);
}
