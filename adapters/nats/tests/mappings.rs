//! Core subjects (fan-out), conflated values (KV) and rendezvous (request/reply) against a
//! real nats-server.

use std::time::Duration;

use crate::common::{Raw, eventually, server, watchdog};
use kcoro::chan::ChanError;
use kcoro_nats::NatsError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tick {
    seq: u64,
    price: f64,
}

#[test]
fn subject_fans_out_to_every_subscriber_in_order() {
    let Some(srv) = server() else { return };
    let _w = watchdog("fan-out", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (publisher, first) = nats.subject::<Tick>("ticks.eu").unwrap();
    let other_host = kcoro_nats::connect(&srv.url()).unwrap();
    let second = other_host.subscriber::<Tick>("ticks.eu").unwrap();
    let wildcard = other_host.subscriber::<Tick>("ticks.*").unwrap();
    let unrelated = other_host.subscriber::<Tick>("ticks.us").unwrap();
    for seq in 0..100 {
        publisher.send(Tick { seq, price: seq as f64 / 2.0 }).unwrap();
    }
    publisher.flush().unwrap();
    for sub in [&first, &second, &wildcard] {
        let got: Vec<u64> =
            (0..100).map(|_| sub.recv_timeout(Duration::from_secs(10)).unwrap().seq).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>(), "every subscriber, every value, in order");
    }
    assert_eq!(publisher.stats().published, 100);
    assert_eq!(publisher.stats().errors, 0);
    for sub in [&first, &second, &wildcard] {
        assert_eq!(sub.stats().delivered, 100);
    }
    assert_eq!(unrelated.try_recv().unwrap_err().chan(), Some(ChanError::WouldBlock));
    assert_eq!(unrelated.stats().delivered, 0);
}

#[test]
fn clones_of_a_subscriber_share_its_values_and_try_ends_do_not_wait() {
    let Some(srv) = server() else { return };
    let _w = watchdog("shared subscriber", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (publisher, sub) = nats.subject::<u64>("shared").unwrap();
    assert_eq!(sub.try_recv().unwrap_err().chan(), Some(ChanError::WouldBlock));
    // Four coroutines receive from clones of one subscriber while values arrive: each
    // value reaches exactly one of them.
    let got = kcoro::run(move || {
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let sub = sub.clone();
                kcoro::spawn(move || {
                    let mut mine = Vec::new();
                    while let Ok(v) = sub.recv_timeout(Duration::from_secs(10)) {
                        mine.push(v);
                    }
                    mine
                })
            })
            .collect();
        for v in 0..2_000u64 {
            // `try_send` fails only while the client's queue is full; then wait.
            if let Err(e) = publisher.try_send(v) {
                assert_eq!(e.chan(), Some(ChanError::WouldBlock));
                publisher.send(v).unwrap();
            }
        }
        assert!(publisher.close().unwrap());
        receivers.into_iter().flat_map(|r| r.join().unwrap()).collect::<Vec<u64>>()
    });
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..2_000).collect::<Vec<_>>(), "every value once, none twice");
}

#[test]
fn closing_a_subscriber_wakes_its_waiting_receivers_and_ends_its_subscription() {
    let Some(srv) = server() else { return };
    let _w = watchdog("subscriber close", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (publisher, sub) = nats.subject::<u32>("stopping").unwrap();
    let closer = sub.clone();
    let outcomes = kcoro::run({
        let closer = closer.clone();
        move || {
            // Two receivers wait: one polls the subscription, the other waits in line for it.
            let waiting: Vec<_> = (0..2)
                .map(|_| {
                    let sub = sub.clone();
                    kcoro::spawn(move || sub.recv_timeout(Duration::from_secs(20)).map_err(|e| e.chan()))
                })
                .collect();
            kcoro::sleep(Duration::from_millis(50));
            assert!(closer.close());
            assert!(!closer.close(), "closed once");
            waiting.into_iter().map(|w| w.join().unwrap()).collect::<Vec<_>>()
        }
    });
    assert_eq!(outcomes, [Err(Some(ChanError::Closed)), Err(Some(ChanError::Closed))]);
    assert!(closer.is_closed());
    // Unsubscribed: what is published now is not delivered here.
    publisher.send(7).unwrap();
    publisher.flush().unwrap();
    let probe = nats.subscriber::<u32>("stopping").unwrap();
    publisher.send(8).unwrap();
    assert_eq!(probe.recv_timeout(Duration::from_secs(10)).unwrap(), 8);
    assert_eq!(closer.recv().unwrap_err().chan(), Some(ChanError::Closed));
    assert_eq!(closer.stats().delivered, 0);
    // Dropped on a coroutine's thread, outside the bridge's runtime: no panic.
    kcoro::run(move || drop(closer));
}

#[test]
fn subject_close_is_seen_by_every_subscriber_after_the_values_before_it() {
    let Some(srv) = server() else { return };
    let _w = watchdog("subject close", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (publisher, a) = nats.subject::<u32>("closing").unwrap();
    let b = kcoro_nats::connect(&srv.url()).unwrap().subscriber::<u32>("closing").unwrap();
    for i in 0..5 {
        publisher.send(i).unwrap();
    }
    assert!(publisher.close().unwrap());
    assert!(!publisher.close().unwrap());
    assert_eq!(publisher.send(9).unwrap_err().chan(), Some(ChanError::Closed));
    for sub in [a, b] {
        let got: Vec<u32> = std::iter::from_fn(|| sub.recv().ok()).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(sub.recv().unwrap_err().chan(), Some(ChanError::Closed));
        assert_eq!(sub.stats().end_markers, 1);
    }
}

/// Headers a foreign publisher sets to look like an end marker.
fn forged_end() -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(kcoro_nats::END_HEADER, "1");
    h
}

#[test]
fn forged_end_markers_close_no_subject_conflated_or_rendezvous_end() {
    let Some(srv) = server() else { return };
    let _w = watchdog("forged end markers", Duration::from_secs(60));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let raw = Raw::connect(&srv.url());
    let wait = Duration::from_secs(10);

    // Fan-out: the header with no payload, and with a payload that starts like a frame.
    let (publisher, sub) = nats.subject::<u64>("forged").unwrap();
    raw.publish_core_with("forged", Some(forged_end()), Vec::new());
    raw.publish_core_with("forged", Some(forged_end()), b"KC1 not a marker".to_vec());
    publisher.send(1).unwrap();
    // The forgeries and the value come over two connections, so in either order (a
    // client's flush hands bytes to the socket; it does not wait for the server): take the
    // value, then whatever forgeries are still behind it, skipped and counted.
    assert_eq!(sub.recv_timeout(wait).unwrap(), 1, "the forgeries were skipped");
    eventually("both forgeries taken and skipped", || {
        assert_eq!(sub.try_recv().unwrap_err().chan(), Some(ChanError::WouldBlock));
        sub.stats().decode_errors == 2
    });
    assert!(!sub.is_closed());
    assert_eq!(sub.stats().end_markers, 0);
    assert!(publisher.close().unwrap());
    assert_eq!(sub.recv_timeout(wait).unwrap_err().chan(), Some(ChanError::Closed), "the real one ends it");
    assert_eq!(sub.stats().end_markers, 1);

    // Conflated: a forged marker stored as the stream's last value ends no host.
    let last = nats.conflated::<u64>("forged_last").unwrap();
    raw.publish("kcoro.last.forged_last", Some(forged_end()), Vec::new());
    last.send(5).unwrap();
    assert_eq!(last.recv_timeout(wait).unwrap(), 5);
    assert!(!last.is_closed());
    assert_eq!(last.stats().end_markers, 0);

    // Rendezvous: anything on the end subject that is not a marker ends nothing.
    let (tx, rx) = nats.rendezvous::<u64>("forged_rv").unwrap();
    raw.publish_core_with("kcoro.rv.forged_rv.end", Some(forged_end()), Vec::new());
    raw.publish_core("kcoro.rv.forged_rv.end", b"end".to_vec());
    eventually("both forgeries seen", || rx.stats().decode_errors == 2);
    let got = kcoro::run(move || {
        let receiver = kcoro::spawn(move || rx.recv_timeout(Duration::from_secs(10)).map(|v| (v, rx)));
        tx.send(9).unwrap();
        let (v, rx) = receiver.join().unwrap().unwrap();
        assert_eq!(rx.stats().end_markers, 0);
        assert!(tx.close().unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap_err().chan(), Some(ChanError::Closed));
        v
    });
    assert_eq!(got, 9);
}

#[test]
fn a_subscriber_skips_and_counts_what_is_not_its_values() {
    let Some(srv) = server() else { return };
    let _w = watchdog("foreign payloads", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let sub = nats.subscriber::<u64>("mixed").unwrap();
    let raw = Raw::connect(&srv.url());
    // Only foreign payloads buffered: a receive goes through them and still finds nothing.
    raw.publish_core("mixed", b"not a value".to_vec());
    let strings = nats.publisher::<String>("mixed").unwrap();
    strings.send("a value of another type".to_string()).unwrap();
    strings.flush().unwrap();
    // Taken (and skipped) by receives as they arrive: counted, never a value.
    eventually("both foreign payloads skipped", || {
        assert_eq!(sub.try_recv().unwrap_err().chan(), Some(ChanError::WouldBlock));
        sub.stats().decode_errors == 2
    });
    assert_eq!(sub.stats().delivered, 2);
    assert_eq!(sub.recv_timeout(Duration::from_millis(50)).unwrap_err().chan(), Some(ChanError::Timeout));
    assert_eq!(sub.stats().decode_errors, 2);
    // Values among foreign payloads: every value, in order, whichever receive takes it.
    let values = nats.publisher::<u64>("mixed").unwrap();
    for v in 0..30u64 {
        values.send(v).unwrap();
        if v % 3 == 0 {
            strings.send(format!("noise {v}")).unwrap();
        }
    }
    strings.flush().unwrap();
    // Published after the noise reached the server: receiving it walks past all of it.
    values.send(30).unwrap();
    values.flush().unwrap();
    let mut got = Vec::new();
    while got.len() < 31 {
        let v = match got.len() % 3 {
            0 => sub.recv_timeout(Duration::from_secs(10)).unwrap(),
            1 => kcoro::run({
                let sub = sub.clone();
                move || kcoro::future::wait(sub.recv_async()).unwrap().unwrap()
            }),
            _ => sub.recv().unwrap(),
        };
        got.push(v);
    }
    fn sendable<F: Send>(f: F) -> F {
        f
    }
    drop(sendable(sub.recv_async())); // spawnable on a multi-thread executor
    assert_eq!(got, (0..31).collect::<Vec<_>>());
    assert_eq!(sub.stats().decode_errors, 2 + 10, "every foreign payload counted");
    assert_eq!(sub.stats().delivered, 2 + 31 + 10, "every payload taken once");
}

#[test]
fn subject_is_at_most_once_a_late_subscriber_misses_earlier_values() {
    let Some(srv) = server() else { return };
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let publisher = nats.publisher::<u32>("late").unwrap();
    publisher.send(1).unwrap();
    publisher.flush().unwrap();
    let late = nats.subscriber::<u32>("late").unwrap();
    publisher.send(2).unwrap();
    assert_eq!(late.recv_timeout(Duration::from_secs(10)).unwrap(), 2);
}

#[test]
fn bad_subjects_are_refused() {
    let Some(srv) = server() else { return };
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    for bad in ["", "a..b", "a b", "a.>.b"] {
        assert!(matches!(nats.subscriber::<u8>(bad), Err(NatsError::BadName { .. })), "{bad:?}");
    }
    for bad in ["a.*", "a.>", "a b"] {
        assert!(matches!(nats.publisher::<u8>(bad), Err(NatsError::BadName { .. })), "{bad:?}");
    }
    let e = nats.conflated::<u8>("a.b").err().expect("refused");
    assert_eq!(e.code(), -22, "{e}");
    assert!(nats.rendezvous::<u8>("a b").is_err());
}

#[test]
fn conflated_keeps_only_the_last_value_on_every_host() {
    let Some(srv) = server() else { return };
    let _w = watchdog("conflated", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let config = nats.conflated::<String>("config").unwrap();
    assert_eq!(config.get().unwrap(), None);
    for v in ["a", "b", "c"] {
        config.send(v.to_string()).unwrap();
    }
    assert_eq!(config.get().unwrap().as_deref(), Some("c"));
    // A host that opens it later sees the last value only.
    let other = kcoro_nats::connect(&srv.url()).unwrap().conflated::<String>("config").unwrap();
    assert_eq!(other.recv_timeout(Duration::from_secs(10)).unwrap(), "c");
    assert_eq!(other.try_recv().unwrap_err().chan(), Some(ChanError::WouldBlock));
    // The first end conflates what it has not taken, and so does the stream, which keeps
    // one value per subject: "a" or "b" may be gone before this end's consumer fetches
    // them (waiting for three deliveries failed by chance on an idle machine). What it
    // receives is an in-order subsequence of a, b, c that ends with "c", then nothing.
    let sent = ["a", "b", "c"];
    let mut seen: Vec<usize> = Vec::new();
    while seen.last() != Some(&2) {
        let v = config.recv_timeout(Duration::from_secs(10)).unwrap();
        let at = sent.iter().position(|s| *s == v).unwrap_or_else(|| panic!("{v:?} was never sent"));
        assert!(seen.last().is_none_or(|&last| at > last), "{v:?} after {:?}: out of order", seen);
        seen.push(at);
    }
    assert_eq!(config.try_recv().unwrap_err().chan(), Some(ChanError::WouldBlock));
    other.send("d".to_string()).unwrap();
    assert_eq!(config.recv_timeout(Duration::from_secs(10)).unwrap(), "d");
    assert!(config.snapshot().recvs >= 2);
}

#[test]
fn conflated_close_is_seen_by_every_host() {
    let Some(srv) = server() else { return };
    let _w = watchdog("conflated close", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let a = nats.conflated::<u32>("settings").unwrap();
    let b = kcoro_nats::connect(&srv.url()).unwrap().conflated::<u32>("settings").unwrap();
    a.send(1).unwrap();
    assert_eq!(b.recv_timeout(Duration::from_secs(10)).unwrap(), 1);
    assert!(a.close().unwrap());
    assert_eq!(b.recv_timeout(Duration::from_secs(10)).unwrap_err().chan(), Some(ChanError::Closed));
    assert_eq!(a.get().unwrap(), None);
    assert_eq!(a.send(2).unwrap_err().chan(), Some(ChanError::Closed));
}

#[test]
fn rendezvous_send_completes_when_a_receiver_takes_the_value() {
    let Some(srv) = server() else { return };
    let _w = watchdog("rendezvous", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let tx = nats.rendezvous_sender::<u64>("handoff").unwrap();
    // Nobody subscribed: "no responders".
    assert_eq!(tx.try_send(1).unwrap_err().chan(), Some(ChanError::WouldBlock));
    assert_eq!(tx.send_timeout(1, Duration::from_millis(100)).unwrap_err().chan(), Some(ChanError::Timeout));

    let rx = kcoro_nats::connect(&srv.url()).unwrap().rendezvous_receiver::<u64>("handoff").unwrap();
    let sender = std::thread::spawn(move || {
        for i in 0..5 {
            tx.send(i).unwrap();
        }
        tx
    });
    let got: Vec<u64> = (0..5).map(|_| rx.recv().unwrap()).collect();
    assert_eq!(got, [0, 1, 2, 3, 4]);
    let tx = sender.join().unwrap();
    assert_eq!(tx.stats().published, 5);

    // A receiver that subscribed but does not receive: the send times out, and the value
    // may still be taken later (what a timeout cannot tell).
    let e = tx.send_timeout(7, Duration::from_millis(200)).unwrap_err();
    assert_eq!(e.chan(), Some(ChanError::Timeout));
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), 7);
}

/// A send that timed out while nobody was subscribed sends nothing afterwards: a receiver
/// that subscribes right after the timeout gets nothing (it once got the value from a
/// retry that outlived the caller, who had been told `Timeout`).
#[test]
fn a_timed_out_rendezvous_send_is_not_retried_after_its_caller_left() {
    let Some(srv) = server() else { return };
    let _w = watchdog("rendezvous retry", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let tx = nats.rendezvous_sender::<u64>("late").unwrap();
    for round in 0..3u64 {
        // No responders: the send retries with backoff until its 50 ms are up.
        let e = tx.send_timeout(round, Duration::from_millis(50)).unwrap_err();
        assert_eq!(e.chan(), Some(ChanError::Timeout));
        let rx = kcoro_nats::connect(&srv.url()).unwrap().rendezvous_receiver::<u64>("late").unwrap();
        // Longer than the longest backoff between two retries.
        let got = rx.recv_timeout(Duration::from_millis(400));
        assert_eq!(got.as_ref().map_err(|e| e.chan()), Err(Some(ChanError::Timeout)), "round {round}");
    }
    assert_eq!(tx.stats().published, 0);
}

#[test]
fn rendezvous_close_reaches_every_receiver() {
    let Some(srv) = server() else { return };
    let _w = watchdog("rendezvous close", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (tx, a) = nats.rendezvous::<u64>("rv_close").unwrap();
    let b = kcoro_nats::connect(&srv.url()).unwrap().rendezvous_receiver::<u64>("rv_close").unwrap();
    assert!(tx.close().unwrap());
    for rx in [&a, &b] {
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap_err().chan(), Some(ChanError::Closed));
    }
    let other = nats.rendezvous_sender::<u64>("rv_close").unwrap();
    assert_eq!(other.send(1).unwrap_err().chan(), Some(ChanError::Closed), "later sends see the close");
}
