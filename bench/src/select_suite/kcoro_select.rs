//! `select` suite, kcoro rows: `kcoro::select!` over `kcoro::chan` channels, parties as
//! coroutines on a fresh two-worker runtime, the driver as its `block_on` coroutine.

use kcoro::chan::{Receiver, Sender};

use super::blocking::{self, Select};
use crate::chan_suite::kcoro_chan::KcoroChan;
use crate::harness::Measurement;
use crate::runtime_suite::kcoro_rt;

/// Runs `case` with `n` operations on a new runtime.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    let case = case.to_owned();
    kcoro_rt::drive(move || blocking::run::<KcoroChan>(&case, n))
}

impl Select for KcoroChan {
    fn recv2(a: &Receiver<u64>, b: &Receiver<u64>) -> Result<usize, String> {
        kcoro::select! {
            recv(a) -> m => m.map(|_| 0),
            recv(b) -> m => m.map(|_| 1),
        }
        .map_err(|e| format!("kcoro select: {e}"))
    }
    fn recv3([a, b, c]: &[Receiver<u64>; 3]) -> Result<(), String> {
        kcoro::select! {
            recv(a) -> m => m.map(drop),
            recv(b) -> m => m.map(drop),
            recv(c) -> m => m.map(drop),
        }
        .map_err(|e| format!("kcoro select: {e}"))
    }
    fn send3_or_done([a, b, c]: &[Sender<u64>; 3], done: &Receiver<u64>) -> Result<bool, String> {
        kcoro::select! {
            send(a, 0) -> r => r.map(|()| true).map_err(|e| e.to_string()),
            send(b, 0) -> r => r.map(|()| true).map_err(|e| e.to_string()),
            send(c, 0) -> r => r.map(|()| true).map_err(|e| e.to_string()),
            recv(done) -> _ => Ok(false),
        }
        .map_err(|e| format!("kcoro select: {e}"))
    }
}
