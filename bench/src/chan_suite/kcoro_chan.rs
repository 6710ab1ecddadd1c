//! `chan` suite, kcoro rows: `kcoro::chan` rendezvous and buffered channels, parties as
//! coroutines on a fresh two-worker runtime, the driver as its `block_on` coroutine.

use kcoro::chan::{self, ChanError, Receiver, Sender};

use super::blocking::{self, Chan};
use crate::harness::Measurement;
use crate::runtime_suite::kcoro_rt;

/// Runs `case` with `n` operations on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    let case = case.to_owned();
    kcoro_rt::drive(move || blocking::run::<KcoroChan>(&case, n))
}

/// kcoro's side of the shared channel cases.
pub struct KcoroChan;

impl Chan for KcoroChan {
    type Exec = kcoro_rt::Kcoro;
    type Tx = Sender<u64>;
    type Rx = Receiver<u64>;

    fn channel(cap: usize) -> (Sender<u64>, Receiver<u64>) {
        if cap == 0 { chan::rendezvous() } else { chan::buffered(cap) }
    }
    fn send(tx: &Sender<u64>, v: u64) -> Result<(), String> {
        tx.send(v).map_err(|e| format!("kcoro send: {e}"))
    }
    fn recv(rx: &Receiver<u64>) -> Result<Option<u64>, String> {
        match rx.recv() {
            Ok(v) => Ok(Some(v)),
            Err(ChanError::Closed) => Ok(None),
            Err(e) => Err(format!("kcoro recv: {e}")),
        }
    }
    fn try_recv(rx: &Receiver<u64>) -> Option<u64> {
        rx.try_recv().ok()
    }
}
