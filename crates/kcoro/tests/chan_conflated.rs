//! Conflated channels: one slot holding the latest value. A send replaces what is there
//! (the replaced value is reported undelivered) and never waits.
//!
//! Shares its test names with `chan_rendezvous.rs`, `chan_buffered.rs` and
//! `chan_unlimited.rs`; a kind leaves out only tests that cannot apply to it:
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
    let (tx, rx) = chan::conflated::<i32>();
    tx.send(7).unwrap();
    assert_eq!(rx.try_recv(), Ok(7));
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    assert_eq!((tx.kind(), rx.kind()), (Kind::Conflated, Kind::Conflated));
}

#[test]
fn capacity() {
    let (tx, rx) = chan::conflated::<()>();
    assert_eq!(tx.capacity(), Some(1));
    assert_eq!(rx.capacity(), Some(1));
    assert_eq!(rx.snapshot().capacity, Some(1));
    let (tx, _rx) = Builder::<()>::new(Kind::Conflated).capacity(10).build();
    assert_eq!(tx.capacity(), Some(1), "capacity is ignored by conflated");
}

#[test]
fn len_empty_full() {
    let (tx, rx) = chan::conflated::<i32>();
    assert_eq!((tx.len(), rx.len()), (0, 0));
    assert!(tx.is_empty() && rx.is_empty());
    tx.send(1).unwrap();
    assert_eq!((tx.len(), rx.len(), rx.snapshot().len), (1, 1, 1));
    // Never full: another value replaces the first.
    tx.try_send(2).unwrap();
    assert_eq!(rx.len(), 1);
    assert_eq!(rx.recv(), Ok(2));
    assert!(rx.is_empty());
}

#[test]
fn try_recv() {
    let (tx, rx) = chan::conflated::<i32>();
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    tx.send(3).unwrap();
    tx.close();
    // Closed but not drained: the value still comes out.
    assert_eq!(rx.try_recv(), Ok(3));
    assert_eq!(rx.try_recv(), Err(ChanError::Closed));
    let s = rx.snapshot();
    assert_eq!((s.recvs, s.recv_failures.would_block, s.recv_failures.closed), (2, 2, 1));
}

#[test]
fn recv() {
    both(|m| {
        let (tx, rx) = chan::conflated::<i32>();
        let t = tx.clone();
        let sender = m.go(move || {
            kcoro::sleep(SETTLE);
            t.send(1).unwrap();
        });
        assert_eq!(rx.recv(), Ok(1));
        sender.join();
        tx.send(2).unwrap();
        tx.send(3).unwrap();
        assert_eq!(rx.recv(), Ok(3));
        tx.close();
        assert_eq!(rx.recv(), Err(ChanError::Closed));
    });
}

#[test]
fn recv_timeout() {
    common::recv_timeout_then_closed(chan::conflated);
}

#[test]
fn try_send() {
    let (tx, rx) = chan::conflated::<i32>();
    for v in 0..10 {
        tx.try_send(v).unwrap();
    }
    assert_eq!(rx.try_recv(), Ok(9));
    tx.close();
    let err = tx.try_send(10).unwrap_err();
    assert_eq!((err.kind(), err.into_inner()), (ChanError::Closed, 10));
    let s = rx.snapshot();
    assert_eq!((s.sends, s.overflow_drops, s.send_failures.total()), (10, 9, 1));
}

#[test]
fn send() {
    // A send never waits, with or without a receiver.
    both(|m| {
        let (tx, rx) = chan::conflated::<i32>();
        let t = tx.clone();
        let sender = m.go(move || {
            for v in 0..1000 {
                t.send(v).unwrap();
            }
        });
        sender.join();
        assert_eq!(rx.recv(), Ok(999));
        // A receiver that is already waiting gets the value itself.
        let r = rx.clone();
        let receiver = m.go(move || r.recv());
        kcoro::sleep(SETTLE);
        tx.send(1000).unwrap();
        assert_eq!(receiver.join(), Ok(1000));
        assert_eq!(rx.snapshot().sends, 1001);
    });
}

#[test]
fn send_timeout() {
    let (tx, rx) = chan::conflated::<i32>();
    tx.send_timeout(1, Duration::ZERO).unwrap();
    tx.send_timeout(2, Duration::ZERO).unwrap();
    assert_eq!(rx.recv(), Ok(2));
    tx.close();
    let err = tx.send_timeout(3, Duration::ZERO).unwrap_err();
    assert_eq!((err.kind(), err.into_inner()), (ChanError::Closed, 3));
    assert_eq!(rx.snapshot().send_failures.timeout, 0);
}

#[test]
fn close_wakes_receivers() {
    common::close_wakes_receivers(chan::conflated);
}

#[test]
fn recv_after_close_drains() {
    let (tx, rx) = chan::conflated::<i32>();
    for v in 1..=3 {
        tx.send(v).unwrap();
    }
    assert!(tx.close());
    assert!(rx.is_closed());
    assert_eq!(rx.recv(), Ok(3), "only the latest value is left to drain");
    assert_eq!(rx.recv(), Err(ChanError::Closed));
    assert_eq!(rx.iter().count(), 0);
}

#[test]
fn send_after_close_fails_with_value() {
    let (tx, rx) = chan::conflated::<String>();
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
    assert_eq!((s.sends, s.send_failures.closed, s.len, s.undelivered), (0, 4, 0, 0));
}

#[test]
fn cancel_drops_buffered_with_undelivered_callback_once() {
    let (tx, rx, log) = recording(Builder::<i32>::new(Kind::Conflated));
    tx.send(1).unwrap();
    tx.send(2).unwrap(); // replaces 1: undelivered
    assert_eq!(*log.lock().unwrap(), vec![1]);
    assert!(rx.cancel());
    assert_eq!(*log.lock().unwrap(), vec![1, 2]);
    assert_eq!(rx.recv(), Err(ChanError::Closed));
    assert!(!rx.cancel());
    assert_eq!(log.lock().unwrap().len(), 2);
    let s = rx.snapshot();
    assert_eq!((s.undelivered, s.overflow_drops), (2, 1));

    // A close keeps the value to drain; dropping the last receiver discards it.
    let (tx, rx, log) = recording(Builder::<i32>::new(Kind::Conflated));
    tx.send(7).unwrap();
    tx.close();
    assert!(log.lock().unwrap().is_empty());
    drop(rx);
    assert_eq!(*log.lock().unwrap(), vec![7]);
}

#[test]
fn drops() {
    both(|m| {
        let log = DropLog::new(9);
        let (tx, rx) = chan::conflated();
        tx.send(log.value(0)).unwrap();
        tx.send(log.value(1)).unwrap(); // 0: replaced
        assert_eq!(log.drops(0), 1);
        drop(rx.recv().unwrap()); // 1: received
        tx.try_send(log.value(2)).unwrap();
        tx.send_timeout(log.value(3), SHORT).unwrap(); // 2: replaced
        // 4: a losing send clause drops its value (the ready receive is first: biased).
        let (other_tx, other_rx) = chan::buffered::<()>(1);
        other_tx.send(()).unwrap();
        kcoro::select! {
            recv(other_rx) -> v => v.unwrap(),
            send(tx, log.value(4)) -> _ => panic!("the receive is first"),
        }
        // 5: received by a parked party.
        let r = rx.clone();
        drop(rx.recv().unwrap()); // 3: received
        let receiver = m.go(move || drop(r.recv().unwrap()));
        kcoro::sleep(SETTLE);
        tx.send(log.value(5)).unwrap();
        receiver.join();
        tx.send(log.value(6)).unwrap();
        tx.close();
        drop(tx.send(log.value(7)).unwrap_err()); // 7: closed
        assert_eq!(log.drops(6), 0, "the buffered value was dropped early");
        rx.cancel(); // 6: still buffered
        // 8: buffered when both ends are dropped.
        let (tx, rx) = chan::conflated();
        tx.send(log.value(8)).unwrap();
        drop((tx, rx));
        log.assert_each_dropped_once();
    });
}

#[test]
fn counters_exact() {
    let (tx, rx) = chan::conflated::<u32>();
    let cancelled = CancelToken::new();
    cancelled.cancel();
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    tx.send(1).unwrap();
    tx.send(2).unwrap(); // replaces 1
    tx.try_send(3).unwrap(); // replaces 2
    tx.send_timeout(4, SHORT).unwrap(); // replaces 3
    assert_eq!(rx.recv(), Ok(4));
    assert_eq!(rx.recv_timeout(SHORT), Err(ChanError::Timeout));
    assert_eq!(rx.recv_cancellable(&cancelled), Err(ChanError::Canceled));
    // A send never waits, so a cancelled token does not stop it.
    tx.send_cancellable(5, &cancelled).unwrap();
    tx.close();
    assert_eq!(tx.send(6).unwrap_err().kind(), ChanError::Closed);
    assert_eq!(rx.recv(), Ok(5));
    assert_eq!(rx.recv(), Err(ChanError::Closed));

    let s = rx.snapshot();
    assert_eq!((s.kind, s.capacity, s.len, s.closed), (Kind::Conflated, Some(1), 0, true));
    assert_eq!((s.sends, s.recvs, s.bytes_sent, s.bytes_recv), (5, 2, 20, 8));
    assert_eq!(s.send_failures, chan::Failures { closed: 1, ..Default::default() });
    assert_eq!(s.recv_failures, chan::Failures { would_block: 1, timeout: 1, closed: 1, canceled: 1 });
    assert_eq!((s.overflow_drops, s.undelivered, s.rv_matches, s.rv_cancels), (3, 3, 0, 0));
    assert!(s.first_op_ns > 0 && s.last_op_ns >= s.first_op_ns);
}

#[test]
fn mpmc() {
    const PER: u64 = 5_000;
    both(|m| {
        let (tx, rx, log) = recording(Builder::<u64>::new(Kind::Conflated));
        let observer = rx.clone();
        let got = mpmc_exchange(&m, tx, rx, 4, 4, PER);
        let mut dedup = got.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), got.len(), "a value was received twice");
        assert!(!got.is_empty(), "nothing received");
        // Every value sent was received or reported undelivered, exactly once.
        let mut all: Vec<u64> = got.iter().copied().chain(log.lock().unwrap().iter().copied()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..4 * PER).collect::<Vec<_>>());
        let s = observer.snapshot();
        assert_eq!((s.sends, s.recvs), (4 * PER, got.len() as u64));
        assert_eq!(
            (s.overflow_drops, s.undelivered),
            (4 * PER - got.len() as u64, 4 * PER - got.len() as u64)
        );
    });
}

#[test]
fn latest_wins() {
    both(|m| {
        let (tx, rx, log) = recording(Builder::<i32>::new(Kind::Conflated));
        for v in 1..=3 {
            tx.send(v).unwrap();
        }
        assert_eq!(rx.recv(), Ok(3));
        assert_eq!(*log.lock().unwrap(), vec![1, 2]);
        // With a receiver waiting, nothing is replaced: it gets the first value.
        let r = rx.clone();
        let receiver = m.go(move || r.recv());
        kcoro::sleep(SETTLE);
        tx.send(10).unwrap();
        assert_eq!(receiver.join(), Ok(10));
        for v in 11..=13 {
            tx.send(v).unwrap();
        }
        assert_eq!(rx.recv(), Ok(13));
        assert_eq!(*log.lock().unwrap(), vec![1, 2, 11, 12]);
    });
}

#[test]
fn shutdown_unwound_receiver_leaves_no_entry() {
    let rt = kcoro::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = chan::conflated::<u64>();
    let keep = rx.clone(); // the channel stays open after the coroutine's receiver drops
    let h = rt.spawn(move || rx.recv());
    common::eventually("the receiver parks", || (rt.stats().parked == 1).then_some(()));
    assert!(rt.shutdown_timeout(Duration::from_secs(5)));
    assert!(h.join().is_err(), "unwound by shutdown");
    // Nobody is receiving: the value must stay in the slot.
    tx.send(5).unwrap();
    assert_eq!(keep.try_recv(), Ok(5));
}
