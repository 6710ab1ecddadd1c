//! Shared by the integration tests: a server per test, a watchdog, polling helpers.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kcoro_nats::server::{LocalServer, ServerOptions};

/// A fresh server, or `None` (with the note) if nats-server is not installed.
pub fn server() -> Option<LocalServer> {
    LocalServer::start_or_skip()
}

/// A fresh server with options, or `None` if nats-server is not installed.
pub fn server_with(opts: ServerOptions) -> Option<LocalServer> {
    kcoro_nats::server::find_binary()?;
    Some(LocalServer::start(opts).expect("nats-server starts"))
}

/// Aborts the whole test binary if the test is still running after `limit`: a hang is a
/// failure, never a stuck CI run.
pub struct Watchdog(Arc<AtomicBool>);

pub fn watchdog(what: &'static str, limit: Duration) -> Watchdog {
    let done = Arc::new(AtomicBool::new(false));
    let d = Arc::clone(&done);
    std::thread::spawn(move || {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if d.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Straight to stderr: the test harness captures `eprintln!` from a test's
        // threads and the abort would swallow it.
        let _ = writeln!(std::io::stderr(), "watchdog: {what} still running after {limit:?}; aborting");
        std::process::abort();
    });
    Watchdog(done)
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Polls `cond` until it holds (or panics after 10 s): for effects that land on another
/// thread, such as counters updated by the bridge's executor.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < end, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Starts this test binary again as a child running only its ignored `child` test, with
/// `KCORO_NATS_ROLE=role` and `env`; stdout is piped for the parent to read.
pub fn spawn_child(role: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child", "--ignored", "--nocapture"])
        .env("KCORO_NATS_ROLE", role)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn a child process")
}

/// A variable the parent set for a child.
pub fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("child: {key} not set"))
}
