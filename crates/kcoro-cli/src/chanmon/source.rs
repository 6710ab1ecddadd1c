//! Where samples come from: a process attached over kcoro IPC, this process (the demo),
//! or a recorded NDJSON file.

use std::io::BufRead;
use std::time::Duration;

use kcoro_ipc::{ConnectOptions, Connection, IpcError};

use super::sample::{ChannelSample, CoroutinesSample, MetricSample, SCHEMA, Sample, SchedSample};

/// A stream of samples.
pub trait Source: Send {
    /// The next sample; `Ok(None)` when a recording has ended. An error ends monitoring
    /// (the process went away, say) and is shown to the user.
    fn next_sample(&mut self) -> Result<Option<Sample>, String>;

    /// The file, when this source replays a recording (the screen says so).
    fn replay_of(&self) -> Option<&str> {
        None
    }
}

/// A process serving kcoro IPC with the monitor enabled (`kcoro_ipc::monitor::serve`).
///
/// Every request has an answer timeout, so a process that is stopped (SIGSTOP) or wedged
/// makes a sample fail after it instead of hanging the monitor. After a failure the next
/// sample connects again, so a monitor outlives a restart of its target.
pub struct Remote {
    conn: Option<Connection>,
    addr: String,
    options: ConnectOptions,
}

impl Remote {
    /// Connects (the first connection must succeed: a wrong address is the user's to fix).
    pub fn connect(addr: &str, secret: Option<&str>, timeout: Duration) -> Result<Remote, String> {
        let mut options = ConnectOptions::new().connect_timeout(timeout).request_timeout(timeout);
        if let Some(s) = secret {
            options = options.secret(s.as_bytes().to_vec());
        }
        let conn = Connection::connect(addr, options.clone())
            .map_err(|e| format!("cannot attach to {addr}: {e}"))?;
        Ok(Remote { conn: Some(conn), addr: addr.to_string(), options })
    }

    fn sample(&self, conn: &Connection) -> Result<Sample, IpcError> {
        let stats = conn.list()?;
        // A server that serves channels without the monitor has no scheduler to report.
        let sched = unsupported_is_none(conn.sched())?;
        let coroutines = unsupported_is_none(conn.coroutines())?;
        // The program's own counters, when it serves them (older servers refuse).
        let metrics = unsupported_is_none(conn.metrics())?.unwrap_or_default();
        let taken_ns = sched.map(|s| s.taken_ns).into_iter().chain(stats.iter().map(|s| s.taken_ns)).max();
        Ok(Sample {
            schema: SCHEMA,
            taken_ns: taken_ns.unwrap_or_else(monotonic_ns),
            source: self.addr.clone(),
            channels: stats.iter().map(ChannelSample::from_stats).collect(),
            sched: sched.map(|s| SchedSample::from(&s.stats)),
            coroutines: coroutines.as_ref().map(CoroutinesSample::from_report),
            metrics: metrics.iter().map(MetricSample::from_metric).collect(),
        })
    }
}

/// A request a server that is not a monitor refuses (ENOTSUP) answers `None`.
fn unsupported_is_none<T>(answer: Result<T, IpcError>) -> Result<Option<T>, IpcError> {
    match answer {
        Ok(v) => Ok(Some(v)),
        Err(IpcError::Refused { code, .. }) if code == -libc::ENOTSUP => Ok(None),
        Err(e) => Err(e),
    }
}

impl Source for Remote {
    fn next_sample(&mut self) -> Result<Option<Sample>, String> {
        let gone = |addr: &str, e: IpcError| match e {
            IpcError::Stalled(_) => format!("{addr}: {e} (is the monitored process stopped?)"),
            e => format!("{addr}: {e} (the monitored process may have exited)"),
        };
        let conn = match self.conn.take().filter(|c| !c.is_closed()) {
            Some(c) => c,
            None => Connection::connect(&self.addr, self.options.clone()).map_err(|e| gone(&self.addr, e))?,
        };
        match self.sample(&conn) {
            Ok(s) => {
                self.conn = Some(conn);
                Ok(Some(s))
            }
            Err(e) => {
                conn.close();
                Err(gone(&self.addr, e))
            }
        }
    }
}

/// This process: kcoro's registry of named channels, one runtime's counters and its
/// coroutines.
pub struct Local {
    runtime: kcoro::Handle,
    name: String,
    metrics: Box<dyn Fn() -> Vec<kcoro::monitor::Metric> + Send>,
}

impl Local {
    /// With the program's own metrics from `metrics`.
    pub fn new(
        runtime: kcoro::Handle,
        name: &str,
        metrics: impl Fn() -> Vec<kcoro::monitor::Metric> + Send + 'static,
    ) -> Local {
        Local { runtime, name: name.to_string(), metrics: Box::new(metrics) }
    }
}

impl Source for Local {
    fn next_sample(&mut self) -> Result<Option<Sample>, String> {
        let taken_ns = monotonic_ns();
        let channels = kcoro::chan::registry::list().iter().map(ChannelSample::from_snapshot).collect();
        Ok(Some(Sample {
            schema: SCHEMA,
            taken_ns,
            source: self.name.clone(),
            channels,
            sched: Some(SchedSample::from(&self.runtime.stats())),
            coroutines: Some(CoroutinesSample::from_report(&kcoro_ipc::CoroutineReport::of(&self.runtime))),
            metrics: (self.metrics)().iter().map(MetricSample::from_metric).collect(),
        }))
    }
}

/// A recording made with `--json`, one sample per line, read and checked whole when it
/// is opened (so a garbled file is refused before anything is shown).
pub struct Replay {
    samples: std::collections::VecDeque<Sample>,
    path: String,
}

/// Why a recording cannot be replayed.
#[derive(Debug)]
pub enum ReplayError {
    /// It cannot be read.
    Io(String),
    /// A line is not a sample of this schema.
    Garbled(String),
}

impl Replay {
    pub fn open(path: &str) -> Result<Replay, ReplayError> {
        let f = std::fs::File::open(path).map_err(|e| ReplayError::Io(format!("{path}: {e}")))?;
        let mut samples = std::collections::VecDeque::new();
        for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| ReplayError::Io(format!("{path}: {e}")))?;
            if line.trim().is_empty() {
                continue;
            }
            let sample = Sample::from_line(&line)
                .map_err(|e| ReplayError::Garbled(format!("{path}:{}: {e}", i + 1)))?;
            samples.push_back(sample);
        }
        Ok(Replay { samples, path: path.to_string() })
    }
}

impl Source for Replay {
    fn next_sample(&mut self) -> Result<Option<Sample>, String> {
        Ok(self.samples.pop_front())
    }

    fn replay_of(&self) -> Option<&str> {
        Some(&self.path)
    }
}

/// The monotonic clock in ns (what the IPC server stamps with, so local and remote
/// samples read the same way).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid timespec and a clock every Linux has.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}
