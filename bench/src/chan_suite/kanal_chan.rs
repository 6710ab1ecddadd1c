//! `chan` suite, kanal rows: kanal's sync `bounded(cap)` channels (`bounded(0)` is
//! rendezvous), one OS thread per party, the driver on the child's main thread.

use kanal::{Receiver, Sender};

use super::blocking::{self, Chan, Threads};
use crate::harness::Measurement;

/// Runs `case` with `n` operations on the calling thread.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    blocking::run::<Kanal>(case, n)
}

/// kanal's side of the shared channel cases.
pub struct Kanal;

impl Chan for Kanal {
    type Exec = Threads;
    type Tx = Sender<u64>;
    type Rx = Receiver<u64>;

    fn channel(cap: usize) -> (Sender<u64>, Receiver<u64>) {
        kanal::bounded(cap)
    }
    fn send(tx: &Sender<u64>, v: u64) -> Result<(), String> {
        tx.send(v).map_err(|e| format!("kanal send: {e}"))
    }
    fn recv(rx: &Receiver<u64>) -> Result<Option<u64>, String> {
        // Its errors: `SendClosed` (every sender dropped, how the cases close a channel)
        // and `Closed` (an explicit `close()`, which they never call).
        Ok(rx.recv().ok())
    }
    fn try_recv(rx: &Receiver<u64>) -> Option<u64> {
        rx.try_recv().ok().flatten()
    }
}
