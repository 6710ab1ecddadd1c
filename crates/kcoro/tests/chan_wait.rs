//! Waiting and giving up: timeouts, cancellation (which wins over timeouts), close and
//! cancel waking every waiter, undelivered values reported exactly once. Promptness is
//! shown by event order (the waiter's answer arrives long before its own deadline could
//! have ended it), never by measuring time.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kcoro::chan::{self, Builder, ChanError, Kind};
use kcoro::sync::CancelToken;

/// Long enough that reaching it means the wake was missed.
const FOREVER: Duration = Duration::from_secs(3600);
const WATCHDOG: Duration = Duration::from_secs(30);

fn runtime() -> kcoro::Runtime {
    kcoro::Runtime::builder().workers(2).build().expect("runtime")
}

#[test]
fn recv_timeout_expires_never_early_from_coroutine_and_thread() {
    let rt = runtime();
    let (_tx, rx) = chan::rendezvous::<u32>();
    let rx2 = rx.clone();
    let in_coro = rt.spawn(move || {
        let start = Instant::now();
        let r = rx2.recv_timeout(Duration::from_millis(5));
        (r, start.elapsed())
    });
    let start = Instant::now();
    assert_eq!(rx.recv_timeout(Duration::from_millis(5)), Err(ChanError::Timeout));
    assert!(start.elapsed() >= Duration::from_millis(5), "never early (thread)");
    let (r, waited) = in_coro.join_timeout(WATCHDOG).unwrap().unwrap();
    assert_eq!(r, Err(ChanError::Timeout));
    assert!(waited >= Duration::from_millis(5), "never early (coroutine)");
    assert_eq!(rx.snapshot().recv_failures.timeout, 2);
}

#[test]
fn send_timeout_hands_the_value_back() {
    let (tx, _rx) = chan::buffered::<String>(1);
    tx.send("a".into()).unwrap();
    let err = tx.send_timeout("b".into(), Duration::from_millis(2)).unwrap_err();
    assert_eq!(err.kind(), ChanError::Timeout);
    assert_eq!(err.code(), kcoro::code::TIMEOUT);
    assert_eq!(err.into_inner(), "b");
    assert_eq!(tx.len(), 1, "the aborted send left nothing behind");
    assert_eq!(tx.snapshot().send_failures.timeout, 1);
}

/// A waiter parked with an hour-long deadline and a token: cancelling answers it.
fn cancel_wakes(spawn_waiter: impl FnOnce(Box<dyn FnOnce() + Send>)) {
    let token = CancelToken::new();
    let (_tx, rx) = chan::rendezvous::<u32>();
    let (ready_tx, ready_rx) = chan::rendezvous::<()>();
    let (answer_tx, answer_rx) = chan::buffered::<Result<u32, ChanError>>(1);
    let t = token.clone();
    spawn_waiter(Box::new(move || {
        ready_tx.send(()).unwrap();
        let r = rx.recv_with(Some(Instant::now() + FOREVER), Some(&t));
        answer_tx.send(r).unwrap();
    }));
    ready_rx.recv().unwrap();
    token.cancel();
    assert_eq!(answer_rx.recv_timeout(WATCHDOG), Ok(Err(ChanError::Canceled)));
}

#[test]
fn cancel_wakes_a_parked_coroutine() {
    let rt = runtime();
    cancel_wakes(|f| drop(rt.spawn(f)));
}

#[test]
fn cancel_wakes_a_parked_thread() {
    cancel_wakes(|f| drop(std::thread::spawn(f)));
}

#[test]
fn cancel_wins_over_an_expired_timeout() {
    let token = CancelToken::new();
    token.cancel();
    let (tx, rx) = chan::rendezvous::<u32>();
    let past = Instant::now() - Duration::from_millis(1);
    assert_eq!(rx.recv_with(Some(past), Some(&token)), Err(ChanError::Canceled));
    let err = tx.send_with(5, Some(past), Some(&token)).unwrap_err();
    assert_eq!(err.kind(), ChanError::Canceled);
    assert_eq!(err.code(), kcoro::code::CANCELED);
    let snap = tx.snapshot();
    assert_eq!((snap.send_failures.canceled, snap.recv_failures.canceled), (1, 1));
    assert_eq!((snap.send_failures.timeout, snap.recv_failures.timeout), (0, 0));
}

#[test]
fn a_child_token_cancels_through_its_parent() {
    let rt = runtime();
    let parent = CancelToken::new();
    let child = parent.child();
    let (tx, _rx) = chan::rendezvous::<u32>();
    let h = rt.spawn(move || tx.send_cancellable(1, &child).map_err(|e| (e.kind(), e.into_inner())));
    parent.cancel();
    assert_eq!(h.join_timeout(WATCHDOG).unwrap().unwrap(), Err((ChanError::Canceled, 1)));
}

#[test]
fn close_wakes_every_parked_receiver_and_sender() {
    let rt = runtime();
    let (tx, rx) = chan::rendezvous::<u32>();
    let (ready_tx, ready_rx) = chan::unlimited::<()>();
    let receivers: Vec<_> = (0..8)
        .map(|_| {
            let (rx, ready) = (rx.clone(), ready_tx.clone());
            rt.spawn(move || {
                ready.send(()).unwrap();
                rx.recv()
            })
        })
        .collect();
    for _ in 0..8 {
        ready_rx.recv().unwrap();
    }
    tx.close();
    for h in receivers {
        assert_eq!(h.join_timeout(WATCHDOG).unwrap().unwrap(), Err(ChanError::Closed));
    }
    // Senders parked on a full buffered channel get their values back.
    let (tx, rx) = chan::buffered::<u32>(1);
    tx.send(0).unwrap();
    let senders: Vec<_> = (1..=4u32)
        .map(|i| {
            let (tx, ready) = (tx.clone(), ready_tx.clone());
            rt.spawn(move || {
                ready.send(()).unwrap();
                tx.send(i).map_err(|e| e.into_inner())
            })
        })
        .collect();
    for _ in 0..4 {
        ready_rx.recv().unwrap();
    }
    rx.close();
    let mut back: Vec<u32> = senders
        .into_iter()
        .map(|h| h.join_timeout(WATCHDOG).unwrap().unwrap())
        .filter_map(Result::err)
        .collect();
    back.sort_unstable();
    // A sender that had not parked yet when close came fails as well: all four come back.
    assert_eq!(back, vec![1, 2, 3, 4]);
    assert_eq!(rx.recv(), Ok(0), "buffered values still drain after close");
    assert_eq!(rx.recv(), Err(ChanError::Closed));
}

#[test]
fn undelivered_callback_runs_once_per_dropped_value() {
    for kind in [Kind::Buffered, Kind::Unlimited, Kind::Conflated] {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let (tx, rx) =
            Builder::<u32>::new(kind).capacity(8).on_undelivered(move |v| s.lock().unwrap().push(v)).build();
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.recv(), Ok(if kind == Kind::Conflated { 4 } else { 0 }));
        tx.send(5).unwrap();
        rx.cancel();
        rx.cancel(); // idempotent: nothing reported twice
        drop(rx);
        let mut got = seen.lock().unwrap().clone();
        got.sort_unstable();
        let expect: Vec<u32> = match kind {
            Kind::Conflated => vec![0, 1, 2, 3, 5], // 0..3 overwritten, 4 received, 5 cancelled
            _ => vec![1, 2, 3, 4, 5],
        };
        assert_eq!(got, expect, "{kind:?}");
        assert_eq!(tx.snapshot().undelivered, expect.len() as u64);
        assert!(tx.send(9).unwrap_err().is_closed());
    }
}

#[test]
fn last_receiver_dropped_reports_buffered_values() {
    let n = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&n);
    let (tx, rx) = Builder::<u32>::buffered(4)
        .on_undelivered(move |_| {
            c.fetch_add(1, SeqCst);
        })
        .build();
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    let rx2 = rx.clone();
    drop(rx);
    assert_eq!(n.load(SeqCst), 0, "a receiver is still alive");
    drop(rx2);
    assert_eq!(n.load(SeqCst), 2);
    assert!(tx.send(3).unwrap_err().is_closed());
    drop(tx);
    assert_eq!(n.load(SeqCst), 2, "nothing reported twice when the channel goes away");
}

#[test]
fn close_and_cancel_race_with_traffic() {
    // Values are conserved whatever the interleaving of sends, receives, close, cancel.
    let rt = runtime();
    for round in 0..50u64 {
        let undelivered = Arc::new(AtomicU64::new(0));
        let u = Arc::clone(&undelivered);
        let (tx, rx) = Builder::<u64>::buffered(4)
            .on_undelivered(move |_| {
                u.fetch_add(1, SeqCst);
            })
            .build();
        let sent = Arc::new(AtomicU64::new(0));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (tx, sent) = (tx.clone(), Arc::clone(&sent));
                rt.spawn(move || {
                    while tx.send(1).is_ok() {
                        sent.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        let rx2 = rx.clone();
        let receiver = rt.spawn(move || rx2.iter().count() as u64);
        for _ in 0..round {
            kcoro::yield_now();
        }
        if round % 2 == 0 {
            rx.cancel()
        } else {
            tx.close()
        };
        if round % 2 == 1 {
            rx.cancel();
        }
        for s in senders {
            s.join_timeout(WATCHDOG).unwrap().unwrap();
        }
        let received = receiver.join_timeout(WATCHDOG).unwrap().unwrap();
        assert_eq!(received + undelivered.load(SeqCst), sent.load(SeqCst), "round {round}");
    }
}

#[test]
fn async_ops_under_tokio() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let (tx, rx) = chan::rendezvous::<u64>();
    let (done_tx, done_rx) = chan::unlimited::<u64>();
    rt.block_on(async move {
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    for i in 0..1000 {
                        tx.send_async(p * 1000 + i).await.unwrap();
                    }
                })
            })
            .collect();
        drop(tx);
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (rx, done) = (rx.clone(), done_tx.clone());
                tokio::spawn(async move {
                    let mut sum = 0;
                    while let Ok(v) = rx.recv_async().await {
                        sum += v;
                    }
                    done.send(sum).unwrap();
                })
            })
            .collect();
        for p in producers {
            p.await.unwrap();
        }
        for c in consumers {
            c.await.unwrap();
        }
    });
    assert_eq!(done_rx.iter().sum::<u64>(), (0..4000).sum::<u64>());
}

#[test]
fn abandoned_async_recv_leaves_no_waiter_behind() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let (tx, rx) = chan::rendezvous::<u32>();
    rt.block_on(async {
        let r = tokio::time::timeout(Duration::from_millis(2), rx.recv_async()).await;
        assert!(r.is_err(), "nothing was sent");
    });
    // The dropped future withdrew its entry: nobody is waiting now.
    assert_eq!(tx.try_send(1).unwrap_err().kind(), ChanError::WouldBlock);
    let snap = tx.snapshot();
    assert_eq!(snap.recv_failures.canceled, 1, "an abandoned receive counts as canceled");
}

#[test]
fn stream_yields_until_close() {
    use std::pin::Pin;
    use std::task::{Context, Poll};
    struct Collect<S>(S, Vec<u32>);
    impl<S: futures_core::Stream<Item = u32> + Unpin> std::future::Future for Collect<S> {
        type Output = Vec<u32>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<u32>> {
            loop {
                match Pin::new(&mut self.0).poll_next(cx) {
                    Poll::Ready(Some(v)) => self.1.push(v),
                    Poll::Ready(None) => return Poll::Ready(std::mem::take(&mut self.1)),
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let (tx, rx) = chan::buffered::<u32>(2);
    let t = std::thread::spawn(move || {
        for i in 0..100 {
            tx.send(i).unwrap();
        }
    });
    let got = rt.block_on(Collect(rx.stream(), Vec::new()));
    t.join().unwrap();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
}

/// Waits until `cond` holds on the channel's snapshot (the parked party gets there on its
/// own schedule); fails after the watchdog.
fn until_snapshot(rx: &chan::Receiver<u32>, cond: impl Fn(&chan::Snapshot) -> bool) -> chan::Snapshot {
    let deadline = Instant::now() + WATCHDOG;
    loop {
        let s = rx.snapshot();
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "snapshot never matched: {s:?}");
        std::thread::yield_now();
    }
}

#[test]
fn snapshots_count_parked_senders_and_receivers_and_carry_a_unique_id() {
    let rt = runtime();
    let (tx, rx) = Builder::<u32>::new(Kind::Buffered).capacity(1).name("parked-count").build();
    assert_eq!((rx.snapshot().parked_senders, rx.snapshot().parked_receivers), (0, 0));
    tx.send(1).unwrap();
    // Two coroutines and one thread park sending into the full buffer.
    let senders: Vec<_> = (2..4)
        .map(|v| {
            let tx = tx.clone();
            rt.spawn(move || tx.send(v))
        })
        .collect();
    let tx3 = tx.clone();
    let thread = std::thread::spawn(move || tx3.send(4));
    let s = until_snapshot(&rx, |s| s.parked_senders == 3);
    assert_eq!((s.len, s.parked_receivers), (1, 0));
    let mut got: Vec<u32> = (0..4).map(|_| rx.recv().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, [1, 2, 3, 4]);
    for h in senders {
        h.join().unwrap().unwrap();
    }
    thread.join().unwrap().unwrap();
    assert_eq!(rx.snapshot().parked_senders, 0, "delivered senders are not counted");

    // A receiver that timed out is no longer counted either.
    let rx2 = rx.clone();
    let waiting = rt.spawn(move || rx2.recv_timeout(FOREVER));
    until_snapshot(&rx, |s| s.parked_receivers == 1);
    let rx3 = rx.clone();
    let gave_up = std::thread::spawn(move || rx3.recv_timeout(Duration::from_millis(20)));
    assert_eq!(gave_up.join().unwrap(), Err(ChanError::Timeout));
    assert_eq!(until_snapshot(&rx, |s| s.parked_receivers == 1).parked_receivers, 1);
    tx.send(9).unwrap();
    assert_eq!(waiting.join().unwrap(), Ok(9));
    assert_eq!(rx.snapshot().parked_receivers, 0);

    let (other, _) = chan::buffered::<u32>(1);
    assert!(rx.snapshot().id != 0 && other.snapshot().id != rx.snapshot().id, "ids are unique");
    assert_eq!(tx.snapshot().id, rx.snapshot().id, "both ends report the channel's id");
}
