//! `select` suite, crossbeam rows: crossbeam-channel's `select!` (which picks at random
//! among ready arms, as Go does) over its `bounded` channels, one OS thread per party.

use crossbeam_channel::{Receiver, Sender, select};

use super::blocking::{self, Select};
use crate::chan_suite::crossbeam_chan::Crossbeam;
use crate::harness::Measurement;

/// Runs `case` with `n` operations on the calling thread.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    blocking::run::<Crossbeam>(case, n)
}

impl Select for Crossbeam {
    fn recv2(a: &Receiver<u64>, b: &Receiver<u64>) -> Result<usize, String> {
        select! {
            recv(a) -> m => m.map(|_| 0),
            recv(b) -> m => m.map(|_| 1),
        }
        .map_err(|e| format!("crossbeam select: {e}"))
    }
    fn recv3([a, b, c]: &[Receiver<u64>; 3]) -> Result<(), String> {
        select! {
            recv(a) -> m => m.map(drop),
            recv(b) -> m => m.map(drop),
            recv(c) -> m => m.map(drop),
        }
        .map_err(|e| format!("crossbeam select: {e}"))
    }
    fn send3_or_done([a, b, c]: &[Sender<u64>; 3], done: &Receiver<u64>) -> Result<bool, String> {
        select! {
            send(a, 0) -> r => r.map(|()| true),
            send(b, 0) -> r => r.map(|()| true),
            send(c, 0) -> r => r.map(|()| true),
            recv(done) -> _ => Ok(false),
        }
        .map_err(|e| format!("crossbeam select: {e}"))
    }
}
