//! Unlimited channels: a FIFO that grows without bound, so a send never waits.
//!
//! Shares its test names with `chan_rendezvous.rs`, `chan_buffered.rs` and
//! `chan_conflated.rs`; a kind leaves out only tests that cannot apply to it:
//! `close_wakes_senders` (no sender ever waits) and `fairness` (which of several parked
//! receivers a send reaches depends on when each one parked). Blocking tests run with
//! coroutines and with threads (`common::both`).

use crate::common;

use std::time::Duration;

use common::{DropLog, SETTLE, both, mpmc_exchange, recording};
use kcoro::chan::{self, Builder, ChanError, Kind};
use kcoro::sync::CancelToken;

const SHORT: Duration = Duration::from_millis(1);

#[test]
fn smoke() {
    let (tx, rx) = chan::unlimited::<i32>();
    tx.send(7).unwrap();
    assert_eq!(rx.try_recv(), Ok(7));
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    assert_eq!((tx.kind(), rx.kind()), (Kind::Unlimited, Kind::Unlimited));
}

#[test]
fn capacity() {
    let (tx, rx) = chan::unlimited::<()>();
    assert_eq!(tx.capacity(), None);
    assert_eq!(rx.capacity(), None);
    assert_eq!(rx.snapshot().capacity, None);
    let (tx, _rx) = Builder::<()>::new(Kind::Unlimited).capacity(10).build();
    assert_eq!(tx.capacity(), None, "capacity is ignored by unlimited");
}

#[test]
fn len_empty_full() {
    let (tx, rx) = chan::unlimited::<usize>();
    assert_eq!((tx.len(), rx.len()), (0, 0));
    assert!(tx.is_empty() && rx.is_empty());
    // Never full.
    for v in 0..1000 {
        tx.try_send(v).unwrap();
        assert_eq!(rx.len(), v + 1);
    }
    assert!(!rx.is_empty());
    assert_eq!(rx.snapshot().len, 1000);
    rx.recv().unwrap();
    assert_eq!(tx.len(), 999);
    assert_eq!(rx.try_iter().count(), 999);
    assert!(rx.is_empty());
}

#[test]
fn try_recv() {
    let (tx, rx) = chan::unlimited::<i32>();
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(rx.try_recv(), Ok(1));
    tx.close();
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Err(ChanError::Closed));
    let s = rx.snapshot();
    assert_eq!((s.recvs, s.recv_failures.would_block, s.recv_failures.closed), (2, 1, 1));
}

#[test]
fn recv() {
    both(|m| {
        let (tx, rx) = chan::unlimited::<i32>();
        let t = tx.clone();
        let sender = m.go(move || {
            kcoro::sleep(SETTLE);
            t.send(1).unwrap();
        });
        assert_eq!(rx.recv(), Ok(1));
        sender.join();
        tx.send(2).unwrap();
        tx.send(3).unwrap();
        tx.close();
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(rx.recv(), Ok(3));
        assert_eq!(rx.recv(), Err(ChanError::Closed));
    });
}

#[test]
fn recv_timeout() {
    common::recv_timeout_then_closed(chan::unlimited);
}

#[test]
fn try_send() {
    let (tx, rx) = chan::unlimited::<i32>();
    for v in 0..100 {
        tx.try_send(v).unwrap();
    }
    tx.close();
    let err = tx.try_send(100).unwrap_err();
    assert_eq!((err.kind(), err.into_inner()), (ChanError::Closed, 100));
    assert_eq!(rx.iter().collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());
}

#[test]
fn send() {
    // A send never waits, with or without a receiver.
    both(|m| {
        let (tx, rx) = chan::unlimited::<i32>();
        let t = tx.clone();
        let sender = m.go(move || {
            for v in 0..1000 {
                t.send(v).unwrap();
            }
        });
        sender.join();
        assert_eq!(rx.len(), 1000);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), (0..1000).collect::<Vec<_>>());
        // A receiver that is already waiting gets the value itself.
        let r = rx.clone();
        let receiver = m.go(move || r.recv());
        kcoro::sleep(SETTLE);
        tx.send(1000).unwrap();
        assert_eq!(receiver.join(), Ok(1000));
        assert!(rx.is_empty());
    });
}

#[test]
fn send_timeout() {
    let (tx, rx) = chan::unlimited::<i32>();
    for v in 0..10 {
        tx.send_timeout(v, Duration::ZERO).unwrap();
    }
    tx.close();
    let err = tx.send_timeout(10, Duration::ZERO).unwrap_err();
    assert_eq!((err.kind(), err.into_inner()), (ChanError::Closed, 10));
    assert_eq!(rx.iter().count(), 10);
    assert_eq!(rx.snapshot().send_failures.timeout, 0);
}

#[test]
fn close_wakes_receivers() {
    common::close_wakes_receivers(chan::unlimited);
}

#[test]
fn recv_after_close_drains() {
    let (tx, rx) = chan::unlimited::<i32>();
    for v in 0..100 {
        tx.send(v).unwrap();
    }
    assert!(tx.close());
    assert!(rx.is_closed());
    for v in 0..100 {
        assert_eq!(rx.len(), 100 - v as usize);
        assert_eq!(rx.recv(), Ok(v));
    }
    assert_eq!(rx.recv(), Err(ChanError::Closed));
    assert_eq!(rx.iter().count(), 0);
}

#[test]
fn send_after_close_fails_with_value() {
    let (tx, rx) = chan::unlimited::<String>();
    tx.close();
    let back = |r: Result<(), chan::SendError<String>>| {
        let e = r.unwrap_err();
        assert!(e.is_closed());
        e.into_inner()
    };
    assert_eq!(back(tx.send("a".into())), "a");
    assert_eq!(back(tx.try_send("b".into())), "b");
    assert_eq!(back(tx.send_timeout("c".into(), SHORT)), "c");
    assert_eq!(back(kcoro::select! { send(tx, "d".to_string()) -> r => r }), "d");
    let s = rx.snapshot();
    assert_eq!((s.sends, s.send_failures.closed, s.len), (0, 4, 0));
}

#[test]
fn cancel_drops_buffered_with_undelivered_callback_once() {
    let (tx, rx, log) = recording(Builder::<i32>::new(Kind::Unlimited));
    for v in 0..1000 {
        tx.send(v).unwrap();
    }
    assert_eq!(rx.recv(), Ok(0));
    assert!(rx.cancel());
    assert_eq!(*log.lock().unwrap(), (1..1000).collect::<Vec<_>>());
    assert_eq!(rx.recv(), Err(ChanError::Closed));
    assert!(!rx.cancel());
    assert_eq!(log.lock().unwrap().len(), 999);
    let s = rx.snapshot();
    assert_eq!((s.undelivered, s.overflow_drops, s.len), (999, 0, 0));

    // A close keeps values to drain; dropping the last receiver discards what is left.
    let (tx, rx, log) = recording(Builder::<i32>::new(Kind::Unlimited));
    for v in 0..3 {
        tx.send(v).unwrap();
    }
    tx.close();
    assert_eq!(rx.recv(), Ok(0));
    assert!(log.lock().unwrap().is_empty());
    drop(rx);
    assert_eq!(*log.lock().unwrap(), vec![1, 2]);
}

#[test]
fn drops() {
    both(|m| {
        let log = DropLog::new(10);
        let (tx, rx) = chan::unlimited();
        for id in 0..4 {
            tx.send(log.value(id)).unwrap();
        }
        drop(rx.recv().unwrap()); // 0: received
        tx.try_send(log.value(4)).unwrap();
        tx.send_timeout(log.value(5), SHORT).unwrap();
        // 6: a losing send clause drops its value (the ready receive is first: biased).
        kcoro::select! {
            recv(rx) -> v => assert_eq!(v.unwrap().id, 1), // 1: received
            send(tx, log.value(6)) -> _ => panic!("the receive is first"),
        }
        // 7: received by a parked party, once everything before it is drained.
        for id in 2..=5 {
            assert_eq!(rx.recv().unwrap().id, id); // 2..=5: received
        }
        let r = rx.clone();
        let receiver = m.go(move || drop(r.recv().unwrap()));
        kcoro::sleep(SETTLE);
        tx.send(log.value(7)).unwrap();
        receiver.join();
        tx.send(log.value(8)).unwrap();
        tx.close();
        drop(tx.send(log.value(9)).unwrap_err()); // 9: closed
        assert_eq!(log.drops(8), 0, "a buffered value was dropped early");
        drop((tx, rx)); // 8: still buffered when both ends go
        log.assert_each_dropped_once();
    });
}

#[test]
fn counters_exact() {
    let (tx, rx) = chan::unlimited::<u32>();
    let cancelled = CancelToken::new();
    cancelled.cancel();
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    tx.send(1).unwrap();
    tx.try_send(2).unwrap();
    tx.send_timeout(3, Duration::ZERO).unwrap();
    // A send never waits, so a cancelled token does not stop it.
    tx.send_cancellable(4, &cancelled).unwrap();
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv_timeout(SHORT), Ok(2));
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(rx.recv_cancellable(&cancelled), Ok(4), "a ready value comes out despite the token");
    assert_eq!(rx.recv_timeout(SHORT), Err(ChanError::Timeout));
    assert_eq!(rx.recv_cancellable(&cancelled), Err(ChanError::Canceled));
    tx.close();
    assert_eq!(tx.send(5).unwrap_err().kind(), ChanError::Closed);
    assert_eq!(rx.recv(), Err(ChanError::Closed));

    let s = rx.snapshot();
    assert_eq!((s.kind, s.capacity, s.len, s.closed), (Kind::Unlimited, None, 0, true));
    assert_eq!((s.sends, s.recvs, s.bytes_sent, s.bytes_recv), (4, 4, 16, 16));
    assert_eq!(s.send_failures, chan::Failures { closed: 1, ..Default::default() });
    assert_eq!(s.recv_failures, chan::Failures { would_block: 1, timeout: 1, closed: 1, canceled: 1 });
    assert_eq!((s.overflow_drops, s.undelivered, s.rv_matches, s.rv_cancels), (0, 0, 0, 0));
    assert!(s.first_op_ns > 0 && s.last_op_ns >= s.first_op_ns);

    // Payload bytes.
    let (tx, rx) = Builder::<String>::new(Kind::Unlimited).count_payload_bytes().build();
    tx.send("abc".into()).unwrap();
    tx.send("hello".into()).unwrap();
    assert_eq!(rx.recv().as_deref(), Ok("abc"));
    let s = rx.snapshot();
    assert_eq!((s.sends, s.recvs, s.bytes_sent, s.bytes_recv), (2, 1, 8, 3));
}

#[test]
fn mpmc() {
    const PER: u64 = 5_000;
    both(|m| {
        let (tx, rx) = chan::unlimited::<u64>();
        let observer = rx.clone();
        let got = mpmc_exchange(&m, tx, rx, 4, 4, PER);
        assert_eq!(got, (0..4 * PER).collect::<Vec<_>>(), "each value received exactly once");
        let s = observer.snapshot();
        assert_eq!((s.sends, s.recvs, s.undelivered), (4 * PER, 4 * PER, 0));
    });
}

/// The C runtime this replaces overran its ring on blocking sends to a full unlimited
/// channel: a blocking send with no receiver must grow the queue, in order.
#[test]
fn unlimited_blocking_send_grows() {
    const N: usize = 100_000;
    both(|m| {
        let (tx, rx) = chan::unlimited::<usize>();
        let sender = m.go(move || {
            for v in 0..N {
                tx.send(v).unwrap();
            }
        });
        sender.join();
        assert_eq!(rx.len(), N);
        for v in 0..N {
            assert_eq!(rx.recv(), Ok(v));
        }
        assert_eq!(rx.recv(), Err(ChanError::Closed), "the sender is gone");
        let s = rx.snapshot();
        assert_eq!((s.sends, s.recvs, s.send_failures.total()), (N as u64, N as u64, 0));
    });
}

#[test]
fn shutdown_unwound_receiver_leaves_no_entry() {
    let rt = kcoro::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = chan::unlimited::<u64>();
    let keep = rx.clone(); // the channel stays open after the coroutine's receiver drops
    let h = rt.spawn(move || rx.recv());
    common::eventually("the receiver parks", || (rt.stats().parked == 1).then_some(()));
    assert!(rt.shutdown_timeout(Duration::from_secs(5)));
    assert!(h.join().is_err(), "unwound by shutdown");
    // Nobody is receiving: the value must be queued.
    tx.send(5).unwrap();
    assert_eq!(keep.try_recv(), Ok(5));
}
