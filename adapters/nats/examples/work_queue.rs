//! A work queue across processes: one producer, consumers anywhere.
//!
//! ```text
//! work_queue                                  # all in one process, on a local nats-server
//! work_queue --url URL --produce N            # send N jobs, then close the queue
//! work_queue --url URL --consume              # handle jobs until the queue is closed
//! ```

use std::time::Duration;

use kcoro_nats::server::LocalServer;
use kcoro_nats::{NatsError, WorkQueueOptions};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    id: u64,
    payload: String,
}

fn opts() -> WorkQueueOptions {
    WorkQueueOptions { ack_wait: Duration::from_secs(10), ..WorkQueueOptions::new(10_000) }
}

fn produce(url: &str, n: u64) -> Result<(), NatsError> {
    let nats = kcoro_nats::connect(url)?;
    let tx = nats.work_sender::<Job>("jobs", &opts())?;
    for id in 0..n {
        tx.send(Job { id, payload: format!("job {id}") }).map_err(NatsError::from)?;
    }
    tx.close()?;
    println!("produced {n} jobs");
    Ok(())
}

fn consume(url: &str) -> Result<u64, NatsError> {
    let nats = kcoro_nats::connect(url)?;
    let rx = nats.work_receiver::<Job>("jobs", &opts())?;
    // Three coroutines share this host's deliveries.
    let handled = kcoro::run(move || {
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                kcoro::spawn(move || {
                    let mut n = 0u64;
                    while let Ok(d) = rx.recv() {
                        assert_eq!(d.payload, format!("job {}", d.id));
                        if d.ack().is_ok() {
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum::<u64>()
    });
    println!("consumed {handled} jobs");
    Ok(handled)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    match arg("--url") {
        Some(url) if args.iter().any(|a| a == "--consume") => {
            consume(&url)?;
        }
        Some(url) => produce(&url, arg("--produce").map_or(Ok(1000), |n| n.parse())?)?,
        None => {
            let Some(server) = LocalServer::start_or_skip() else { return Ok(()) };
            let url = server.url();
            let consumer_url = url.clone();
            let consumer = std::thread::spawn(move || consume(&consumer_url));
            produce(&url, 1000)?;
            let handled = consumer.join().map_err(|_| "consumer panicked")??;
            assert_eq!(handled, 1000);
        }
    }
    Ok(())
}
