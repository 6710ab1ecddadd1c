//! `chan` suite, `kcoro-mon` rows: the kcoro rows with the channel named and a live
//! monitor attached, to measure what monitoring costs the monitored program.
//!
//! The child serves `kcoro_ipc::monitor` on its own runtime (the server's coroutines share
//! the two workers with the benchmark's parties), and a thread of the child samples it
//! over the Unix socket every [`INTERVAL`], as `kcoro chanmon` does: `LIST` (a snapshot of
//! every named channel, each under its channel's lock) and `GET_SCHED`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::Duration;

use kcoro::chan::{self, Receiver, Sender};

use super::blocking::{self, Chan};
use super::kcoro_chan::KcoroChan;
use crate::harness::Measurement;
use crate::runtime_suite::kcoro_rt;

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_millis(100);

/// Runs `case` with `n` operations on a new runtime, monitored.
pub fn run(case: &str, n: u64) -> Result<Measurement, String> {
    let case = case.to_owned();
    kcoro_rt::drive(move || {
        let sock = std::env::temp_dir().join(format!("kcoro-bench-monitor-{}.sock", std::process::id()));
        let addr = format!("unix:{}", sock.display());
        let server = kcoro_ipc::monitor::serve(&addr).map_err(|e| format!("monitor: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (stop, samples, addr) = (Arc::clone(&stop), Arc::clone(&samples), addr.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let conn = kcoro_ipc::connect(&addr).map_err(|e| format!("monitor client: {e}"))?;
                while !stop.load(Relaxed) {
                    let listed = conn.list().map_err(|e| format!("LIST: {e}"))?;
                    if !listed.iter().any(|c| c.name.as_deref() == Some(NAME)) {
                        return Err("the monitor does not list the benchmark's channel".into());
                    }
                    conn.sched().map_err(|e| format!("GET_SCHED: {e}"))?;
                    samples.fetch_add(1, Relaxed);
                    std::thread::sleep(INTERVAL);
                }
                Ok(())
            })
        };
        let out = blocking::run::<MonitoredChan>(&case, n);
        // A quick run can end before the first sample: the row must include at least one.
        while samples.load(Relaxed) == 0 && !sampler.is_finished() {
            kcoro::sleep(Duration::from_millis(1));
        }
        stop.store(true, Relaxed);
        // Joined off the workers: the sampler may be waiting on a reply from a server
        // coroutine of this runtime, which a worker blocked in `join` could never run.
        let sampled = kcoro::spawn_blocking(move || sampler.join())
            .join()
            .map_err(|e| format!("monitor thread: {e}"))?
            .map_err(|_| "monitor thread panicked".to_string())?;
        KEPT.lock().unwrap_or_else(|p| p.into_inner()).clear();
        drop(server);
        let _ = std::fs::remove_file(&sock);
        sampled?;
        if samples.load(Relaxed) == 0 {
            return Err("the monitor took no sample".into());
        }
        out
    })
}

/// The channel's name in the registry.
const NAME: &str = "bench.monitored";

/// The benchmark's channels, kept registered until the run's last sample.
static KEPT: std::sync::Mutex<Vec<Receiver<u64>>> = std::sync::Mutex::new(Vec::new());

/// [`KcoroChan`] with named channels (so the monitor lists them).
pub struct MonitoredChan;

impl Chan for MonitoredChan {
    type Exec = kcoro_rt::Kcoro;
    type Tx = Sender<u64>;
    type Rx = Receiver<u64>;

    fn channel(cap: usize) -> (Sender<u64>, Receiver<u64>) {
        let kind = if cap == 0 { chan::Kind::Rendezvous } else { chan::Kind::Buffered };
        let (tx, rx) = chan::Builder::new(kind).capacity(cap).name(NAME).build();
        // A receiver that never receives keeps the channel listed until the sampler has
        // seen it, however short the run.
        KEPT.lock().unwrap_or_else(|p| p.into_inner()).push(rx.clone());
        (tx, rx)
    }
    fn send(tx: &Sender<u64>, v: u64) -> Result<(), String> {
        KcoroChan::send(tx, v)
    }
    fn recv(rx: &Receiver<u64>) -> Result<Option<u64>, String> {
        KcoroChan::recv(rx)
    }
    fn try_recv(rx: &Receiver<u64>) -> Option<u64> {
        KcoroChan::try_recv(rx)
    }
}
