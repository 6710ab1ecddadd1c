//! Shared by the integration tests: a server per test, a watchdog, polling helpers.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
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

/// Starts this test binary again as a child running only the ignored test `child` (its
/// path in the suite, `module::child`), with `KCORO_NATS_ROLE=role` and `env`; stdout is
/// piped for the parent to read.
pub fn spawn_child(child: &str, role: &str, env: &[(&str, String)]) -> Child {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", child, "--ignored", "--nocapture"])
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

/// A raw client beside the bridge, for what only the server can tell or a foreign peer
/// would do.
pub struct Raw {
    rt: tokio::runtime::Runtime,
    js: jetstream::Context,
}

impl Raw {
    pub fn connect(url: &str) -> Raw {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let js = rt.block_on(async { jetstream::new(async_nats::connect(url).await.unwrap()) });
        Raw { rt, js }
    }

    /// Messages left in the queue's stream.
    pub fn stranded(&self, queue: &str) -> u64 {
        self.rt.block_on(async {
            let mut stream = self.js.get_stream(queue).await.unwrap();
            stream.info().await.unwrap().state.messages
        })
    }

    pub fn publish(&self, subject: &str, headers: Option<async_nats::HeaderMap>, payload: Vec<u8>) {
        self.rt.block_on(async {
            let ack = match headers {
                Some(h) => self.js.publish_with_headers(subject.to_string(), h, payload.into()).await,
                None => self.js.publish(subject.to_string(), payload.into()).await,
            };
            ack.unwrap().await.unwrap();
        });
    }

    /// A core publish (no stream, no ack), flushed to the server before it returns.
    pub fn publish_core(&self, subject: &str, payload: Vec<u8>) {
        self.publish_core_with(subject, None, payload);
    }

    /// [`Raw::publish_core`] with headers.
    pub fn publish_core_with(&self, subject: &str, headers: Option<async_nats::HeaderMap>, payload: Vec<u8>) {
        self.rt.block_on(async {
            let client = self.js.client();
            match headers {
                Some(h) => client.publish_with_headers(subject.to_string(), h, payload.into()).await.unwrap(),
                None => client.publish(subject.to_string(), payload.into()).await.unwrap(),
            }
            client.flush().await.unwrap();
        });
    }

    /// The `Nats-Msg-Id` of the message stored at `seq` in the queue's stream, if any.
    pub fn msg_id(&self, queue: &str, seq: u64) -> Option<String> {
        self.rt.block_on(async {
            let stream = self.js.get_stream(queue).await.unwrap();
            let msg = stream.get_raw_message(seq).await.unwrap();
            msg.headers.get(async_nats::header::NATS_MESSAGE_ID).map(|v| v.to_string())
        })
    }

    pub fn delete_consumer(&self, queue: &str, consumer: &str) {
        self.rt.block_on(async {
            let stream = self.js.get_stream(queue).await.unwrap();
            stream.delete_consumer(consumer).await.unwrap();
        });
    }
}

/// Runs each receiver on a thread, acking, until it gets `Closed` (anything else fails the
/// test); returns what each received, in order.
pub fn drain_until_closed(receivers: Vec<kcoro_nats::WorkReceiver<u64>>) -> Vec<Vec<u64>> {
    let threads: Vec<_> = receivers
        .into_iter()
        .map(|rx| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    match rx.recv() {
                        Ok(d) => got.push(d.ack().unwrap()),
                        Err(e) => {
                            assert_eq!(e.chan(), Some(kcoro::chan::ChanError::Closed), "{e}");
                            return got;
                        }
                    }
                }
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}
