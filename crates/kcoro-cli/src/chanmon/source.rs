//! Where samples come from: a process attached over kcoro IPC, this process (the demo),
//! or a recorded NDJSON file.

use std::io::BufRead;

use kcoro_ipc::{ConnectOptions, Connection, IpcError};

use super::sample::{ChannelSample, SCHEMA, Sample, SchedSample};

/// A stream of samples.
pub trait Source: Send {
    /// The next sample; `Ok(None)` when a recording has ended. An error ends monitoring
    /// (the process went away, say) and is shown to the user.
    fn next_sample(&mut self) -> Result<Option<Sample>, String>;
}

/// A process serving kcoro IPC with the monitor enabled (`kcoro_ipc::monitor::serve`).
pub struct Remote {
    conn: Connection,
    addr: String,
}

impl Remote {
    pub fn connect(addr: &str, secret: Option<&str>) -> Result<Remote, String> {
        let mut opts = ConnectOptions::new();
        if let Some(s) = secret {
            opts = opts.secret(s.as_bytes().to_vec());
        }
        let conn = Connection::connect(addr, opts).map_err(|e| format!("cannot attach to {addr}: {e}"))?;
        Ok(Remote { conn, addr: addr.to_string() })
    }
}

impl Source for Remote {
    fn next_sample(&mut self) -> Result<Option<Sample>, String> {
        let gone = |e: IpcError| format!("{}: {e} (the monitored process may have exited)", self.addr);
        let stats = self.conn.list().map_err(gone)?;
        // A server that serves channels without the monitor has no scheduler to report.
        let sched = match self.conn.sched() {
            Ok(s) => Some(s),
            Err(IpcError::Refused { code, .. }) if code == -libc::ENOTSUP => None,
            Err(e) => return Err(gone(e)),
        };
        let taken_ns = sched.map(|s| s.taken_ns).into_iter().chain(stats.iter().map(|s| s.taken_ns)).max();
        Ok(Some(Sample {
            schema: SCHEMA,
            taken_ns: taken_ns.unwrap_or_else(monotonic_ns),
            source: self.addr.clone(),
            channels: stats.iter().map(ChannelSample::from_stats).collect(),
            sched: sched.map(|s| SchedSample::from(&s.stats)),
        }))
    }
}

/// This process: kcoro's registry of named channels and one runtime's counters.
pub struct Local {
    runtime: kcoro::Handle,
    name: String,
}

impl Local {
    pub fn new(runtime: kcoro::Handle, name: &str) -> Local {
        Local { runtime, name: name.to_string() }
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
        }))
    }
}

/// A recording made with `--json`, one sample per line.
pub struct Replay {
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    path: String,
    line: usize,
}

impl Replay {
    pub fn open(path: &str) -> Result<Replay, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
        Ok(Replay { lines: std::io::BufReader::new(f).lines(), path: path.to_string(), line: 0 })
    }
}

impl Source for Replay {
    fn next_sample(&mut self) -> Result<Option<Sample>, String> {
        loop {
            let Some(line) = self.lines.next() else { return Ok(None) };
            self.line += 1;
            let line = line.map_err(|e| format!("{}: {e}", self.path))?;
            if line.trim().is_empty() {
                continue;
            }
            return Sample::from_line(&line)
                .map(Some)
                .map_err(|e| format!("{}:{}: {e}", self.path, self.line));
        }
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
