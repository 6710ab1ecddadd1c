//! The server dies mid-stream and comes back on the same port and store: stored messages
//! survive, senders resume (or time out when they asked to), receivers resume, nothing
//! hangs.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{eventually, server, watchdog};
use kcoro::chan::ChanError;
use kcoro_nats::{ConnectOptions, WorkQueueOptions};

const MESSAGES: u64 = 2_000;

#[test]
fn killing_and_restarting_the_server_mid_stream_loses_no_stored_message() {
    let Some(mut srv) = server() else { return };
    let _w = watchdog("server restart", Duration::from_secs(90));
    let opts = ConnectOptions { ack_timeout: Duration::from_secs(1), ..ConnectOptions::default() };
    let nats = kcoro_nats::connect_with(&srv.url(), opts).unwrap();
    let o = WorkQueueOptions { ack_wait: Duration::from_secs(2), prefetch: 32, ..WorkQueueOptions::new(500) };
    let tx = nats.work_sender::<u64>("survive", &o).unwrap();
    let rx = nats.work_receiver::<u64>("survive", &o).unwrap();

    let sending = tx.clone();
    let sender = std::thread::spawn(move || {
        // `send` retries through the outage; each Ok means the server stored the message.
        for id in 0..MESSAGES {
            sending.send(id).unwrap();
        }
    });
    let receiver = std::thread::spawn(move || {
        let mut seen: HashMap<u64, u64> = HashMap::new();
        let mut failed_acks = 0u64;
        loop {
            match rx.recv() {
                Ok(d) => {
                    // An ack the server could not take (it was down) fails and says so:
                    // the message may come again.
                    let id = *d;
                    if d.ack().is_err() {
                        failed_acks += 1;
                    }
                    *seen.entry(id).or_default() += 1;
                }
                Err(e) => {
                    assert_eq!(e.chan(), Some(ChanError::Closed));
                    return (seen, rx.stats(), failed_acks);
                }
            }
        }
    });

    eventually("a quarter stored", || tx.stats().published >= MESSAGES / 4);
    srv.kill();
    // While it is down: a bounded send gives up with Timeout and hands the value back.
    let e = tx.send_timeout(u64::MAX, Duration::from_millis(300)).unwrap_err();
    assert_eq!(e.chan(), Some(ChanError::Timeout));
    assert_eq!(e.into_inner(), u64::MAX);
    srv.restart().unwrap();

    sender.join().unwrap();
    tx.close().unwrap();
    let (seen, stats, failed_acks) = receiver.join().unwrap();
    let lost: Vec<u64> = (0..MESSAGES).filter(|id| !seen.contains_key(id)).collect();
    assert!(lost.is_empty(), "lost {} stored messages, first {:?}", lost.len(), &lost[..lost.len().min(5)]);
    let duplicates: u64 = seen.values().map(|n| n - 1).sum();
    let send_stats = tx.stats();
    eprintln!(
        "sender {send_stats:?}\nreceiver {stats:?}\nduplicates {duplicates}, failed acks {failed_acks}"
    );
    // At least once: a second copy comes from a publish retried across the outage (its
    // first attempt stored, the ack lost), from an ack lost in the crash (the message
    // comes again), or from consumer state the killed server had not yet written (the
    // copy then even counts as a first delivery). Only messages in flight at the kill
    // can be affected: a handful, never a large share.
    assert!(duplicates < MESSAGES / 10, "{duplicates} duplicates");
    // The value of the timed-out send may or may not have been stored: nothing else.
    assert!(seen.keys().all(|id| *id < MESSAGES || *id == u64::MAX));
}
