//! `chan` suite, may rows: may's `sync::mpmc` channel, parties as may coroutines, the
//! driver in one too (see `runtime_suite/may_rt.rs` for the scheduler's configuration).
//!
//! may's channels are all unbounded, so may runs only the cases where the capacity
//! cannot matter: `pingpong_rendezvous` (each side waits for the reply before sending
//! again, so no message ever queues behind another) and `nonblocking_try` (an empty
//! channel). The others ([`CAPACITY_MATTERS`]) are skipped in the suite table and
//! refused here.

use may::sync::mpmc::{self, Receiver, Sender};

use super::CAPACITY_MATTERS;
use super::blocking::{self, Chan};
use crate::harness::Measurement;
use crate::runtime_suite::may_rt;

/// Runs `case` with `n` operations on may's scheduler.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    if CAPACITY_MATTERS.contains(&case) {
        return Err(format!("may: {case} needs a bounded channel, and may has none"));
    }
    let case = case.to_owned();
    may_rt::drive(move || blocking::run::<MayChan>(&case, n))
}

/// may's side of the shared channel cases.
pub struct MayChan;

impl Chan for MayChan {
    type Exec = may_rt::May;
    type Tx = Sender<u64>;
    type Rx = Receiver<u64>;

    /// Unbounded whatever `cap` says; [`run`] admits only the cases where that is exact.
    fn channel(_cap: usize) -> (Sender<u64>, Receiver<u64>) {
        mpmc::channel()
    }
    fn send(tx: &Sender<u64>, v: u64) -> Result<(), String> {
        tx.send(v).map_err(|e| format!("may send: {e}"))
    }
    fn recv(rx: &Receiver<u64>) -> Result<Option<u64>, String> {
        // `RecvError` has one meaning: every sender is gone and the channel is empty.
        Ok(rx.recv().ok())
    }
    fn try_recv(rx: &Receiver<u64>) -> Option<u64> {
        rx.try_recv().ok()
    }
}
