//! `chan` suite, flume rows: flume's `bounded(cap)` (`bounded(0)` is rendezvous), one OS
//! thread per party, the driver on the child's main thread.

use flume::{Receiver, Sender};

use super::blocking::{self, Chan, Threads};
use crate::harness::Measurement;

/// Runs `case` with `n` operations on the calling thread.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    blocking::run::<Flume>(case, n)
}

/// flume's side of the shared channel cases.
pub struct Flume;

impl Chan for Flume {
    type Exec = Threads;
    type Tx = Sender<u64>;
    type Rx = Receiver<u64>;

    fn channel(cap: usize) -> (Sender<u64>, Receiver<u64>) {
        flume::bounded(cap)
    }
    fn send(tx: &Sender<u64>, v: u64) -> Result<(), String> {
        tx.send(v).map_err(|e| format!("flume send: {e}"))
    }
    fn recv(rx: &Receiver<u64>) -> Result<Option<u64>, String> {
        // `RecvError::Disconnected` is its only error: every sender is gone, queue empty.
        Ok(rx.recv().ok())
    }
    fn try_recv(rx: &Receiver<u64>) -> Option<u64> {
        rx.try_recv().ok()
    }
}
