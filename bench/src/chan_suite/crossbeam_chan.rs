//! `chan` suite, crossbeam rows: crossbeam-channel's `bounded(cap)` (`bounded(0)` is its
//! zero-capacity flavour), one OS thread per party, the driver on the child's main thread.

use crossbeam_channel::{Receiver, Sender};

use super::blocking::{self, Chan, Threads};
use crate::harness::Measurement;

/// Runs `case` with `n` operations on the calling thread.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    blocking::run::<Crossbeam>(case, n)
}

/// crossbeam's side of the shared channel cases.
pub struct Crossbeam;

impl Chan for Crossbeam {
    type Exec = Threads;
    type Tx = Sender<u64>;
    type Rx = Receiver<u64>;

    fn channel(cap: usize) -> (Sender<u64>, Receiver<u64>) {
        crossbeam_channel::bounded(cap)
    }
    fn send(tx: &Sender<u64>, v: u64) -> Result<(), String> {
        tx.send(v).map_err(|e| format!("crossbeam send: {e}"))
    }
    fn recv(rx: &Receiver<u64>) -> Result<Option<u64>, String> {
        // `RecvError` has one meaning: every sender is gone and the channel is empty.
        Ok(rx.recv().ok())
    }
    fn try_recv(rx: &Receiver<u64>) -> Option<u64> {
        rx.try_recv().ok()
    }
}
