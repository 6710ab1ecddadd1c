//! `select` suite, tokio rows: `tokio::select!` over `mpsc::channel(1)` receivers, the
//! driver a task on a fresh two-worker runtime (see `runtime_suite/tokio_rt.rs`).
//!
//! Only `select2_uncontended`: `select_sync_contended` has receivers sharing channels,
//! and mpsc has one consumer (skipped in the suite table, refused here).

use std::time::Instant;

use tokio::sync::mpsc;

use super::unknown;
use crate::chan_suite::Timed;
use crate::harness::Measurement;
use crate::runtime_suite::{tokio_rt, warmup};

/// Runs `case` with `n` operations on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    match case {
        "select2_uncontended" => tokio_rt::drive(async move {
            uncontended(warmup(n)).await?;
            let (elapsed, ops) = uncontended(n).await?;
            Ok(Measurement::per_op(elapsed, ops))
        }),
        "select_sync_contended" => Err(format!("tokio: {case} has several consumers, and mpsc has one")),
        _ => Err(unknown(case)),
    }
}

/// The shape of [`blocking::uncontended`](super::blocking::uncontended): the value
/// bounces between two channels of capacity 1, one select and one send per round.
/// `tokio::select!` polls its arms in random order, as Go's select does.
async fn uncontended(n: u64) -> Timed {
    let (tx1, mut rx1) = mpsc::channel(1);
    let (tx2, mut rx2) = mpsc::channel(1);
    tx1.send(0u64).await.map_err(|e| format!("tokio send: {e}"))?;
    let start = Instant::now();
    for _ in 0..n {
        let sent = tokio::select! {
            Some(_) = rx1.recv() => tx2.send(0).await,
            Some(_) = rx2.recv() => tx1.send(0).await,
            else => return Err("both channels closed".to_string()),
        };
        sent.map_err(|e| format!("tokio send: {e}"))?;
    }
    Ok((start.elapsed(), n))
}
