//! Work queues against a real nats-server: delivery, acks, redelivery, backpressure,
//! close, the unlimited mapping, undecodable messages.

use std::time::Duration;

use crate::common::{Raw, drain_until_closed, eventually, server, watchdog};
use kcoro::chan::ChanError;
use kcoro_nats::{Capacity, NatsError, WorkQueueOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    id: u64,
    name: String,
}

fn job(id: u64) -> Job {
    Job { id, name: format!("job-{id}") }
}

/// Options with the default 30 s ack wait: long enough that a test on a loaded machine
/// sees no redelivery it did not ask for (those that do ask use [`short_ack_wait`]).
fn opts(capacity: usize) -> WorkQueueOptions {
    WorkQueueOptions::new(capacity)
}

fn short_ack_wait(capacity: usize) -> WorkQueueOptions {
    WorkQueueOptions { ack_wait: Duration::from_secs(1), ..WorkQueueOptions::new(capacity) }
}

#[test]
fn send_recv_ack_from_coroutines() {
    let Some(srv) = server() else { return };
    let _w = watchdog("send_recv_ack_from_coroutines", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (tx, rx) = nats.work_queue_with::<Job>("jobs", opts(1000)).unwrap();
    let got = kcoro::run(move || {
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let tx = tx.clone();
                kcoro::spawn(move || {
                    for i in 0..50 {
                        tx.send(job(p * 1000 + i)).unwrap();
                    }
                })
            })
            .collect();
        let mut ids = Vec::new();
        for _ in 0..200 {
            let d = rx.recv().unwrap();
            assert_eq!(d.name, format!("job-{}", d.id));
            assert_eq!(d.delivered(), 1);
            ids.push(d.ack().unwrap().id);
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(tx.stats().published, 200);
        assert_eq!((tx.stats().duplicates, tx.stats().errors), (0, 0));
        assert_eq!(rx.snapshot().recvs, 200);
        eventually("200 acks", || rx.stats().acks == 200);
        assert_eq!(rx.try_recv().err().and_then(|e| e.chan()), Some(ChanError::WouldBlock));
        ids
    });
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), 200, "every job exactly once");
}

#[test]
fn publishes_carry_dedupe_ids_unless_turned_off() {
    let Some(srv) = server() else { return };
    let _w = watchdog("dedupe ids", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let raw = Raw::connect(&srv.url());
    for (queue, dedupe_ids) in [("ids_on", true), ("ids_off", false)] {
        // No receiver: the messages stay in the stream, where the raw client reads them.
        let o = WorkQueueOptions { dedupe_ids, ..opts(100) };
        let tx = nats.work_sender::<Job>(queue, &o).unwrap();
        for i in 0..3 {
            tx.send(job(i)).unwrap();
        }
        assert_eq!(tx.stats().published, 3);
        let ids: Vec<Option<String>> = (1..=3).map(|seq| raw.msg_id(queue, seq)).collect();
        if dedupe_ids {
            assert!(ids.iter().all(Option::is_some), "{ids:?}");
            let mut distinct = ids.clone();
            distinct.dedup();
            assert_eq!(distinct.len(), 3, "one id per publish: {ids:?}");
        } else {
            assert_eq!(ids, [None, None, None]);
        }
        let rx = nats.work_receiver::<Job>(queue, &o).unwrap();
        let got: Vec<u64> = (0..3).map(|_| rx.recv().unwrap().ack().unwrap().id).collect();
        assert_eq!(got, [0, 1, 2]);
    }
}

#[test]
fn ends_are_listed_in_kcoros_registry() {
    let Some(srv) = server() else { return };
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (tx, rx) = nats.work_queue_with::<u32>("listed", opts(10)).unwrap();
    tx.send(7).unwrap();
    assert_eq!(rx.recv_auto_ack().unwrap(), 7);
    // A sending end publishes on its caller: no local channel of its own to list.
    assert!(kcoro::chan::registry::find("nats:wq:listed:out").is_empty());
    assert_eq!(tx.stats().published, 1);
    let inbox = kcoro::chan::registry::find("nats:wq:listed");
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].recvs, 1);
}

#[test]
fn works_from_plain_threads_and_async() {
    let Some(srv) = server() else { return };
    let _w = watchdog("works_from_plain_threads_and_async", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (tx, rx) = nats.work_queue_with::<u64>("threads", opts(100)).unwrap();
    let t = std::thread::spawn(move || {
        for i in 0..20 {
            tx.send(i).unwrap();
        }
    });
    let mut sum = 0;
    for _ in 0..10 {
        sum += rx.recv_timeout(Duration::from_secs(10)).unwrap().ack().unwrap();
    }
    // The other half through the future, driven by a plain executor loop.
    for _ in 0..10 {
        let d = futures_block_on(rx.recv_async()).unwrap();
        sum += d.ack().unwrap();
    }
    t.join().unwrap();
    assert_eq!(sum, (0..20).sum::<u64>());
}

/// Drives a future on this thread (parks between polls; the bridge wakes it).
fn futures_block_on<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct ThreadWaker(std::thread::Thread);
    impl Wake for ThreadWaker {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn a_full_stream_parks_the_sender_until_a_consumer_acks() {
    let Some(srv) = server() else { return };
    let _w = watchdog("backpressure", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let tx = nats.work_sender::<u64>("full", &opts(3)).unwrap();
    for i in 0..3 {
        tx.send(i).unwrap();
    }
    let refused = tx.try_send(3).unwrap_err();
    assert_eq!(refused.chan(), Some(ChanError::WouldBlock));
    assert_eq!(refused.into_inner(), 3, "a failed send hands the value back");

    let parked = kcoro::Runtime::new().unwrap();
    let tx2 = tx.clone();
    let sender = parked.spawn(move || tx2.send(3));
    // The sender is parked: the server keeps refusing it while nothing is acked.
    eventually("full-stream retries", || tx.stats().full_retries >= 3);
    assert!(!sender.is_finished());
    assert_eq!(tx.stats().published, 3);

    let rx = nats.work_receiver::<u64>("full", &opts(3)).unwrap();
    let first = rx.recv().unwrap();
    assert_eq!(*first, 0);
    first.ack().unwrap();
    sender.join().unwrap().unwrap();
    assert_eq!(tx.stats().published, 4);
    let rest: Vec<u64> = (0..3).map(|_| rx.recv_auto_ack().unwrap()).collect();
    assert_eq!(rest, [1, 2, 3]);
}

#[test]
fn send_timeout_on_a_full_stream_times_out_with_the_value() {
    let Some(srv) = server() else { return };
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let tx = nats.work_sender::<u64>("full_timeout", &opts(1)).unwrap();
    tx.send(1).unwrap();
    let e = tx.send_timeout(2, Duration::from_millis(100)).unwrap_err();
    assert_eq!(e.chan(), Some(ChanError::Timeout));
    assert_eq!(e.into_inner(), 2);
    let token = kcoro::sync::CancelToken::new();
    token.cancel();
    let e = tx.send_cancellable(3, &token).unwrap_err();
    assert_eq!(e.chan(), Some(ChanError::Canceled));
}

#[test]
fn unacked_messages_are_redelivered_to_another_receiver() {
    let Some(srv) = server() else { return };
    let _w = watchdog("redelivery", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = WorkQueueOptions { prefetch: 1, ..short_ack_wait(10) };
    let tx = nats.work_sender::<u64>("redeliver", &o).unwrap();
    let a = nats.work_receiver::<u64>("redeliver", &o).unwrap();
    tx.send(42).unwrap();
    let first = a.recv().unwrap();
    assert_eq!((*first, first.delivered()), (42, 1));
    assert_eq!(first.into_inner(), 42); // handled, never acked: a crash before the ack
    a.close();
    drop(a);

    let other = kcoro_nats::connect(&srv.url()).unwrap();
    let b = other.work_receiver::<u64>("redeliver", &o).unwrap();
    let again = b.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(*again, 42);
    assert!(again.delivered() >= 2, "a redelivery says so");
    assert!(b.stats().redelivered >= 1);
    again.ack().unwrap();
}

#[test]
fn nak_redelivers_at_once() {
    let Some(srv) = server() else { return };
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = opts(10);
    let (tx, rx) = nats.work_queue_with::<u64>("nak", o).unwrap();
    tx.send(5).unwrap();
    let d = rx.recv().unwrap();
    d.nak().unwrap();
    // ack_wait is 30 s: only the nak can bring it back within the watchdog's limit.
    let d = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!((*d, d.delivered()), (5, 2));
    d.ack().unwrap();
}

#[test]
fn close_lets_every_receiver_drain() {
    let Some(srv) = server() else { return };
    let _w = watchdog("close", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = WorkQueueOptions { prefetch: 4, ..opts(100) };
    let tx = nats.work_sender::<u64>("closing", &o).unwrap();
    for i in 0..10 {
        tx.send(i).unwrap();
    }
    assert!(tx.close().unwrap());
    assert!(!tx.close().unwrap(), "closing twice says so");
    assert_eq!(tx.send(99).unwrap_err().chan(), Some(ChanError::Closed));

    let receivers: Vec<_> = (0..2)
        .map(|_| kcoro_nats::connect(&srv.url()).unwrap().work_receiver::<u64>("closing", &o).unwrap())
        .collect();
    let mut all: Vec<u64> = drain_until_closed(receivers).into_iter().flatten().collect();
    all.sort_unstable();
    assert_eq!(all, (0..10).collect::<Vec<_>>(), "everything sent, once");
}

/// A producer that died without closing stays counted open, so the queue waits for it;
/// `close_work_queue` ends the queue for every sender.
#[test]
fn a_sender_that_died_open_holds_the_end_until_the_queue_is_closed_for_all() {
    let Some(srv) = server() else { return };
    let _w = watchdog("dead sender", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let dead = nats.work_sender::<u64>("deadsender", &opts(10)).unwrap();
    dead.send(1).unwrap();
    // As if its process were killed: the end never closes and never drops.
    std::mem::forget(dead);
    let (tx, rx) = nats.work_queue_with::<u64>("deadsender", opts(10)).unwrap();
    tx.send(2).unwrap();
    assert!(tx.close().unwrap());
    let mut got = vec![rx.recv().unwrap().ack().unwrap(), rx.recv().unwrap().ack().unwrap()];
    got.sort_unstable();
    assert_eq!(got, [1, 2]);
    // Several idle checks pass: the dead sender's record holds the end.
    let e = rx.recv_timeout(kcoro_nats::IDLE_CHECK * 4).unwrap_err();
    assert_eq!(e.chan(), Some(ChanError::Timeout));
    nats.close_work_queue("deadsender").unwrap();
    assert_eq!(rx.recv().unwrap_err().chan(), Some(ChanError::Closed));
}

/// Acks handed over just before the last handle of a connection drops still reach the
/// server: nothing is redelivered once `ack_wait` has passed.
#[test]
fn acks_made_just_before_the_connection_drops_are_not_lost() {
    let Some(srv) = server() else { return };
    let _w = watchdog("acks at drop", Duration::from_secs(20));
    let o = short_ack_wait(10);
    let (tx, rx) =
        kcoro_nats::connect(&srv.url()).unwrap().work_queue_with::<u64>("lastacks", o.clone()).unwrap();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    let got: Vec<u64> = (0..5).map(|_| rx.recv().unwrap().ack().unwrap()).collect();
    assert_eq!(got, vec![0, 1, 2, 3, 4]);
    drop((tx, rx));

    let later = kcoro_nats::connect(&srv.url()).unwrap().work_receiver::<u64>("lastacks", &o).unwrap();
    // Twice the ack wait: an ack that never arrived would have brought its message back.
    match later.recv_timeout(Duration::from_secs(2)) {
        Err(e) => assert_eq!(e.chan(), Some(ChanError::Timeout)),
        Ok(d) => panic!("message {} was redelivered: its ack was lost", *d),
    }
}

#[test]
fn unlimited_never_parks_and_drops_the_oldest_past_its_bytes() {
    let Some(srv) = server() else { return };
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = WorkQueueOptions { capacity: Capacity::UnlimitedBytes(4096), ..opts(0) };
    let tx = nats.work_sender::<Vec<u8>>("unlimited", &o).unwrap();
    for i in 0..64u8 {
        tx.try_send(vec![i; 200]).unwrap(); // never WouldBlock: the oldest make room
    }
    assert_eq!(tx.stats().full_retries, 0);
    let rx = nats.work_receiver::<Vec<u8>>("unlimited", &o).unwrap();
    let first = rx.recv().unwrap().ack().unwrap();
    assert!(first[0] > 0, "the oldest were dropped to stay within max_bytes");
}

#[test]
fn undecodable_messages_are_terminated_and_counted() {
    let Some(srv) = server() else { return };
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (tx, rx) = nats.work_queue_with::<Job>("garbage", opts(10)).unwrap();
    let raw = nats.work_sender::<Vec<u8>>("garbage", &opts(10)).unwrap();
    raw.send(vec![0xff; 3]).unwrap(); // a Vec<u8> is no Job
    tx.send(job(1)).unwrap();
    assert_eq!(rx.recv().unwrap().ack().unwrap(), job(1));
    assert_eq!(rx.stats().decode_errors, 1);
}

#[test]
fn bad_names_and_oversize_payloads_are_refused_clearly() {
    let Some(srv) = crate::common::server_with(kcoro_nats::server::ServerOptions {
        max_payload: Some(1024),
        ..Default::default()
    }) else {
        return;
    };
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    for bad in ["", "a.b", "a b", "jobs*"] {
        let e = nats.work_queue::<u8>(bad, 10).err().expect("refused");
        assert!(matches!(e, NatsError::BadName { .. }), "{bad:?}: {e}");
    }
    assert_eq!(nats.max_payload(), 1024);
    let (tx, _rx) = nats.work_queue::<Vec<u8>>("big", 10).unwrap();
    let e = tx.send(vec![0; 2000]).unwrap_err();
    assert!(matches!(e.error(), NatsError::PayloadTooLarge { max: 1024, .. }), "{e}");
    assert!(e.to_string().contains("max_payload"));
    assert_eq!(e.into_inner().len(), 2000);
    tx.send(vec![0; 500]).unwrap();
}

#[test]
fn a_server_that_is_down_is_a_clear_connect_error() {
    let Some(mut srv) = server() else { return };
    let url = srv.url();
    srv.kill();
    let e = kcoro_nats::connect(&url).err().expect("nothing listens");
    assert!(matches!(e, NatsError::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&url), "{e}");
}

/// Hosts that start at once all declare the queue's stream: whichever loses the race to
/// create it must take the stream the winner made, not fail. (The server answers a
/// create that lost with "subjects overlap", not with the stream.)
#[test]
fn ends_declared_at_once_from_many_connections_all_open() {
    let Some(srv) = server() else { return };
    let _w = watchdog("ends_declared_at_once_from_many_connections_all_open", Duration::from_secs(60));
    const RACERS: usize = 6;
    for round in 0..100 {
        let name = format!("race{round}");
        let start = std::sync::Arc::new(std::sync::Barrier::new(RACERS));
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let (url, name, start) = (srv.url(), name.clone(), std::sync::Arc::clone(&start));
                std::thread::spawn(move || {
                    let nats = kcoro_nats::connect(&url).expect("connects");
                    start.wait();
                    if i % 2 == 0 {
                        nats.work_sender::<Job>(&name, &opts(100)).map(drop)
                    } else {
                        nats.work_receiver::<Job>(&name, &opts(100)).map(drop)
                    }
                })
            })
            .collect();
        for r in racers {
            if let Err(e) = r.join().expect("racer panicked") {
                panic!("round {round}: an end failed to open: {e}");
            }
        }
    }
}

#[test]
fn unconfirmed_acks_reach_the_server_and_end_the_queue() {
    let Some(srv) = server() else { return };
    let _w = watchdog("unconfirmed acks", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    // The short ack wait would redeliver any message whose ack got lost.
    let (tx, rx) = nats.work_queue_with::<u64>("unconfirmed", short_ack_wait(100)).unwrap();
    for id in 0..50 {
        tx.send(id).unwrap();
    }
    tx.close().unwrap();
    let mut got = Vec::new();
    loop {
        match rx.recv() {
            Ok(d) => got.push(d.ack_unconfirmed()),
            Err(e) => {
                assert_eq!(e.chan(), Some(ChanError::Closed), "{e}");
                break;
            }
        }
    }
    // The queue ended only once the server had every ack: each id came once.
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    // Counted when the client took each ack, which the end does not wait for.
    eventually("every ack counted", || rx.stats().acks == 50);
    assert_eq!(rx.stats().redelivered, 0);
}
