//! `select` suite, flume rows: `flume::Selector` over flume's `bounded` channels, one OS
//! thread per party. A `Selector` is consumed by `wait`, so every select builds a new one
//! (boxing each arm); that is the cost of flume's API and part of what is measured.
//!
//! `select_sync_contended` is refused: there the `Selector` loses a wake-up and the run
//! hangs (see the suite notes). [`Select::send3_or_done`] stays implemented so the case
//! can come back with a flume that fixes it.

use flume::{Receiver, Selector, Sender};

use super::blocking::{self, Select};
use crate::chan_suite::flume_chan::Flume;
use crate::harness::Measurement;

/// Runs `case` with `n` operations on the calling thread.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    match case {
        "select_sync_contended" => Err(format!("flume: {case} hangs in flume's Selector")),
        _ => blocking::run::<Flume>(case, n),
    }
}

impl Select for Flume {
    fn recv2(a: &Receiver<u64>, b: &Receiver<u64>) -> Result<usize, String> {
        Selector::new()
            .recv(a, |m| m.map(|_| 0))
            .recv(b, |m| m.map(|_| 1))
            .wait()
            .map_err(|e| format!("flume select: {e}"))
    }
    fn recv3([a, b, c]: &[Receiver<u64>; 3]) -> Result<(), String> {
        Selector::new()
            .recv(a, |m| m.map(drop))
            .recv(b, |m| m.map(drop))
            .recv(c, |m| m.map(drop))
            .wait()
            .map_err(|e| format!("flume select: {e}"))
    }
    fn send3_or_done([a, b, c]: &[Sender<u64>; 3], done: &Receiver<u64>) -> Result<bool, String> {
        Selector::new()
            .send(a, 0, |r| r.map(|()| true).map_err(|e| e.to_string()))
            .send(b, 0, |r| r.map(|()| true).map_err(|e| e.to_string()))
            .send(c, 0, |r| r.map(|()| true).map_err(|e| e.to_string()))
            .recv(done, |_| Ok(false))
            .wait()
            .map_err(|e| format!("flume select: {e}"))
    }
}
