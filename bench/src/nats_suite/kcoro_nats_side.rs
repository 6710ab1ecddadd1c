//! The `kcoro` rows: kcoro-nats ends used from coroutines.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kcoro_nats::WorkQueueOptions;

use super::{LAST_MESSAGE_TIMEOUT, SENDERS, Shape};

/// `dedupe_ids`: the work queue's [`WorkQueueOptions::dedupe_ids`] (on by default).
pub fn run(url: &str, shape: Shape, size: usize, n: u64, dedupe_ids: bool) -> Result<Duration, String> {
    let nats = kcoro_nats::connect(url).map_err(|e| e.to_string())?;
    let rt = kcoro::Runtime::builder().workers(2).build().map_err(|e| e.to_string())?;
    // The peer's payload type: a `Bytes` element is framed with one copy and received as a
    // view of the message, where a `Vec<u8>` goes through the codec byte by byte.
    let value = Bytes::from(vec![0xa5u8; size]);
    match shape {
        Shape::WorkQueue => {
            let o = WorkQueueOptions {
                memory_storage: true,
                prefetch: 256,
                dedupe_ids,
                ..WorkQueueOptions::new(10_000)
            };
            let (tx, rx) = nats.work_queue_with::<Bytes>("bench", o).map_err(|e| e.to_string())?;
            rt.block_on(move || {
                let start = Instant::now();
                let senders: Vec<_> = (0..SENDERS as u64)
                    .map(|s| {
                        let (tx, value) = (tx.clone(), value.clone());
                        kcoro::spawn(move || {
                            let mut i = s;
                            while i < n {
                                tx.send(value.clone()).map_err(|e| e.to_string())?;
                                i += SENDERS as u64;
                            }
                            Ok::<_, String>(())
                        })
                    })
                    .collect();
                for _ in 0..n {
                    let d = rx.recv_timeout(LAST_MESSAGE_TIMEOUT).map_err(|e| format!("consume: {e}"))?;
                    if d.len() != size {
                        return Err("wrong size".to_string());
                    }
                    // As the peer's `Message::ack`: queued to the connection, not confirmed.
                    d.ack_unconfirmed();
                }
                let elapsed = start.elapsed();
                for s in senders {
                    s.join().map_err(|e| e.to_string())??;
                }
                Ok(elapsed)
            })
        }
        Shape::Core => {
            let (publisher, subscriber) = nats.subject::<Bytes>("bench.core").map_err(|e| e.to_string())?;
            rt.block_on(move || {
                let start = Instant::now();
                let sender = kcoro::spawn(move || {
                    for _ in 0..n {
                        publisher.send(value.clone()).map_err(|e| e.to_string())?;
                    }
                    publisher.flush().map_err(|e| e.to_string())
                });
                for _ in 0..n {
                    let v =
                        subscriber.recv_timeout(LAST_MESSAGE_TIMEOUT).map_err(|e| format!("receive: {e}"))?;
                    if v.len() != size {
                        return Err("wrong size".to_string());
                    }
                }
                let elapsed = start.elapsed();
                sender.join().map_err(|e| e.to_string())??;
                Ok(elapsed)
            })
        }
    }
}
