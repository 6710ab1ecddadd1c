//! Both ends of a server process of the `net` suite.
//!
//! # Protocol
//! 1. The measuring child starts the server (`kcoro-bench __serve <service> <impl>
//!    <workers>`, or `kcoro-bench-go serve <service>` with `GOMAXPROCS=<workers>`), its
//!    stdin, stdout and stderr piped, pinned to one CPU in the one-worker setting.
//! 2. The server binds `127.0.0.1:0` (the proxy also binds its echo backend) and prints
//!    `port <P>`.
//! 3. The measuring child loads `127.0.0.1:<P>`, reading the server's CPU time from
//!    `/proc/<pid>/stat` before and after.
//! 4. It closes the server's stdin; the server prints its [`ServerReport`] as one JSON
//!    line and exits. A server that does not, within [`STOP_GRACE`], is killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::proto::{self, ServerReport};
use super::{Service, kcoro_net, sys, tokio_net};
use crate::harness::KCORO;

/// How long a server may take to print its port.
const START_GRACE: Duration = Duration::from_secs(10);

/// How long a server may take to report and exit once its stdin is closed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The tokio implementation's name.
pub const TOKIO: &str = "tokio";

/// The server side: `kcoro-bench __serve <service> <impl> <workers>`.
pub fn serve_command(service: &str, imp: &str, workers: &str) -> Result<(), String> {
    let service = Service::parse(service)?;
    let workers: usize = workers.parse().map_err(|e| format!("bad worker count {workers:?}: {e}"))?;
    sys::raise_nofile_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    report_on_stdin_eof();
    match imp {
        KCORO => kcoro_net::serve(service, workers, Box::new(announce)),
        TOKIO => tokio_net::serve(service, workers, Box::new(announce)),
        _ => Err(format!("net: no Rust server {imp:?}")),
    }
}

/// Step 2: tells the measuring child where to connect.
fn announce(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "port {}", addr.port());
    let _ = out.flush();
}

/// Step 4, server side: a thread waits for stdin to close, prints the report and ends
/// the process (the runtime's threads are busy serving; there is nothing to unwind).
fn report_on_stdin_eof() {
    thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let line = serde_json::to_string(&proto::report()).unwrap_or_else(|_| "{}".to_string());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        std::process::exit(0);
    });
}

/// A running server process, seen from the measuring child. Dropping it kills the
/// process if it still runs.
pub struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    /// The port it listens on.
    pub port: u16,
}

impl Server {
    /// Step 1 and 2: starts `cmd` (pinned to `cpu` if given) and waits for its port.
    pub fn start(mut cmd: Command, cpu: Option<usize>) -> Result<Server, String> {
        if let Some(cpu) = cpu {
            sys::pin_command(&mut cmd, cpu)
                .map_err(|e| format!("cannot pin the server to CPU {cpu}: {e}"))?;
        }
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child =
            cmd.spawn().map_err(|e| format!("cannot start server {:?}: {e}", cmd.get_program()))?;
        let stdout = child.stdout.take().ok_or("server has no stdout")?;
        let mut stderr = child.stderr.take().ok_or("server has no stderr")?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let stdin = child.stdin.take();
        let mut server = Server { child, stdin, lines, stderr: Some(stderr), port: 0 };
        let line = server.next_line(START_GRACE).map_err(|why| server.failed(&format!("no port: {why}")))?;
        server.port = line
            .strip_prefix("port ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| server.failed(&format!("expected `port <P>`, got {line:?}")))?;
        Ok(server)
    }

    /// CPU time the server has used so far (step 3).
    pub fn cpu_ns(&self) -> Result<u64, String> {
        sys::process_cpu_ns(self.child.id())
    }

    /// Step 4: closes stdin and returns the report the server prints.
    pub fn stop(mut self) -> Result<ServerReport, String> {
        drop(self.stdin.take());
        let line = self.next_line(STOP_GRACE).map_err(|why| self.failed(&format!("no report: {why}")))?;
        let report =
            serde_json::from_str(&line).map_err(|e| self.failed(&format!("bad report {line:?}: {e}")))?;
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(report);
            }
            thread::sleep(Duration::from_millis(5));
        }
        Err(self.failed("did not exit after reporting"))
    }

    /// The next line the server prints, or why there is none.
    fn next_line(&mut self, within: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(within) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => Err(format!("nothing printed within {within:?}")),
            Err(RecvTimeoutError::Disconnected) => match self.child.wait() {
                Ok(status) => Err(format!("server exited ({status})")),
                Err(e) => Err(format!("server output closed ({e})")),
            },
        }
    }

    /// `why`, plus what the server said on stderr (after killing it, so stderr closes).
    fn failed(&mut self, why: &str) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
        let stderr = stderr.trim();
        if stderr.is_empty() { format!("server: {why}") } else { format!("server: {why}: {stderr}") }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn port_then_report_on_stdin_close() {
        let server = Server::start(
            sh(r#"echo port 4321; cat >/dev/null; echo '{"threads":[{"name":"w0","requests":3}]}'"#),
            None,
        )
        .unwrap();
        assert_eq!(server.port, 4321);
        assert!(server.cpu_ns().is_ok());
        let report = server.stop().unwrap();
        assert_eq!(report.threads, vec![proto::ThreadCount { name: "w0".into(), requests: 3 }]);
    }

    #[test]
    fn a_server_that_dies_or_says_nothing_fails_with_its_stderr() {
        let err = Server::start(sh("echo broken >&2; exit 3"), None).err().unwrap();
        assert!(err.contains("server exited") && err.contains("broken"), "{err}");
        let err = Server::start(sh("echo hello"), None).err().unwrap();
        assert!(err.contains("expected `port <P>`"), "{err}");
        let server = Server::start(sh("echo port 1; cat >/dev/null"), None).unwrap();
        let err = server.stop().err().unwrap();
        assert!(err.contains("no report"), "{err}");
    }
}
