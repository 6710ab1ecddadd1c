//! Many hosts, simulated by processes: 4 producers and 4 consumers move 100 000 messages
//! through one work queue; a consumer killed before acking has its messages redelivered
//! to another. The children are this test binary again, running [`child`] with a role.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Child;
use std::time::Duration;

use crate::common::{env, server, spawn_child, watchdog};
use kcoro::chan::ChanError;
use kcoro_nats::WorkQueueOptions;

const MESSAGES: u64 = 100_000;
const PRODUCERS: u64 = 4;
const CONSUMERS: usize = 4;

/// Coroutines sending at once in each producer process.
const SENDERS_PER_PRODUCER: u64 = 64;

/// Coroutines receiving (and acking) at once in each consumer process.
const RECEIVERS_PER_CONSUMER: usize = 16;

fn queue_opts() -> WorkQueueOptions {
    WorkQueueOptions { prefetch: 256, ..WorkQueueOptions::new(10_000) }
}

/// A child process's work; run only by the tests below (ignored otherwise).
#[test]
#[ignore = "a child role, started by the multi-process tests"]
fn child() {
    let Ok(role) = std::env::var("KCORO_NATS_ROLE") else {
        panic!("run by the multi-process tests, with KCORO_NATS_ROLE set");
    };
    let nats = kcoro_nats::connect(&env("KCORO_NATS_URL")).unwrap();
    let name = env("KCORO_NATS_QUEUE");
    match role.as_str() {
        "produce" => {
            let from: u64 = env("KCORO_NATS_FROM").parse().unwrap();
            let count: u64 = env("KCORO_NATS_COUNT").parse().unwrap();
            let tx = nats.work_sender::<u64>(&name, &queue_opts()).unwrap();
            kcoro::run(move || {
                let senders: Vec<_> = (0..SENDERS_PER_PRODUCER)
                    .map(|s| {
                        let tx = tx.clone();
                        kcoro::spawn(move || {
                            let mut id = from + s;
                            while id < from + count {
                                tx.send(id).unwrap();
                                id += SENDERS_PER_PRODUCER;
                            }
                        })
                    })
                    .collect();
                for s in senders {
                    s.join().unwrap();
                }
                assert!(tx.close().unwrap());
            });
        }
        "consume" => {
            // Records (id, times delivered) as 16 bytes each, until the queue ends. Several
            // coroutines share the end, as a real consumer host would: each ack waits for
            // the server's answer, and their waits overlap.
            let rx = nats.work_receiver::<u64>(&name, &queue_opts()).unwrap();
            let out = kcoro::run(move || {
                let workers: Vec<_> = (0..RECEIVERS_PER_CONSUMER)
                    .map(|_| {
                        let rx = rx.clone();
                        kcoro::spawn(move || {
                            let mut out = Vec::new();
                            loop {
                                match rx.recv() {
                                    Ok(d) => {
                                        out.extend_from_slice(&d.delivered().to_le_bytes());
                                        out.extend_from_slice(&d.ack().unwrap().to_le_bytes());
                                    }
                                    Err(e) => {
                                        assert_eq!(e.chan(), Some(ChanError::Closed), "{e}");
                                        return out;
                                    }
                                }
                            }
                        })
                    })
                    .collect();
                workers.into_iter().flat_map(|w| w.join().unwrap()).collect::<Vec<u8>>()
            });
            std::fs::write(env("KCORO_NATS_OUT"), out).unwrap();
        }
        "hold" => {
            // Takes messages and never acks them, then waits to be killed.
            let o = WorkQueueOptions { ack_wait: Duration::from_secs(1), prefetch: 8, ..queue_opts() };
            let rx = nats.work_receiver::<u64>(&name, &o).unwrap();
            let held: Vec<u64> = (0..5).map(|_| rx.recv().unwrap().into_inner()).collect();
            println!("held {held:?}");
            std::thread::sleep(Duration::from_secs(60));
        }
        other => panic!("unknown role {other}"),
    }
}

fn read_records(path: &Path) -> Vec<(u64, u64)> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(16)
        .map(|c| {
            let delivered = u64::from_le_bytes(c[..8].try_into().unwrap());
            let id = u64::from_le_bytes(c[8..].try_into().unwrap());
            (id, delivered)
        })
        .collect()
}

#[test]
fn four_producer_and_four_consumer_processes_move_100k_messages() {
    let Some(srv) = server() else { return };
    let _w = watchdog("4x4 processes", Duration::from_secs(150));
    let base = [("KCORO_NATS_URL", srv.url()), ("KCORO_NATS_QUEUE", "many".to_string())];
    // Declare the queue once, so every child binds to the same stream and consumer.
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let tx = nats.work_sender::<u64>("many", &queue_opts()).unwrap();

    let outs: Vec<_> = (0..CONSUMERS).map(|i| srv.store_dir().join(format!("consumer-{i}.bin"))).collect();
    let consumers: Vec<Child> = outs
        .iter()
        .map(|out| {
            let mut e = base.to_vec();
            e.push(("KCORO_NATS_OUT", out.display().to_string()));
            spawn_child("processes::child", "consume", &e)
        })
        .collect();
    let per = MESSAGES / PRODUCERS;
    let producers: Vec<Child> = (0..PRODUCERS)
        .map(|p| {
            let mut e = base.to_vec();
            e.push(("KCORO_NATS_FROM", (p * per).to_string()));
            e.push(("KCORO_NATS_COUNT", per.to_string()));
            spawn_child("processes::child", "produce", &e)
        })
        .collect();
    for mut p in producers {
        assert!(p.wait().unwrap().success(), "a producer failed");
    }
    // Every producer closed; this end's close is the last, so the queue ends once the
    // consumers have acked everything.
    tx.close().unwrap();
    for mut c in consumers {
        assert!(c.wait().unwrap().success(), "a consumer failed");
    }

    let mut seen: HashMap<u64, u32> = HashMap::new();
    let mut redelivered = 0;
    let mut per_consumer = Vec::new();
    for out in &outs {
        let records = read_records(out);
        per_consumer.push(records.len());
        for (id, delivered) in records {
            *seen.entry(id).or_default() += 1;
            if delivered > 1 {
                redelivered += 1;
            }
        }
    }
    let lost = (0..MESSAGES).filter(|id| !seen.contains_key(id)).count();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    eprintln!("per consumer {per_consumer:?}, duplicates {duplicates}, redelivered {redelivered}");
    assert_eq!(lost, 0, "no message lost");
    assert_eq!(seen.len() as u64, MESSAGES, "no message that was never sent");
    // At least once: a second copy only where the server redelivered (an ack not in time).
    assert!(duplicates as usize <= redelivered, "duplicates {duplicates} without redelivery ({redelivered})");
}

#[test]
fn a_consumer_killed_before_acking_has_its_messages_redelivered_to_another() {
    let Some(srv) = server() else { return };
    let _w = watchdog("killed consumer", Duration::from_secs(60));
    let nats = kcoro_nats::connect(&srv.url()).unwrap();
    let o = WorkQueueOptions { ack_wait: Duration::from_secs(1), prefetch: 8, ..queue_opts() };
    let tx = nats.work_sender::<u64>("held", &o).unwrap();
    for i in 0..5 {
        tx.send(i).unwrap();
    }
    let base = [("KCORO_NATS_URL", srv.url()), ("KCORO_NATS_QUEUE", "held".to_string())];
    let mut holder = spawn_child("processes::child", "hold", &base);
    // The test harness prints its own words too (maybe on the same line); ours follow "held".
    let mut reader = BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("held [") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the holder exited early");
    }
    assert_eq!(line[line.find("held [").unwrap()..].trim(), "held [0, 1, 2, 3, 4]");
    holder.kill().unwrap();
    holder.wait().unwrap();

    let rx = nats.work_receiver::<u64>("held", &o).unwrap();
    let mut again: Vec<(u64, u64)> = (0..5)
        .map(|_| {
            let d = rx.recv_timeout(Duration::from_secs(20)).unwrap();
            let delivered = d.delivered();
            (d.ack().unwrap(), delivered)
        })
        .collect();
    again.sort_unstable();
    for (i, (id, delivered)) in again.into_iter().enumerate() {
        assert_eq!(id, i as u64);
        assert!(delivered >= 2, "message {id} came back as a redelivery");
    }
}
