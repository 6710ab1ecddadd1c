//! Buffered channels: a ring of fixed capacity whose senders wait while it is full, or,
//! with an overflow policy, drop the oldest or the newest value instead.
//!
//! Shares its test names with `chan_rendezvous.rs`, `chan_conflated.rs` and
//! `chan_unlimited.rs`; a kind leaves out only tests that cannot apply to it. Blocking
//! tests run with coroutines and with threads (`common::both`). `fairness` is left out:
//! which of several parked parties a hand-off reaches depends on when each one parked,
//! which no test can fix without timing.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use common::{DropLog, SETTLE, WATCHDOG, both, join_all, mpmc_exchange, recording};
use kcoro::chan::{self, Builder, ChanError, DEFAULT_CAPACITY, Kind, Overflow};
use kcoro::sync::CancelToken;

const SHORT: Duration = Duration::from_millis(1);

/// `take_ready` takes what is ready and counts it as a receive; an empty or closed
/// channel gives `None` and counts nothing, on every kind (ring-backed buffered, the locked
/// ones, a rendezvous with a sender parked).
#[test]
fn take_ready_counts_only_what_it_takes() {
    for kind in [Kind::Buffered, Kind::Unlimited, Kind::Conflated] {
        let (tx, rx) = Builder::<i32>::new(kind).capacity(4).build();
        assert_eq!(rx.take_ready(), None, "{kind:?}: empty");
        tx.send(1).unwrap();
        assert_eq!(rx.take_ready(), Some(1), "{kind:?}");
        assert_eq!(rx.take_ready(), None, "{kind:?}: empty again");
        tx.send(2).unwrap();
        tx.close();
        assert_eq!(rx.take_ready(), Some(2), "{kind:?}: drained after close");
        assert_eq!(rx.take_ready(), None, "{kind:?}: closed and drained");
        let s = rx.snapshot();
        assert_eq!((s.sends, s.recvs, s.recv_failures.total()), (2, 2, 0), "{kind:?}");
    }
    let (tx, rx) = chan::rendezvous::<i32>();
    let sender = std::thread::spawn(move || tx.send(9));
    let deadline = std::time::Instant::now() + WATCHDOG;
    let got = loop {
        if let Some(v) = rx.take_ready() {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "the parked sender was never taken from");
        std::thread::sleep(SHORT);
    };
    assert_eq!(got, 9);
    sender.join().unwrap().unwrap();
    let s = rx.snapshot();
    assert_eq!((s.recvs, s.recv_failures.total()), (1, 0));
}

#[test]
fn smoke() {
    let (tx, rx) = chan::buffered::<i32>(1);
    tx.send(7).unwrap();
    assert_eq!(rx.try_recv(), Ok(7));
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    assert_eq!((tx.kind(), rx.kind()), (Kind::Buffered, Kind::Buffered));
}

#[test]
fn capacity() {
    for cap in [1, 2, 10, 1000] {
        let (tx, rx) = chan::buffered::<()>(cap);
        assert_eq!(tx.capacity(), Some(cap));
        assert_eq!(rx.capacity(), Some(cap));
        assert_eq!(rx.snapshot().capacity, Some(cap));
    }
    // 0 means the default, as in the kcoro C API.
    let (tx, _rx) = chan::buffered::<()>(0);
    assert_eq!(tx.capacity(), Some(DEFAULT_CAPACITY));
    let (tx, _rx) = Builder::<()>::buffered(3).overflow(Overflow::DropOldest).build();
    assert_eq!(tx.capacity(), Some(3));
}

#[test]
fn len_empty_full() {
    let (tx, rx) = chan::buffered::<i32>(2);
    assert_eq!((tx.len(), rx.len()), (0, 0));
    assert!(tx.is_empty() && rx.is_empty());
    tx.send(1).unwrap();
    assert_eq!((tx.len(), rx.len()), (1, 1));
    assert!(!rx.is_empty());
    tx.send(2).unwrap();
    assert_eq!(rx.len(), 2);
    assert_eq!(rx.snapshot().len, 2);
    // Full: a try fails, nothing changes.
    assert_eq!(tx.try_send(3).unwrap_err().kind(), ChanError::WouldBlock);
    assert_eq!(rx.len(), 2);
    rx.recv().unwrap();
    assert_eq!(rx.len(), 1);
    rx.recv().unwrap();
    assert!(rx.is_empty());
}

#[test]
fn try_recv() {
    let (tx, rx) = chan::buffered::<i32>(2);
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(rx.try_recv(), Ok(1));
    tx.close();
    // Closed but not drained: the value still comes out.
    assert_eq!(rx.try_recv(), Ok(2));
    assert_eq!(rx.try_recv(), Err(ChanError::Closed));
    let s = rx.snapshot();
    assert_eq!((s.recvs, s.recv_failures.would_block, s.recv_failures.closed), (2, 1, 1));
}

#[test]
fn recv() {
    both(|m| {
        let (tx, rx) = chan::buffered::<i32>(2);
        // A receive waits for a later send.
        let t = tx.clone();
        let sender = m.go(move || {
            kcoro::sleep(SETTLE);
            t.send(1).unwrap();
        });
        assert_eq!(rx.recv(), Ok(1));
        sender.join();
        // From a full channel with a parked sender: the oldest value comes out and the
        // sender's value moves into the freed place.
        tx.send(2).unwrap();
        tx.send(3).unwrap();
        let t = tx.clone();
        let sender = m.go(move || t.send(4).unwrap());
        kcoro::sleep(SETTLE);
        assert_eq!(rx.recv(), Ok(2));
        sender.join();
        assert_eq!(rx.recv(), Ok(3));
        assert_eq!(rx.recv(), Ok(4));
        tx.close();
        assert_eq!(rx.recv(), Err(ChanError::Closed));
    });
}

#[test]
fn recv_timeout() {
    both(|m| {
        let (tx, rx) = chan::buffered::<i32>(2);
        assert_eq!(rx.recv_timeout(SHORT), Err(ChanError::Timeout));
        let t = tx.clone();
        let sender = m.go(move || {
            kcoro::sleep(SETTLE);
            t.send(1).unwrap();
        });
        assert_eq!(rx.recv_timeout(WATCHDOG), Ok(1));
        sender.join();
        tx.send(2).unwrap();
        tx.close();
        assert_eq!(rx.recv_timeout(SHORT), Ok(2));
        // Closed wins over waiting: no timeout on a closed, drained channel.
        assert_eq!(rx.recv_timeout(WATCHDOG), Err(ChanError::Closed));
        let s = rx.snapshot();
        assert_eq!((s.recv_failures.timeout, s.recv_failures.closed), (1, 1));
    });
}

#[test]
fn try_send() {
    let (tx, rx) = chan::buffered::<i32>(2);
    tx.try_send(1).unwrap();
    tx.try_send(2).unwrap();
    let err = tx.try_send(3).unwrap_err();
    assert_eq!((err.kind(), err.into_inner()), (ChanError::WouldBlock, 3));
    assert_eq!(rx.recv(), Ok(1));
    tx.try_send(3).unwrap();
    tx.close();
    let err = tx.try_send(4).unwrap_err();
    assert_eq!((err.kind(), err.into_inner()), (ChanError::Closed, 4));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![2, 3]);
}

#[test]
fn send() {
    both(|m| {
        let (tx, rx) = chan::buffered::<i32>(2);
        tx.send(0).unwrap();
        tx.send(1).unwrap();
        // Full: a send waits until a receive frees a place.
        let done = Arc::new(AtomicBool::new(false));
        let (t, d) = (tx.clone(), Arc::clone(&done));
        let sender = m.go(move || {
            t.send(2).unwrap();
            d.store(true, SeqCst);
        });
        kcoro::sleep(SETTLE);
        assert!(!done.load(SeqCst), "a send to a full channel completed");
        assert_eq!(rx.recv(), Ok(0));
        sender.join();
        assert!(done.load(SeqCst));
        // FIFO across the wait.
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![1, 2]);
    });
}

#[test]
fn send_timeout() {
    both(|m| {
        let (tx, rx) = chan::buffered::<i32>(1);
        tx.send_timeout(1, SHORT).unwrap();
        let err = tx.send_timeout(2, SHORT).unwrap_err();
        assert_eq!((err.kind(), err.into_inner()), (ChanError::Timeout, 2));
        let r = rx.clone();
        let receiver = m.go(move || {
            kcoro::sleep(SETTLE);
            r.recv().unwrap()
        });
        tx.send_timeout(2, WATCHDOG).unwrap();
        assert_eq!(receiver.join(), 1);
        assert_eq!(rx.recv(), Ok(2));
        assert_eq!(tx.snapshot().send_failures.timeout, 1);
    });
}

#[test]
fn close_wakes_receivers() {
    common::close_wakes_receivers(|| chan::buffered(4));
}

#[test]
fn close_wakes_senders() {
    both(|m| {
        let (tx, rx) = chan::buffered::<i32>(1);
        tx.send(0).unwrap();
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
        // Each sender gets its own value back.
        for (v, result) in (1..=5).zip(join_all(parties)) {
            assert_eq!(result, Err((ChanError::Closed, v)));
        }
        // What was buffered before the close still drains.
        assert_eq!(rx.recv(), Ok(0));
        assert_eq!(rx.recv(), Err(ChanError::Closed));
        assert_eq!(rx.snapshot().send_failures.closed, 5);
    });
}

#[test]
fn recv_after_close_drains() {
    let (tx, rx) = chan::buffered::<i32>(4);
    for v in 0..4 {
        tx.send(v).unwrap();
    }
    assert!(tx.close());
    assert!(tx.is_closed() && rx.is_closed());
    for v in 0..4 {
        assert_eq!(rx.len(), 4 - v as usize);
        assert_eq!(rx.recv(), Ok(v));
    }
    assert_eq!(rx.recv(), Err(ChanError::Closed));
    assert_eq!(rx.iter().count(), 0);
}

#[test]
fn send_after_close_fails_with_value() {
    let (tx, rx) = chan::buffered::<String>(4);
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
    both(|m| {
        let (tx, rx, log) = recording(Builder::<i32>::buffered(2));
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        // A parked sender's value was never accepted: it comes back, not to the callback.
        let t = tx.clone();
        let sender = m.go(move || t.send(3).map_err(|e| (e.kind(), e.into_inner())));
        kcoro::sleep(SETTLE);
        assert!(rx.cancel());
        assert_eq!(sender.join(), Err((ChanError::Closed, 3)));
        assert_eq!(*log.lock().unwrap(), vec![1, 2]);
        assert_eq!(rx.recv(), Err(ChanError::Closed));
        // Cancelling again reports nothing new.
        assert!(!rx.cancel());
        assert_eq!(log.lock().unwrap().len(), 2);
        assert_eq!(rx.snapshot().undelivered, 2);

        // A close keeps values to drain; a later cancel discards what is left.
        let (tx, rx, log) = recording(Builder::<i32>::buffered(4));
        for v in 0..3 {
            tx.send(v).unwrap();
        }
        tx.close();
        assert_eq!(rx.recv(), Ok(0));
        assert!(!rx.cancel(), "already closed");
        assert_eq!(*log.lock().unwrap(), vec![1, 2]);
        assert_eq!(rx.recv(), Err(ChanError::Closed));

        // Dropping the last receiver cancels too.
        let (tx, rx, log) = recording(Builder::<i32>::buffered(4));
        tx.send(7).unwrap();
        drop(rx);
        assert_eq!(*log.lock().unwrap(), vec![7]);
        assert!(tx.is_closed());
    });
}

#[test]
fn drops() {
    both(|m| {
        let log = DropLog::new(14);
        let (tx, rx) = chan::buffered(4);
        for id in 0..4 {
            tx.send(log.value(id)).unwrap();
        }
        drop(rx.recv().unwrap()); // 0: received
        tx.try_send(log.value(4)).unwrap();
        drop(tx.try_send(log.value(5)).unwrap_err().into_inner()); // 5: full
        drop(tx.send_timeout(log.value(6), SHORT).unwrap_err()); // 6: timed out
        kcoro::select! { // 7: a losing send clause drops its value
            send(tx, log.value(7)) -> _ => panic!("sent to a full channel"),
            default => {}
        }
        let t = tx.clone();
        let v8 = log.value(8);
        let parked = m.go(move || drop(t.send(v8).unwrap_err())); // 8: woken by close
        kcoro::sleep(SETTLE);
        tx.close();
        parked.join();
        drop(tx.send(log.value(9)).unwrap_err()); // 9: closed
        assert_eq!(rx.recv().unwrap().id, 1);
        assert!((2..=4).all(|id| log.drops(id) == 0), "buffered values dropped early");
        rx.cancel(); // 2, 3, 4: still buffered
        // 10, 11: buffered when both ends are dropped.
        let (tx, rx) = chan::buffered(4);
        tx.send(log.value(10)).unwrap();
        tx.send(log.value(11)).unwrap();
        drop((tx, rx));
        // 12: displaced by DropOldest; 13 received.
        let (tx, rx) = chan::buffered_with(1, Overflow::DropOldest);
        tx.send(log.value(12)).unwrap();
        tx.send(log.value(13)).unwrap();
        assert_eq!(log.drops(12), 1);
        assert_eq!(rx.recv().unwrap().id, 13);
        log.assert_each_dropped_once();
    });
}

#[test]
fn counters_exact() {
    let (tx, rx) = chan::buffered::<u32>(2);
    let cancelled = CancelToken::new();
    cancelled.cancel();
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    tx.send(1).unwrap();
    tx.send(2).unwrap();
    assert_eq!(tx.try_send(3).unwrap_err().kind(), ChanError::WouldBlock);
    assert_eq!(tx.send_timeout(3, SHORT).unwrap_err().kind(), ChanError::Timeout);
    assert_eq!(tx.send_cancellable(3, &cancelled).unwrap_err().kind(), ChanError::Canceled);
    assert_eq!(rx.recv(), Ok(1));
    assert_eq!(rx.recv_timeout(SHORT), Ok(2));
    assert_eq!(rx.recv_timeout(SHORT), Err(ChanError::Timeout));
    assert_eq!(rx.recv_cancellable(&cancelled), Err(ChanError::Canceled));
    tx.send(4).unwrap();
    tx.close();
    assert_eq!(tx.send(5).unwrap_err().kind(), ChanError::Closed);
    assert_eq!(rx.recv(), Ok(4));
    assert_eq!(rx.recv(), Err(ChanError::Closed));

    let s = rx.snapshot();
    assert_eq!((s.kind, s.capacity, s.len, s.closed), (Kind::Buffered, Some(2), 0, true));
    assert_eq!((s.sends, s.recvs), (3, 3));
    assert_eq!((s.bytes_sent, s.bytes_recv), (12, 12)); // size_of::<u32>() each
    let one_each = chan::Failures { would_block: 1, timeout: 1, closed: 1, canceled: 1 };
    assert_eq!((s.send_failures, s.recv_failures), (one_each, one_each));
    assert_eq!((s.overflow_drops, s.undelivered, s.rv_matches, s.rv_cancels), (0, 0, 0, 0));
    assert!(s.first_op_ns > 0 && s.last_op_ns >= s.first_op_ns);

    // Payload bytes, and the overflow counters.
    let (tx, rx) =
        Builder::<Vec<u8>>::buffered(2).overflow(Overflow::DropOldest).count_payload_bytes().build();
    for n in [3, 5, 7] {
        tx.send(vec![0; n]).unwrap();
    }
    assert_eq!(rx.recv().unwrap().len(), 5);
    let s = rx.snapshot();
    assert_eq!((s.sends, s.recvs, s.bytes_sent, s.bytes_recv), (3, 1, 15, 5));
    assert_eq!((s.overflow_drops, s.undelivered, s.len), (1, 1, 1));

    // Payload bytes on a channel that suspends when full (its buffer the lock-free ring),
    // through the ring and through the lock: a parked sender's value moved in by a receive.
    let (tx, rx) = Builder::<Vec<u8>>::buffered(1).count_payload_bytes().build();
    tx.send(vec![0; 3]).unwrap();
    assert_eq!(tx.send_timeout(vec![0; 11], SHORT).unwrap_err().kind(), ChanError::Timeout);
    let parked = std::thread::spawn({
        let tx = tx.clone();
        move || tx.send(vec![0; 5])
    });
    while rx.snapshot().parked_senders == 0 {
        std::thread::yield_now();
    }
    assert_eq!(rx.recv().unwrap().len(), 3);
    parked.join().unwrap().unwrap();
    assert_eq!(rx.recv().unwrap().len(), 5);
    let s = rx.snapshot();
    assert_eq!((s.sends, s.recvs, s.bytes_sent, s.bytes_recv, s.len), (2, 2, 8, 8, 0));

    // A cancel's discarded values are not receives.
    let (tx, rx) = Builder::<Vec<u8>>::buffered(4).count_payload_bytes().build();
    for n in [3, 5, 7] {
        tx.send(vec![0; n]).unwrap();
    }
    assert_eq!(rx.recv().unwrap().len(), 3);
    rx.cancel();
    let s = rx.snapshot();
    assert_eq!((s.sends, s.recvs, s.bytes_sent, s.bytes_recv), (3, 1, 15, 3));
    assert_eq!((s.cancel_discards, s.undelivered, s.len), (2, 2, 0));
    let (tx, rx) = chan::buffered::<u32>(4);
    for v in 0..3 {
        tx.send(v).unwrap();
    }
    assert_eq!(rx.recv(), Ok(0));
    rx.cancel();
    let s = rx.snapshot();
    assert_eq!((s.sends, s.recvs, s.bytes_sent, s.bytes_recv, s.cancel_discards), (3, 1, 12, 4, 2));

    // A fixed byte count per value, whatever the value's size.
    let (tx, rx) = Builder::<[u8; 64]>::buffered(4).count_bytes_per_value(5).build();
    tx.send([1; 64]).unwrap();
    tx.send([2; 64]).unwrap();
    assert_eq!(rx.recv().unwrap(), [1; 64]);
    let s = rx.snapshot();
    assert_eq!((s.sends, s.recvs, s.bytes_sent, s.bytes_recv), (2, 1, 10, 5));
}

/// Payload bytes stay exact with senders and receivers racing on a small buffer, and no
/// snapshot taken meanwhile shows more received than sent.
#[test]
fn payload_bytes_exact_under_contention() {
    const PER: usize = 3_000;
    both(|m| {
        let (tx, rx) = Builder::<Vec<u8>>::buffered(4).count_payload_bytes().build();
        let len = |p: usize, i: usize| (p * 7 + i) % 17;
        // The watcher looks until the exchange is over, and at least once after it; the
        // exchange starts once it is looking, so its looks overlap the traffic (how many,
        // the machine decides).
        let (watching, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let watcher = std::thread::spawn({
            let (rx, watching, done) = (rx.clone(), Arc::clone(&watching), Arc::clone(&done));
            move || loop {
                let last = done.load(SeqCst);
                let s = rx.snapshot();
                assert!(
                    s.bytes_recv <= s.bytes_sent,
                    "{} bytes received of {} sent",
                    s.bytes_recv,
                    s.bytes_sent
                );
                assert!(s.recvs <= s.sends);
                watching.store(true, SeqCst);
                if last {
                    break;
                }
            }
        });
        while !watching.load(SeqCst) {
            std::thread::yield_now();
        }
        let senders: Vec<_> = (0..3)
            .map(|p| {
                let tx = tx.clone();
                m.go(move || {
                    for i in 0..PER {
                        tx.send(vec![0; len(p, i)]).expect("open");
                    }
                    0
                })
            })
            .collect();
        drop(tx);
        let receivers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                m.go(move || {
                    let mut bytes = 0;
                    while let Ok(v) = rx.recv() {
                        bytes += v.len();
                    }
                    bytes
                })
            })
            .collect();
        join_all(senders);
        let received: usize = join_all(receivers).into_iter().sum();
        done.store(true, SeqCst);
        watcher.join().expect("no snapshot showed more received than sent");
        let expected: usize = (0..3).flat_map(|p| (0..PER).map(move |i| len(p, i))).sum();
        assert_eq!(received, expected);
        let s = rx.snapshot();
        assert_eq!((s.sends, s.recvs), (3 * PER as u64, 3 * PER as u64));
        assert_eq!((s.bytes_sent, s.bytes_recv), (expected as u64, expected as u64));
    });
}

#[test]
fn mpmc() {
    const PER: u64 = 5_000;
    both(|m| {
        let (tx, rx) = chan::buffered::<u64>(16);
        let observer = rx.clone();
        let got = mpmc_exchange(&m, tx, rx, 4, 4, PER);
        assert_eq!(got, (0..4 * PER).collect::<Vec<_>>(), "each value received exactly once");
        let s = observer.snapshot();
        assert_eq!((s.sends, s.recvs, s.undelivered), (4 * PER, 4 * PER, 0));
    });
}

#[test]
fn drop_oldest() {
    let (tx, rx, log) = recording(Builder::<i32>::buffered(2).overflow(Overflow::DropOldest));
    for v in 1..=5 {
        tx.send(v).unwrap(); // never waits
    }
    assert_eq!(*log.lock().unwrap(), vec![1, 2, 3]);
    tx.try_send(6).unwrap();
    assert_eq!(*log.lock().unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![5, 6]);
    let s = rx.snapshot();
    assert_eq!((s.sends, s.recvs, s.overflow_drops, s.undelivered), (6, 2, 4, 4));
    assert_eq!(s.send_failures.total(), 0);
}

#[test]
fn drop_latest() {
    let (tx, rx, log) = recording(Builder::<i32>::buffered(2).overflow(Overflow::DropLatest));
    for v in 1..=5 {
        tx.send(v).unwrap(); // never waits
    }
    assert_eq!(*log.lock().unwrap(), vec![3, 4, 5]);
    tx.try_send(6).unwrap();
    assert_eq!(*log.lock().unwrap(), vec![3, 4, 5, 6]);
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![1, 2]);
    let s = rx.snapshot();
    assert_eq!((s.sends, s.recvs, s.overflow_drops, s.undelivered), (6, 2, 4, 4));
    assert_eq!(s.send_failures.total(), 0);
}

#[test]
fn shutdown_unwound_receiver_leaves_no_entry() {
    let rt = kcoro::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = chan::buffered::<u64>(1);
    let keep = rx.clone(); // the channel stays open after the coroutine's receiver drops
    let h = rt.spawn(move || rx.recv());
    common::eventually("the receiver parks", || (rt.stats().parked == 1).then_some(()));
    assert!(rt.shutdown_timeout(Duration::from_secs(5)));
    assert!(h.join().is_err(), "unwound by shutdown");
    // Nobody is receiving: the value must be buffered, not handed to the unwound receiver.
    tx.send(5).unwrap();
    assert_eq!(keep.try_recv(), Ok(5));
}

#[test]
fn shutdown_unwound_sender_leaves_no_entry() {
    let rt = kcoro::Runtime::builder().workers(1).build().unwrap();
    let (tx, rx) = chan::buffered::<u64>(1);
    tx.send(1).unwrap();
    let keep = tx.clone(); // the channel stays open after the coroutine's sender drops
    let h = rt.spawn(move || tx.send(2));
    common::eventually("the sender parks", || (rt.stats().parked == 1).then_some(()));
    assert!(rt.shutdown_timeout(Duration::from_secs(5)));
    assert!(h.join().is_err(), "unwound by shutdown");
    // The unwound send never completed: only the buffered value is there.
    assert_eq!(rx.try_recv(), Ok(1));
    assert_eq!(rx.try_recv(), Err(ChanError::WouldBlock));
    drop(keep);
}

/// A long random sequence of tries against a plain queue model: every value, every error
/// and every counter of the snapshot agree after each step, across many laps of the ring
/// and for capacities that are and are not powers of two.
#[test]
fn tries_agree_with_a_queue_model() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for cap in [1, 2, 3, 7, 8, 100] {
        let (tx, rx) = chan::buffered::<u64>(cap);
        let mut model = std::collections::VecDeque::new();
        let (mut sent, mut received, mut full, mut empty) = (0u64, 0u64, 0u64, 0u64);
        for step in 0..20_000u64 {
            if next() % 2 == 0 {
                match tx.try_send(step) {
                    Ok(()) => {
                        assert!(model.len() < cap, "cap {cap} step {step}: sent into a full channel");
                        model.push_back(step);
                        sent += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ChanError::WouldBlock);
                        assert_eq!(model.len(), cap, "cap {cap} step {step}: refused with room");
                        full += 1;
                    }
                }
            } else {
                match rx.try_recv() {
                    Ok(v) => {
                        assert_eq!(Some(v), model.pop_front(), "cap {cap} step {step}");
                        received += 1;
                    }
                    Err(e) => {
                        assert_eq!(e, ChanError::WouldBlock);
                        assert!(model.is_empty(), "cap {cap} step {step}: refused with values");
                        empty += 1;
                    }
                }
            }
            if step % 97 == 0 {
                let s = rx.snapshot();
                assert_eq!((s.sends, s.recvs, s.len), (sent, received, model.len()), "cap {cap} step {step}");
                assert_eq!((s.send_failures.would_block, s.recv_failures.would_block), (full, empty));
                assert_eq!((s.bytes_sent, s.bytes_recv), (8 * sent, 8 * received));
            }
        }
        tx.close();
        while let Some(want) = model.pop_front() {
            assert_eq!(rx.try_recv(), Ok(want), "cap {cap}: a closed channel drains in order");
        }
        assert_eq!(rx.try_recv(), Err(ChanError::Closed));
        assert!(matches!(tx.try_send(0), Err(e) if e.kind() == ChanError::Closed));
    }
}

/// Operation times follow the clock on a busy channel (stamps come from a ticker, not a
/// clock read per operation) and never go back: sends and receives on the lock-free
/// ring, and through the lock (a rendezvous hand-off).
#[test]
fn operation_times_move_with_the_clock_and_never_go_back() {
    let give_up = std::time::Instant::now() + WATCHDOG;
    for (tx, rx) in [chan::buffered::<u64>(4), chan::rendezvous::<u64>()] {
        let echo = std::thread::spawn(move || while rx.recv().is_ok() {});
        // Enough operations for the process's ticker to run (it starts after a few
        // hundred stamps): the times below are its.
        (0..1000).for_each(|i| tx.send(i).unwrap());
        let first = tx.snapshot();
        let mut last = first.last_op_ns;
        loop {
            tx.send(1).unwrap();
            let s = tx.snapshot();
            assert_eq!(s.first_op_ns, first.first_op_ns, "the first operation's time stays");
            assert!(s.last_op_ns >= last && s.last_op_ns >= s.first_op_ns, "times never go back");
            last = s.last_op_ns;
            if last > first.last_op_ns {
                break;
            }
            assert!(std::time::Instant::now() < give_up, "the last operation's time never moved");
            std::thread::sleep(SHORT);
        }
        drop(tx);
        echo.join().unwrap();
    }
}
