//! Work queues against peers that misbehave: a consumer killed or stopped while holding
//! messages, several producers closing, the recipe run twice, a consumer deleted, a
//! memory-storage server restarted, garbage and forged end markers published by a raw
//! client, a process that exits right after acking. Every case counts what was sent,
//! received, duplicated and left in the stream ("stranded") exactly.
//!
//! Children are this test binary again, running [`child`] with a role.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::time::Duration;

use crate::common::{Raw, drain_until_closed, env, server, spawn_child, watchdog};
use kcoro_nats::{NatsError, WorkQueueOptions, WorkReceiver};

/// Reads the child's stdout up to the line holding `word` (the harness may print on it
/// too) and returns what follows the word.
fn wait_for(child: &mut Child, word: &str) -> String {
    let mut reader = BufReader::new(child.stdout.as_mut().expect("piped stdout"));
    let mut line = String::new();
    loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the child exited before printing {word:?}");
        if let Some(at) = line.find(word) {
            return line[at + word.len()..].trim().to_string();
        }
    }
}

fn short_ack_wait() -> WorkQueueOptions {
    WorkQueueOptions { ack_wait: Duration::from_secs(2), prefetch: 16, ..WorkQueueOptions::new(10_000) }
}

/// A child process's work; run only by the tests below (ignored otherwise).
#[test]
#[ignore = "a child role, started by the tests of this file"]
fn child() {
    let Ok(role) = std::env::var("KCORO_NATS_ROLE") else {
        panic!("run by the tests of this file, with KCORO_NATS_ROLE set");
    };
    let nats = kcoro_nats::connect(&env("KCORO_NATS_URL")).unwrap();
    let name = env("KCORO_NATS_QUEUE");
    let count: usize = env("KCORO_NATS_COUNT").parse().unwrap();
    match role.as_str() {
        "hold" => {
            // Takes messages, never acks them, then waits to be killed or stopped.
            let rx = nats.work_receiver::<u64>(&name, &short_ack_wait()).unwrap();
            let held: Vec<u64> = (0..count).map(|_| rx.recv().unwrap().into_inner()).collect();
            println!("held {}", held.len());
            std::thread::sleep(Duration::from_secs(120));
        }
        "ack-and-exit" => {
            // Acks, while a clone of the receiver lives on in a monitor thread, and exits
            // the moment the last ack returns: no handle is ever dropped.
            let rx = nats.work_receiver::<u64>(&name, &WorkQueueOptions::new(10_000)).unwrap();
            let monitor = rx.clone();
            std::thread::spawn(move || {
                loop {
                    let _ = monitor.stats();
                    std::thread::sleep(Duration::from_millis(10));
                }
            });
            let acked: Vec<u64> = (0..count).map(|_| rx.recv().unwrap().ack().unwrap()).collect();
            println!("acked {}", acked.len());
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

/// What receivers saw until `Closed`: each id with how often it came.
#[derive(Default, Debug)]
struct Tally {
    seen: HashMap<u64, u64>,
}

impl Tally {
    fn received(&self) -> u64 {
        self.seen.len() as u64
    }

    fn duplicates(&self) -> u64 {
        self.seen.values().map(|n| n - 1).sum()
    }

    fn missing(&self, sent: impl Iterator<Item = u64>) -> Vec<u64> {
        sent.filter(|id| !self.seen.contains_key(id)).collect()
    }
}

/// Runs receivers on threads until each gets `Closed` (anything else fails the test).
fn drain(receivers: Vec<WorkReceiver<u64>>) -> Tally {
    let mut tally = Tally::default();
    for got in drain_until_closed(receivers) {
        for id in got {
            *tally.seen.entry(id).or_default() += 1;
        }
    }
    tally
}

fn receivers(url: &str, queue: &str, n: usize, o: &WorkQueueOptions) -> Vec<WorkReceiver<u64>> {
    (0..n).map(|_| kcoro_nats::connect(url).unwrap().work_receiver::<u64>(queue, o).unwrap()).collect()
}

/// A consumer process holds messages unacked and is killed (`stop: false`) or stopped
/// with SIGSTOP (`stop: true`) while the producer closes: the others wait for the held
/// messages' redelivery, handle them, and only then end.
fn held_messages_are_not_stranded(queue: &str, stop: bool) {
    let Some(srv) = server() else { return };
    let _w = watchdog("held messages", Duration::from_secs(60));
    const SENT: u64 = 300;
    const HELD: usize = 16;
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = short_ack_wait();
    let tx = nats.work_sender::<u64>(queue, &o).unwrap();
    for id in 0..SENT {
        tx.send(id).unwrap();
    }
    let env = [
        ("KCORO_NATS_URL", srv.url()),
        ("KCORO_NATS_QUEUE", queue.to_string()),
        ("KCORO_NATS_COUNT", HELD.to_string()),
    ];
    let mut holder = spawn_child("queue_faults::child", "hold", &env);
    assert_eq!(wait_for(&mut holder, "held "), HELD.to_string());
    let pid = holder.id().to_string();
    if stop {
        assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    } else {
        holder.kill().unwrap();
        holder.wait().unwrap();
    }
    assert!(tx.close().unwrap());

    let tally = drain(receivers(&srv.url(), queue, 2, &o));
    let stranded = Raw::connect(&srv.url()).stranded(queue);
    eprintln!(
        "{queue}: sent {SENT}, held {HELD}, received {}, duplicates {}, stranded {stranded}",
        tally.received(),
        tally.duplicates()
    );
    if stop {
        let _ = holder.kill();
        let _ = holder.wait();
    }
    assert_eq!(tally.missing(0..SENT), Vec::<u64>::new(), "every message handled");
    assert_eq!(tally.duplicates(), 0, "the holder handled none of its messages");
    assert_eq!(stranded, 0, "nothing left in the stream");
}

#[test]
fn a_killed_consumer_strands_nothing() {
    held_messages_are_not_stranded("killed", false);
}

#[test]
fn a_stopped_consumer_strands_nothing() {
    held_messages_are_not_stranded("stopped", true);
}

/// Three producers on connections of their own close when each is done, one at once: the
/// queue ends when the last has closed, after every message.
#[test]
fn several_producers_closing_strand_nothing() {
    let Some(srv) = server() else { return };
    let _w = watchdog("several producers", Duration::from_secs(60));
    const PER: u64 = 500;
    let o = WorkQueueOptions { prefetch: 16, ..WorkQueueOptions::new(10_000) };
    let senders: Vec<_> = (0..3)
        .map(|_| kcoro_nats::connect(&srv.url()).unwrap().work_sender::<u64>("many", &o).unwrap())
        .collect();
    let rxs = receivers(&srv.url(), "many", 2, &o);
    let producers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(p, tx)| {
            std::thread::spawn(move || {
                // Producer 0 sends nothing: its close comes first.
                let count = if p == 0 { 0 } else { PER };
                for i in 0..count {
                    tx.send(p as u64 * PER + i).unwrap();
                }
                assert!(tx.close().unwrap());
                count
            })
        })
        .collect();
    let tally = drain(rxs);
    let sent: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    let stranded = Raw::connect(&srv.url()).stranded("many");
    eprintln!(
        "sent {sent}, received {}, duplicates {}, stranded {stranded}",
        tally.received(),
        tally.duplicates()
    );
    assert_eq!(sent, 2 * PER);
    assert_eq!(tally.missing(PER..3 * PER), Vec::<u64>::new());
    assert_eq!((tally.received(), tally.duplicates(), stranded), (sent, 0, 0));
}

/// The cross-host recipe of docs/NATS.md twice on one server: consumers first, then the
/// producer, which closes; the second run's consumers must not end on the first close.
#[test]
fn the_recipe_runs_twice() {
    let Some(srv) = server() else { return };
    let _w = watchdog("recipe twice", Duration::from_secs(60));
    let o = WorkQueueOptions::new(10_000);
    for run in 0..2u64 {
        let rxs = receivers(&srv.url(), "recipe", 3, &o);
        let nats = kcoro_nats::connect(&srv.url()).unwrap();
        let tx = nats.work_sender::<u64>("recipe", &o).unwrap();
        for id in 0..200 {
            tx.send(run * 1000 + id).unwrap();
        }
        assert!(tx.close().unwrap());
        let tally = drain(rxs);
        let stranded = Raw::connect(&srv.url()).stranded("recipe");
        eprintln!(
            "run {run}: received {}, duplicates {}, stranded {stranded}",
            tally.received(),
            tally.duplicates()
        );
        assert_eq!(tally.missing(run * 1000..run * 1000 + 200), Vec::<u64>::new(), "run {run}");
        assert_eq!((tally.received(), tally.duplicates(), stranded), (200, 0, 0), "run {run}");
    }
}

fn assert_gone(e: &NatsError, what: &str) {
    assert!(matches!(e, NatsError::Gone { what: w, .. } if *w == what), "{e}");
}

#[test]
fn a_deleted_consumer_fails_its_receivers() {
    let Some(srv) = server() else { return };
    let _w = watchdog("deleted consumer", Duration::from_secs(60));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let (tx, rx) = nats.work_queue::<u64>("deleted", 100).unwrap();
    let other = rx.clone();
    tx.send(1).unwrap();
    assert_eq!(rx.recv().unwrap().ack().unwrap(), 1);
    Raw::connect(&srv.url()).delete_consumer("deleted", "workers");
    let e = rx.recv().unwrap_err();
    assert_gone(&e, "consumer");
    assert_eq!(e.code(), -2);
    assert_gone(&other.recv().unwrap_err(), "consumer");
    assert!(rx.stats().errors >= 1);
}

#[test]
fn a_memory_storage_restart_fails_senders_and_receivers_alike() {
    let Some(mut srv) = server() else { return };
    let _w = watchdog("memory restart", Duration::from_secs(60));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = WorkQueueOptions { memory_storage: true, ..WorkQueueOptions::new(100) };
    let (tx, rx) = nats.work_queue_with::<u64>("volatile", o).unwrap();
    tx.send(1).unwrap();
    assert_eq!(rx.recv().unwrap().ack().unwrap(), 1);
    srv.kill();
    srv.restart().unwrap();
    assert_gone(&rx.recv().unwrap_err(), "stream");
    let e = tx.send(2).unwrap_err();
    assert_gone(e.error(), "stream");
    assert_eq!(e.into_inner(), 2);
}

/// Random payloads and a forged end marker, published by a raw client onto the queue's
/// subject, between values of the bridge: the receivers get exactly the values, count
/// the rest, and do not end on the forgery.
#[test]
fn garbage_and_forged_end_markers_are_not_values() {
    let Some(srv) = server() else { return };
    let _w = watchdog("garbage", Duration::from_secs(60));
    const VALUES: u64 = 100;
    const BLOBS: u64 = 200;
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = WorkQueueOptions::new(10_000);
    let tx = nats.work_sender::<u64>("garbage", &o).unwrap();
    let raw = Raw::connect(&srv.url());
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut blob = || -> Vec<u8> {
        (0..100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    for id in 0..VALUES {
        tx.send(id).unwrap();
        if id < BLOBS / 2 {
            raw.publish("kcoro.wq.garbage", None, blob());
            raw.publish("kcoro.wq.garbage", None, blob());
        }
        if id == VALUES / 2 {
            let mut h = async_nats::HeaderMap::new();
            h.insert(kcoro_nats::END_HEADER, "1");
            raw.publish("kcoro.wq.garbage", Some(h), Vec::new());
        }
    }
    assert!(tx.close().unwrap());
    let rx = nats.work_receiver::<u64>("garbage", &o).unwrap();
    let tally = drain(vec![rx.clone()]);
    let stats = rx.stats();
    let stranded = raw.stranded("garbage");
    eprintln!(
        "values {VALUES}, blobs {BLOBS}, forged 1: received {}, duplicates {}, decode errors {}, stranded {stranded}",
        tally.received(),
        tally.duplicates(),
        stats.decode_errors
    );
    assert_eq!(tally.missing(0..VALUES), Vec::<u64>::new());
    assert_eq!((tally.received(), tally.duplicates(), stranded), (VALUES, 0, 0));
    assert_eq!(stats.decode_errors, BLOBS + 1, "every foreign payload counted");
}

#[test]
fn undecodable_messages_can_be_received_as_errors() {
    let Some(srv) = server() else { return };
    let _w = watchdog("undecodable as errors", Duration::from_secs(30));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = WorkQueueOptions { undecodable_as_errors: true, ..WorkQueueOptions::new(100) };
    let (tx, rx) = nats.work_queue_with::<u64>("loud", o).unwrap();
    Raw::connect(&srv.url()).publish("kcoro.wq.loud", None, b"not a value".to_vec());
    tx.send(7).unwrap();
    let e = rx.recv().expect_err("the garbage, as an error");
    assert!(matches!(e, NatsError::Codec(_)), "{e}");
    assert_eq!(rx.recv().unwrap().ack().unwrap(), 7);
    assert_eq!(rx.stats().decode_errors, 1);
}

/// A process acks and exits at once while a clone of its receiver lives in a monitor
/// thread (so no handle ever drops): every ack that returned reached the server, and
/// nothing comes back after `ack_wait`.
#[test]
fn an_ack_that_returned_is_not_redelivered_after_a_sudden_exit() {
    let Some(srv) = server() else { return };
    let _w = watchdog("ack then exit", Duration::from_secs(60));
    const SENT: u64 = 200;
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = WorkQueueOptions { ack_wait: Duration::from_secs(1), ..WorkQueueOptions::new(10_000) };
    let tx = nats.work_sender::<u64>("exiting", &o).unwrap();
    for id in 0..SENT {
        tx.send(id).unwrap();
    }
    let env = [
        ("KCORO_NATS_URL", srv.url()),
        ("KCORO_NATS_QUEUE", "exiting".to_string()),
        ("KCORO_NATS_COUNT", SENT.to_string()),
    ];
    let mut child = spawn_child("queue_faults::child", "ack-and-exit", &env);
    assert_eq!(wait_for(&mut child, "acked "), SENT.to_string());
    assert!(child.wait().unwrap().success());
    assert!(tx.close().unwrap());
    // Past ack_wait: an ack that never arrived would bring its message back here.
    std::thread::sleep(Duration::from_secs(2));
    let tally = drain(vec![nats.work_receiver::<u64>("exiting", &o).unwrap()]);
    let stranded = Raw::connect(&srv.url()).stranded("exiting");
    eprintln!("sent {SENT}, acked {SENT} then exited: redelivered {}, stranded {stranded}", tally.received());
    assert_eq!(
        (tally.received(), stranded),
        (0, 0),
        "redelivered after their acks returned: {:?}",
        tally.seen
    );
}

/// Receives and acks up to `n` deliveries, until `deadline`.
fn take(rx: &WorkReceiver<u64>, n: u64, deadline: std::time::Instant) -> Vec<u64> {
    let mut got = Vec::new();
    while (got.len() as u64) < n
        && let Ok(d) = rx.recv_deadline(deadline)
    {
        got.push(d.ack().unwrap());
    }
    got
}

/// A peer subscribed to the queue's subject sees the `Nats-Msg-Id` of what is stored and
/// publishes garbage under the ids it guesses come next (the sequence after the last one
/// seen, with or without the tag it saw). Before ids carried a keyed tag, the producer's
/// next five sends returned `Ok` and the server dropped them as duplicates of the garbage.
#[test]
fn forged_message_ids_cannot_make_sends_vanish() {
    let Some(srv) = server() else { return };
    let _w = watchdog("forged ids", Duration::from_secs(60));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = WorkQueueOptions::new(10_000);
    let tx = nats.work_sender::<u64>("forged", &o).unwrap();
    let raw = Raw::connect(&srv.url());
    for id in 0..10 {
        tx.send(id).unwrap();
    }
    let last = raw.msg_id("forged", 10).expect("an id");
    let parts: Vec<&str> = last.split('.').collect();
    let seq_at = parts.iter().rposition(|p| p.parse::<u64>().is_ok()).expect("a sequence number in the id");
    let seq: u64 = parts[seq_at].parse().unwrap();
    const FORGED: u64 = 5;
    for k in 1..=FORGED {
        let mut next = parts.clone();
        let guessed = (seq + k).to_string();
        next[seq_at] = &guessed;
        for id in [next.join("."), next[..=seq_at].join(".")] {
            let mut h = async_nats::HeaderMap::new();
            h.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            raw.publish("kcoro.wq.forged", Some(h), b"garbage".to_vec());
        }
    }
    for id in 10..20 {
        tx.send(id).unwrap();
    }
    assert_eq!(tx.stats().duplicates, 0, "no send of ours was taken for a duplicate");
    assert!(tx.close().unwrap());
    let rx = nats.work_receiver::<u64>("forged", &o).unwrap();
    let mut got: Vec<u64> = drain_until_closed(vec![rx.clone()]).into_iter().flatten().collect();
    got.sort_unstable();
    assert_eq!(got, (0..20).collect::<Vec<_>>(), "every send that returned Ok, once");
    assert_eq!(rx.stats().decode_errors, 2 * FORGED, "the garbage, counted and not taken for values");
}

/// A receiver dropped while its pull holds prefetched deliveries: they go back at once,
/// so another consumer gets every message without waiting for `ack_wait` (30 s here).
#[test]
fn a_receiver_dropped_mid_delivery_strands_nothing_for_ack_wait() {
    let Some(srv) = server() else { return };
    let _w = watchdog("dropped receiver", Duration::from_secs(60));
    let o = WorkQueueOptions { prefetch: 16, ..WorkQueueOptions::new(10_000) };
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let tx = nats.work_sender::<u64>("droprx", &o).unwrap();
    const N: u64 = 200;
    for id in 0..N {
        tx.send(id).unwrap();
    }
    let a_nats = kcoro_nats::connect(&srv.url()).unwrap();
    let a = a_nats.work_receiver::<u64>("droprx", &o).unwrap();
    a.recv().unwrap().ack().unwrap();
    // Its local buffer and its pull fill up (prefetch), whatever the timing: what they
    // hold goes back either way.
    std::thread::sleep(Duration::from_millis(300));
    drop(a);
    let b = kcoro_nats::connect(&srv.url()).unwrap().work_receiver::<u64>("droprx", &o).unwrap();
    let got = take(&b, N - 1, std::time::Instant::now() + Duration::from_secs(10));
    drop(a_nats);
    assert_eq!(got.len() as u64, N - 1, "the others got every message but the one acked, before ack_wait");
}
