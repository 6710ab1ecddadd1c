//! A running load balancer of the lb rows, seen from the measuring child: the proxy's
//! process group (nginx's master forks its workers), its configuration directory, its
//! CPU time, and its end.
//!
//! Unlike a [`Server`](super::Server) a proxy prints no report: the child picks the port
//! for HAProxy and nginx ([`lb::Plan`]; `kcoro proxy` binds port 0 and prints where it
//! listens), waits for a `GET` through it to come back whole, and ends it with signals.
//!
//! # Invariants
//! - A `Balancer` exists ⇒ its leader was spawned in a group of its own (pgid = its pid),
//!   so a signal to the group reaches every process of the proxy.
//! - A `Balancer` is dropped ⇒ its group has been sent `SIGKILL`, its leader reaped and
//!   its directory removed, whether or not [`Balancer::stop`] ran.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::proto::{self, REQUEST};
use super::{lb, sys};

/// How long a proxy may take before a `GET` through it comes back.
const START_GRACE: Duration = Duration::from_secs(10);

/// How long a proxy may take to exit after `SIGTERM` before it gets `SIGKILL`.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// How long one probe `GET` may take (a 1 MiB answer on loopback takes milliseconds).
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How much of a proxy's output is kept for an error message (the end of it).
const OUTPUT_TAIL: usize = 2048;

/// A proxy process group and what it needs while it runs.
pub struct Balancer {
    child: Child,
    /// Holds the configuration (and nginx's pid file and error log); removed on drop.
    dir: PathBuf,
    /// The end of what it printed on stdout and stderr, filled by two reader threads.
    output: Arc<Mutex<Vec<u8>>>,
    /// `imp`, for messages.
    name: String,
    /// Where it listens.
    port: u16,
}

impl Balancer {
    /// Writes `imp`'s configuration for `plan`, starts it (pinned to `cpu` if given) and
    /// waits until a `GET` through it is answered. A plan with port 0 is for a proxy that
    /// says where it listens (`kcoro proxy`'s `listening: NAME on ADDR`).
    pub fn start(imp: &str, plan: &lb::Plan, cpu: Option<usize>) -> Result<Balancer, String> {
        let dir = std::env::temp_dir().join(format!("kcoro-bench-lb-{imp}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut child = match spawn(imp, plan, cpu, &dir) {
            Ok(child) => child,
            Err(why) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("{imp}: {why}"));
            }
        };
        let output = Arc::new(Mutex::new(Vec::new()));
        // Drained all along: a proxy that logs per connection must never block on a pipe.
        let pipes: [Option<Box<dyn Read + Send>>; 2] = [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        for pipe in pipes.into_iter().flatten() {
            let output = Arc::clone(&output);
            thread::spawn(move || keep_tail(pipe, &output));
        }
        let mut balancer = Balancer { child, dir, output, name: imp.to_string(), port: plan.port };
        if plan.port == 0 {
            balancer.port = balancer.announced_port().map_err(|why| balancer.failed(&why))?;
        }
        balancer.wait_ready(balancer.port).map_err(|why| balancer.failed(&why))?;
        Ok(balancer)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the first `listening: NAME on ADDR` line it prints, failing when it
    /// exits or [`START_GRACE`] passes first.
    fn announced_port(&mut self) -> Result<u16, String> {
        let deadline = Instant::now() + START_GRACE;
        loop {
            let printed =
                self.output.lock().map(|o| String::from_utf8_lossy(&o).into_owned()).unwrap_or_default();
            if let Some(line) = printed.lines().find(|l| l.starts_with("listening: ")) {
                let addr = line.rsplit(' ').next().unwrap_or_default();
                return match addr.parse::<SocketAddr>() {
                    Ok(a) => Ok(a.port()),
                    Err(e) => Err(format!("cannot read the address of {line:?}: {e}")),
                };
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}) before saying where it listens"));
            }
            if Instant::now() >= deadline {
                return Err(format!("did not say where it listens within {START_GRACE:?}"));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// CPU time of the proxy's leader and its children so far.
    pub fn cpu_ns(&self) -> Result<u64, String> {
        sys::process_tree_cpu_ns(self.child.id())
    }

    /// Ends the whole group: `SIGTERM`, [`STOP_GRACE`] for the leader to exit, then
    /// `SIGKILL` for whatever is left (an nginx worker still closing, say). Fails only
    /// when the leader would not exit on `SIGTERM`.
    pub fn stop(mut self) -> Result<(), String> {
        let pgid = self.child.id();
        sys::signal_group(pgid, libc::SIGTERM).map_err(|e| format!("{}: SIGTERM: {e}", self.name))?;
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => return Ok(()), // drop kills the group's stragglers
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("{}: wait: {e}", self.name)),
            }
        }
        Err(self.failed(&format!("still running {STOP_GRACE:?} after SIGTERM")))
    }

    /// Step 2 of [`lb`]'s protocol: retries until a `GET` comes back whole, failing when
    /// the proxy exits or [`START_GRACE`] passes.
    fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_GRACE;
        loop {
            let why = match probe(addr) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited ({status}) before answering"));
            }
            if Instant::now() >= deadline {
                return Err(format!("no answer through it within {START_GRACE:?}: {why}"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `why`, plus the end of what the proxy printed and of nginx's error log.
    fn failed(&mut self, why: &str) -> String {
        self.kill();
        let printed =
            self.output.lock().map(|o| String::from_utf8_lossy(&o).into_owned()).unwrap_or_default();
        let log = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let said: Vec<&str> = [printed.trim(), log.trim()].into_iter().filter(|s| !s.is_empty()).collect();
        match said[..] {
            [] => format!("{}: {why}", self.name),
            _ => format!("{}: {why}: {}", self.name, said.join("\n")),
        }
    }

    /// `SIGKILL` to the group, then reaps the leader.
    fn kill(&mut self) {
        let _ = sys::signal_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `imp`'s configuration into `dir` and starts it: pinned to `cpu` if given,
/// leader of its own group, stdout and stderr piped.
fn spawn(imp: &str, plan: &lb::Plan, cpu: Option<usize>, dir: &Path) -> Result<Child, String> {
    let mut cmd = lb::command(imp, plan, dir)?;
    if let Some(cpu) = cpu {
        sys::pin_command(&mut cmd, cpu).map_err(|e| format!("cannot pin it to CPU {cpu}: {e}"))?;
    }
    sys::own_group_command(&mut cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))
}

/// One `GET` through the proxy, read to the end of its answer.
fn probe(addr: SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(PROBE_TIMEOUT)).map_err(|e| format!("timeout: {e}"))?;
    s.write_all(REQUEST).map_err(|e| format!("write: {e}"))?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 64 << 10];
    loop {
        if proto::response_len(&got)?.is_some() {
            return if got.starts_with(b"HTTP/1.1 200 ") {
                Ok(())
            } else {
                Err(format!("answer {:?}", String::from_utf8_lossy(&got[..got.len().min(64)])))
            };
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("closed without an answer".to_string()),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// Reads `pipe` to its end, keeping the last [`OUTPUT_TAIL`] bytes in `tail`.
fn keep_tail(mut pipe: Box<dyn Read + Send>, tail: &Mutex<Vec<u8>>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut chunk) {
        let Ok(mut tail) = tail.lock() else { return };
        tail.extend_from_slice(&chunk[..n]);
        let excess = tail.len().saturating_sub(OUTPUT_TAIL);
        tail.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backend that answers one hello per connection, on a thread.
    fn hello_backend() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(proto::RESPONSE);
            }
        });
        port
    }

    #[test]
    fn probe_needs_a_whole_ok_answer() {
        let port = hello_backend();
        probe(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
            // Read the request first: closing with it unread would reset the connection.
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.read(&mut [0u8; 1024]);
        });
        assert!(probe(addr).unwrap_err().contains("502"));
        assert!(probe(addr).unwrap_err().contains("closed"));
    }

    /// Through HAProxy when it is installed (the suite's prepare installs it): start, CPU
    /// time, stop; afterwards no process of the group is left.
    #[test]
    fn haproxy_starts_answers_and_stops() {
        if std::process::Command::new("haproxy").arg("-v").output().is_err() {
            eprintln!("haproxy not installed; skipping");
            return;
        }
        let plan = lb::Plan {
            workers: 1,
            port: std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port(),
            backend_port: hello_backend(),
        };
        let balancer = Balancer::start(lb::HAPROXY, &plan, None).unwrap();
        let (pid, dir) = (balancer.child.id(), balancer.dir.clone());
        assert!(balancer.cpu_ns().is_ok());
        balancer.stop().unwrap();
        assert!(!dir.exists());
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
