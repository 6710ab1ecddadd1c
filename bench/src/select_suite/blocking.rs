//! The `select` cases written once for every implementation with a blocking select —
//! kcoro (coroutines), crossbeam and flume (OS threads) — over the `chan` suite's
//! [`Chan`] plus the three selects the cases need ([`Select`]), so all of them run the
//! same protocol and differ only in how a select is spelled.

use std::time::Instant;

use super::{CONTENDED_PAIRS, unknown};
use crate::chan_suite::blocking::{Chan, join_all, spawn};
use crate::chan_suite::{Timed, measure, share};
use crate::harness::Measurement;

/// The selects of the cases, on top of an implementation's [`Chan`].
pub trait Select: Chan {
    /// `select { recv a => 0, recv b => 1 }`; the message is dropped.
    fn recv2(a: &Self::Rx, b: &Self::Rx) -> Result<usize, String>;
    /// `select { recv rx[0], recv rx[1], recv rx[2] }`; the message is dropped.
    fn recv3(rx: &[Self::Rx; 3]) -> Result<(), String>;
    /// `select { send tx[0] <- 0, send tx[1] <- 0, send tx[2] <- 0, recv done }`: `Ok(true)`
    /// after a send, `Ok(false)` once `done` delivers a message or is closed.
    fn send3_or_done(tx: &[Self::Tx; 3], done: &Self::Rx) -> Result<bool, String>;
}

/// Runs `case` with `n` operations, after its warm-up, on the calling coroutine or thread.
pub fn run<C: Select>(case: &str, n: u64) -> Result<Measurement, String> {
    match case {
        "select2_uncontended" => measure(uncontended::<C>, n),
        "select_sync_contended" => measure(sync_contended::<C>, n),
        _ => Err(unknown(case)),
    }
}

/// Go's `BenchmarkSelectUncontended` for one party: two channels of capacity 1, one
/// holding a value; each of `n` rounds selects a receive from either and sends to the
/// other, so the value bounces between them and no select ever waits.
pub fn uncontended<C: Select>(n: u64) -> Timed {
    let (tx1, rx1) = C::channel(1);
    let (tx2, rx2) = C::channel(1);
    C::send(&tx1, 0)?;
    let start = Instant::now();
    for _ in 0..n {
        match C::recv2(&rx1, &rx2)? {
            0 => C::send(&tx2, 0)?,
            _ => C::send(&tx1, 0)?,
        }
    }
    Ok((start.elapsed(), n))
}

/// Go's `BenchmarkSelectSyncContended` with [`CONTENDED_PAIRS`] pairs on three shared
/// rendezvous channels: each pair's sender loops on [`Select::send3_or_done`], its
/// receiver on [`Select::recv3`]; the receivers make `n` receives in total (one op each).
/// The clock stops when they are done; closing `done` then stops the senders.
pub fn sync_contended<C: Select>(n: u64) -> Timed {
    let chans = [C::channel(0), C::channel(0), C::channel(0)];
    let txs = chans.clone().map(|(tx, _)| tx);
    let rxs = chans.map(|(_, rx)| rx);
    let (done_tx, done_rx) = C::channel(0);
    let start = Instant::now();
    let mut senders = Vec::with_capacity(CONTENDED_PAIRS);
    let mut receivers = Vec::with_capacity(CONTENDED_PAIRS);
    for p in 0..CONTENDED_PAIRS {
        let (txs, done_rx) = (txs.clone(), done_rx.clone());
        senders.push(spawn::<C>(move || {
            while C::send3_or_done(&txs, &done_rx)? {}
            Ok(())
        }));
        let (rxs, count) = (rxs.clone(), share(n, CONTENDED_PAIRS, p));
        receivers.push(spawn::<C>(move || {
            for _ in 0..count {
                C::recv3(&rxs)?;
            }
            Ok(())
        }));
    }
    join_all::<C>(receivers)?;
    let elapsed = start.elapsed();
    // Dropping the only sender closes `done`, which every sender's select then takes.
    drop(done_tx);
    join_all::<C>(senders)?;
    Ok((elapsed, n))
}
