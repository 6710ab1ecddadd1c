//! `chan` suite, tokio rows: `tokio::sync::mpsc` bounded channels, parties as tasks on a
//! fresh two-worker runtime, the driver a task too (see `runtime_suite/tokio_rt.rs`).
//!
//! The shapes are those of [`blocking`](super::blocking), written again because tokio's
//! API is async. Two differences, both in the suite notes: tokio has no rendezvous
//! channel, so `pingpong_rendezvous` uses `mpsc::channel(1)` (each side waits for the
//! reply before sending again, so a slot of one is never outgrown); and mpsc has a single
//! consumer, so the cases with several consumers are skipped in the suite table and
//! refused here.

use std::time::Instant;

use tokio::sync::mpsc;

use super::{MULTI_CONSUMER, Timed, unknown, warmup};
use crate::harness::Measurement;
use crate::runtime_suite::tokio_rt;

/// Runs `case` with `n` operations on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    if MULTI_CONSUMER.contains(&case) {
        return Err(format!("tokio: {case} has several consumers, and mpsc has one"));
    }
    let case = case.to_owned();
    tokio_rt::drive(async move {
        one(&case, warmup(n)).await?;
        let (elapsed, ops) = one(&case, n).await?;
        Ok(Measurement::per_op(elapsed, ops))
    })
}

/// One run of `case` with `n` operations.
async fn one(case: &str, n: u64) -> Timed {
    match case {
        "pingpong_rendezvous" => pingpong(n).await,
        "spsc_1024" => spsc(1024, n).await,
        "nonblocking_try" => nonblocking(n).await,
        _ => Err(unknown(case)),
    }
}

/// `n` round trips over two channels of capacity 1 (tokio has no rendezvous channel):
/// the driver sends on ping and waits on pong; the task it spawns echoes each value back.
async fn pingpong(n: u64) -> Timed {
    let (ping_tx, mut ping_rx) = mpsc::channel(1);
    let (pong_tx, mut pong_rx) = mpsc::channel(1);
    let echo = tokio::spawn(async move {
        for _ in 0..n {
            let v = ping_rx.recv().await.ok_or("ping closed under the echo task")?;
            pong_tx.send(v).await.map_err(|e| format!("tokio send: {e}"))?;
        }
        Ok::<_, String>(())
    });
    let start = Instant::now();
    for i in 0..n {
        ping_tx.send(i).await.map_err(|e| format!("tokio send: {e}"))?;
        let back = pong_rx.recv().await.ok_or("pong closed under the driver")?;
        if back != i {
            return Err(format!("pingpong: sent {i}, got {back} back"));
        }
    }
    let elapsed = start.elapsed();
    echo.await.map_err(|e| format!("echo task failed: {e}"))??;
    Ok((elapsed, n))
}

/// One producer task sends `n` messages into a channel of `cap` slots and drops its
/// sender; one consumer task receives until the channel is closed.
async fn spsc(cap: usize, n: u64) -> Timed {
    let (tx, mut rx) = mpsc::channel(cap);
    let start = Instant::now();
    let producer = tokio::spawn(async move {
        for i in 0..n {
            tx.send(i).await.map_err(|e| format!("tokio send: {e}"))?;
        }
        Ok::<_, String>(())
    });
    let consumer = tokio::spawn(async move {
        let mut got = 0u64;
        while rx.recv().await.is_some() {
            got += 1;
        }
        got
    });
    producer.await.map_err(|e| format!("producer failed: {e}"))??;
    let got = consumer.await.map_err(|e| format!("consumer failed: {e}"))?;
    let elapsed = start.elapsed();
    match got {
        got if got == n => Ok((elapsed, n)),
        got => Err(format!("received {got} of {n} messages")),
    }
}

/// `n` try-receives on an empty channel (capacity 1: the nearest to rendezvous) whose
/// sender stays alive, so every try sees "empty", not "closed".
async fn nonblocking(n: u64) -> Timed {
    let (tx, mut rx) = mpsc::channel::<u64>(1);
    let start = Instant::now();
    let mut hits = 0u64;
    for _ in 0..n {
        hits += u64::from(rx.try_recv().is_ok());
    }
    let elapsed = start.elapsed();
    drop(tx);
    match hits {
        0 => Ok((elapsed, n)),
        _ => Err(format!("received {hits} messages from an empty channel")),
    }
}
