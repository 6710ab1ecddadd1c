//! Rendezvous channels: no buffer, so a send completes only when a receiver takes its
//! value.
//!
//! Shares its test names with `chan_buffered.rs`, `chan_conflated.rs` and
//! `chan_unlimited.rs`; a kind leaves out only tests that cannot apply to it. Blocking
//! tests run with coroutines and with threads (`common::both`). `fairness` is left out:
//! which of several parked parties a hand-off reaches depends on when each one parked,
//! which no test can fix without timing.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use common::{DropLog, SETTLE, WATCHDOG, both, eventually, join_all, mpmc_exchange, recording};
use kcoro::chan::{self, Builder, ChanError, Kind};
use kcoro::sync::CancelToken;

const SHORT: Duration = Duration::from_millis(1);

#[test]
fn smoke() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        let sender = m.go(move || tx.send(7).unwrap());
        assert_eq!(rx.recv(), Ok(7));
        sender.join();
        assert_eq!(rx.try_recv(), Err(ChanError::Closed), "the only sender is gone");
        assert_eq!(rx.kind(), Kind::Rendezvous);
    });
}

#[test]
fn capacity() {
    let (tx, rx) = chan::rendezvous::<()>();
    assert_eq!(tx.capacity(), Some(0));
    assert_eq!(rx.capacity(), Some(0));
    assert_eq!(rx.snapshot().capacity, Some(0));
    let (tx, _rx) = Builder::<()>::new(Kind::Rendezvous).capacity(10).build();
    assert_eq!(tx.capacity(), Some(0), "capacity is ignored by rendezvous");
}

#[test]
fn len_empty_full() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        assert_eq!((tx.len(), rx.len()), (0, 0));
        assert!(tx.is_empty() && rx.is_empty());
        // Always "full": a try finds no room.
        assert_eq!(tx.try_send(1).unwrap_err().kind(), ChanError::WouldBlock);
        // A parked sender's value is not buffered.
        let t = tx.clone();
        let sender = m.go(move || t.send(2).unwrap());
        kcoro::sleep(SETTLE);
        assert_eq!((rx.len(), rx.snapshot().len), (0, 0));
        assert!(rx.is_empty());
        assert_eq!(rx.recv(), Ok(2));
        sender.join();
        assert!(rx.is_empty());
    });
}

#[test]
fn try_recv() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
        // Succeeds once a sender is parked.
        let t = tx.clone();
        let sender = m.go(move || t.send(1).unwrap());
        assert_eq!(eventually("a parked sender", || rx.try_recv().ok()), 1);
        sender.join();
        assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
        tx.close();
        assert_eq!(rx.try_recv(), Err(ChanError::Closed));
        assert_eq!(rx.snapshot().recv_failures.closed, 1);
    });
}

#[test]
fn recv() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        let t = tx.clone();
        let sender = m.go(move || {
            kcoro::sleep(SETTLE);
            t.send(1).unwrap();
        });
        assert_eq!(rx.recv(), Ok(1));
        sender.join();
        tx.close();
        assert_eq!(rx.recv(), Err(ChanError::Closed));
    });
}

#[test]
fn recv_timeout() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        assert_eq!(rx.recv_timeout(SHORT), Err(ChanError::Timeout));
        let t = tx.clone();
        let sender = m.go(move || {
            kcoro::sleep(SETTLE);
            t.send(1).unwrap();
        });
        assert_eq!(rx.recv_timeout(WATCHDOG), Ok(1));
        sender.join();
        tx.close();
        assert_eq!(rx.recv_timeout(WATCHDOG), Err(ChanError::Closed));
        let s = rx.snapshot();
        assert_eq!((s.recv_failures.timeout, s.recv_failures.closed), (1, 1));
    });
}

#[test]
fn try_send() {
    let (tx, rx) = chan::rendezvous::<i32>();
    let err = tx.try_send(1).unwrap_err();
    assert_eq!((err.kind(), err.into_inner()), (ChanError::WouldBlock, 1));
    tx.close();
    let err = tx.try_send(2).unwrap_err();
    assert_eq!((err.kind(), err.into_inner()), (ChanError::Closed, 2));
    let s = rx.snapshot();
    assert_eq!((s.sends, s.send_failures.would_block, s.send_failures.closed), (0, 1, 1));
}

#[test]
fn send() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        // A send waits until a receiver takes the value.
        let done = Arc::new(AtomicBool::new(false));
        let (t, d) = (tx.clone(), Arc::clone(&done));
        let sender = m.go(move || {
            t.send(1).unwrap();
            d.store(true, SeqCst);
        });
        kcoro::sleep(SETTLE);
        assert!(!done.load(SeqCst), "a send completed without a receiver");
        assert_eq!(rx.recv(), Ok(1));
        sender.join();
        assert!(done.load(SeqCst));
        // A receiver that is already waiting takes it at once.
        let r = rx.clone();
        let receiver = m.go(move || r.recv());
        kcoro::sleep(SETTLE);
        tx.send(2).unwrap();
        assert_eq!(receiver.join(), Ok(2));
    });
}

#[test]
fn send_timeout() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        let err = tx.send_timeout(1, SHORT).unwrap_err();
        assert_eq!((err.kind(), err.into_inner()), (ChanError::Timeout, 1));
        let r = rx.clone();
        let receiver = m.go(move || {
            kcoro::sleep(SETTLE);
            r.recv()
        });
        tx.send_timeout(2, WATCHDOG).unwrap();
        assert_eq!(receiver.join(), Ok(2));
        let s = tx.snapshot();
        assert_eq!((s.send_failures.timeout, s.sends), (1, 1));
    });
}

#[test]
fn close_wakes_receivers() {
    common::close_wakes_receivers(chan::rendezvous);
}

#[test]
fn close_wakes_senders() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        let mut parties = Vec::new();
        for v in 1..=3 {
            let t = tx.clone();
            parties.push(m.go(move || t.send(v).map_err(|e| (e.kind(), e.into_inner()))));
        }
        let t = tx.clone();
        parties.push(m.go(move || t.send_timeout(4, WATCHDOG).map_err(|e| (e.kind(), e.into_inner()))));
        let t = tx.clone();
        parties.push(m.go(move || {
            kcoro::select! { send(t, 5) -> r => r.map_err(|e| (e.kind(), e.into_inner())) }
        }));
        kcoro::sleep(SETTLE);
        assert!(rx.close());
        for (v, result) in (1..=5).zip(join_all(parties)) {
            assert_eq!(result, Err((ChanError::Closed, v)));
        }
        assert_eq!(rx.recv(), Err(ChanError::Closed));
        let s = rx.snapshot();
        assert_eq!((s.sends, s.send_failures.closed), (0, 5));
    });
}

#[test]
fn recv_after_close_drains() {
    // Nothing is ever buffered, so there is nothing to drain: a parked sender's value is
    // not delivered after the close, it goes back to its sender.
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        let t = tx.clone();
        let sender = m.go(move || t.send(1).map_err(|e| (e.kind(), e.into_inner())));
        kcoro::sleep(SETTLE);
        assert!(tx.close());
        assert_eq!(rx.recv(), Err(ChanError::Closed));
        assert_eq!(sender.join(), Err((ChanError::Closed, 1)));
        assert_eq!(rx.iter().count(), 0);
    });
}

#[test]
fn send_after_close_fails_with_value() {
    let (tx, rx) = chan::rendezvous::<String>();
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
    assert_eq!((s.sends, s.send_failures.closed, s.rv_cancels), (0, 4, 0));
}

#[test]
fn cancel_drops_buffered_with_undelivered_callback_once() {
    // Nothing is buffered, so the callback never runs: parked senders get their values
    // back instead.
    both(|m| {
        let (tx, rx, log) = recording(Builder::<i32>::new(Kind::Rendezvous));
        let t = tx.clone();
        let sender = m.go(move || t.send(3).map_err(|e| (e.kind(), e.into_inner())));
        kcoro::sleep(SETTLE);
        assert!(rx.cancel());
        assert_eq!(sender.join(), Err((ChanError::Closed, 3)));
        assert!(!rx.cancel());
        assert_eq!(rx.recv(), Err(ChanError::Closed));
        assert!(log.lock().unwrap().is_empty());
        assert_eq!(rx.snapshot().undelivered, 0);
    });
}

#[test]
fn drops() {
    both(|m| {
        let log = DropLog::new(7);
        let (tx, rx) = chan::rendezvous();
        let r = rx.clone();
        let receiver = m.go(move || drop(r.recv().unwrap()));
        tx.send(log.value(0)).unwrap(); // 0: handed off, dropped by the receiver
        receiver.join();
        drop(tx.try_send(log.value(1)).unwrap_err()); // 1: no receiver
        drop(tx.send_timeout(log.value(2), SHORT).unwrap_err()); // 2: timed out while parked
        kcoro::select! { // 3: a losing send clause drops its value
            send(tx, log.value(3)) -> _ => panic!("no receiver"),
            default => {}
        }
        let t = tx.clone();
        let v4 = log.value(4);
        let parked = m.go(move || drop(t.send(v4).unwrap_err())); // 4: woken by close
        kcoro::sleep(SETTLE);
        tx.close();
        parked.join();
        drop(tx.send(log.value(5)).unwrap_err()); // 5: closed
        // 6: abandoned by a select whose other clause won.
        let (tx, rx6) = chan::rendezvous();
        let (tx_other, rx_other) = chan::buffered::<()>(1);
        tx_other.send(()).unwrap();
        kcoro::select! {
            send(tx, log.value(6)) -> _ => panic!("no receiver"),
            recv(rx_other) -> v => v.unwrap(),
        }
        drop((tx, rx6, rx));
        log.assert_each_dropped_once();
    });
}

#[test]
fn counters_exact() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<u32>();
        let cancelled = CancelToken::new();
        cancelled.cancel();
        assert_eq!(tx.try_send(1).unwrap_err().kind(), ChanError::WouldBlock);
        assert_eq!(tx.send_timeout(1, SHORT).unwrap_err().kind(), ChanError::Timeout);
        assert_eq!(tx.send_cancellable(1, &cancelled).unwrap_err().kind(), ChanError::Canceled);
        assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
        assert_eq!(rx.recv_timeout(SHORT), Err(ChanError::Timeout));
        assert_eq!(rx.recv_cancellable(&cancelled), Err(ChanError::Canceled));
        // Three hand-offs.
        let t = tx.clone();
        let sender = m.go(move || {
            for v in 1..=3 {
                t.send(v).unwrap();
            }
        });
        for v in 1..=3 {
            assert_eq!(rx.recv(), Ok(v));
        }
        sender.join();
        tx.close();
        assert_eq!(tx.send(4).unwrap_err().kind(), ChanError::Closed);
        assert_eq!(rx.recv(), Err(ChanError::Closed));

        let s = rx.snapshot();
        assert_eq!((s.kind, s.capacity, s.len, s.closed), (Kind::Rendezvous, Some(0), 0, true));
        assert_eq!((s.sends, s.recvs, s.bytes_sent, s.bytes_recv), (3, 3, 12, 12));
        let one_each = chan::Failures { would_block: 1, timeout: 1, closed: 1, canceled: 1 };
        assert_eq!((s.send_failures, s.recv_failures), (one_each, one_each));
        // The cancelled send never parked. The timed-out one parked unless its thread was
        // descheduled past the deadline before parking: see `rv_matches_counted`.
        assert_eq!(s.rv_matches, 3);
        assert!(s.rv_cancels <= 1, "rv_cancels {}", s.rv_cancels);
        assert_eq!((s.overflow_drops, s.undelivered), (0, 0));
        assert!(s.first_op_ns > 0 && s.last_op_ns >= s.first_op_ns);
    });
}

#[test]
fn mpmc() {
    const PER: u64 = 2_000;
    both(|m| {
        let (tx, rx) = chan::rendezvous::<u64>();
        let observer = rx.clone();
        let got = mpmc_exchange(&m, tx, rx, 4, 4, PER);
        assert_eq!(got, (0..4 * PER).collect::<Vec<_>>(), "each value received exactly once");
        let s = observer.snapshot();
        assert_eq!((s.sends, s.recvs, s.rv_matches, s.undelivered), (4 * PER, 4 * PER, 4 * PER, 0));
    });
}

#[test]
fn try_send_needs_waiting_receiver() {
    both(|m| {
        let (tx, rx) = chan::rendezvous::<i32>();
        assert_eq!(tx.try_send(1).unwrap_err().kind(), ChanError::WouldBlock);
        // A parked receiver makes a try succeed.
        let r = rx.clone();
        let receiver = m.go(move || r.recv());
        eventually("a parked receiver", || tx.try_send(2).ok());
        assert_eq!(receiver.join(), Ok(2));
        // So does a receiver parked in a select.
        let r = rx.clone();
        let (_never_tx, never_rx) = chan::rendezvous::<i32>();
        let receiver = m.go(move || {
            kcoro::select! {
                recv(never_rx) -> _ => panic!("nobody sends here"),
                recv(r) -> v => v,
            }
        });
        eventually("a receiver parked in a select", || tx.try_send(3).ok());
        assert_eq!(receiver.join(), Ok(3));
        // And once it has taken a value, the next try fails again.
        assert_eq!(tx.try_send(4).unwrap_err().kind(), ChanError::WouldBlock);
    });
}

#[test]
fn rv_matches_counted() {
    const N: u64 = 200;
    both(|m| {
        let (tx, rx) = chan::rendezvous::<u64>();
        // Receivers parked first, then senders parked first, then selects on both sides.
        let r = rx.clone();
        let receiver = m.go(move || (0..N).map(|_| r.recv().unwrap()).sum::<u64>());
        for v in 0..N {
            tx.send(v).unwrap();
        }
        assert_eq!(receiver.join(), (0..N).sum());
        let t = tx.clone();
        let sender = m.go(move || (0..N).for_each(|v| t.send(v).unwrap()));
        assert_eq!((0..N).map(|_| rx.recv().unwrap()).sum::<u64>(), (0..N).sum());
        sender.join();
        let t = tx.clone();
        let sender = m.go(move || (0..N).for_each(|v| kcoro::select! { send(t, v) -> r => r.unwrap() }));
        for v in 0..N {
            assert_eq!(kcoro::select! { recv(rx) -> r => r }, Ok(v));
        }
        sender.join();
        let s = rx.snapshot();
        assert_eq!((s.rv_matches, s.rv_cancels, s.sends, s.recvs), (3 * N, 0, 3 * N, 3 * N));

        // A parked send that gives up is a cancel, not a match. Only a coroutine can be
        // seen to have parked before its token fires (else it would give up unparked).
        if m.is_coro() {
            let token = CancelToken::new();
            let (t, tok) = (tx.clone(), token.clone());
            let sender = m.go(move || t.send_cancellable(0, &tok).unwrap_err().kind());
            common::wait_parked(&m, 1);
            token.cancel();
            assert_eq!(sender.join(), ChanError::Canceled);
            let s = rx.snapshot();
            assert_eq!((s.rv_matches, s.rv_cancels, s.send_failures.canceled), (3 * N, 1, 1));
        }
    });
}

#[test]
fn shutdown_unwound_receiver_leaves_no_entry() {
    let rt = kcoro::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = chan::rendezvous::<u64>();
    let keep = rx.clone(); // the channel stays open after the coroutine's receiver drops
    let h = rt.spawn(move || rx.recv());
    eventually("the receiver parks", || (rt.stats().parked == 1).then_some(()));
    assert!(rt.shutdown_timeout(Duration::from_secs(5)));
    assert!(h.join().is_err(), "unwound by shutdown");
    // Nobody is receiving any more: the try must fail, not hand the value to a dead slot.
    assert_eq!(tx.try_send(5).unwrap_err().kind(), ChanError::WouldBlock);
    drop(keep);
}

#[test]
fn shutdown_unwound_sender_leaves_no_entry() {
    let rt = kcoro::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = chan::rendezvous::<u64>();
    let keep = tx.clone(); // the channel stays open after the coroutine's sender drops
    let h = rt.spawn(move || tx.send(2));
    eventually("the sender parks", || (rt.stats().parked == 1).then_some(()));
    assert!(rt.shutdown_timeout(Duration::from_secs(5)));
    assert!(h.join().is_err(), "unwound by shutdown");
    // The unwound send never completed: nothing may come out.
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    drop(keep);
}
