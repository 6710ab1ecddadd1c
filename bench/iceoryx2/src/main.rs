//! The `iceoryx2` rows of kcoro-bench's `ipc` suite: iceoryx2 0.10 (Eclipse iceoryx2, the
//! Rust zero-copy IPC library), run as two processes like every other row of that suite.
//!
//! This is a package of its own (its own workspace and `Cargo.lock`) so that kcoro-bench and
//! the kcoro workspace never compile iceoryx2: the `ipc` suite builds it with
//! `cargo build --release --manifest-path bench/iceoryx2/Cargo.toml` only when an
//! `iceoryx2` row is selected, and runs the binary from each of its children. It does not
//! depend on kcoro; the little it shares with the suite (the byte pattern, what one op is,
//! the peer's checks, the warm-up) is written again here and mirrors
//! `bench/src/ipc_suite/mod.rs`, which stays the reference.
//!
//! # Interface
//!
//! ```text
//! kcoro-bench-iceoryx2 client <rtt|stream> <size> <n> <warmup> [--peer-cpu N] [--wait spin|event]
//! kcoro-bench-iceoryx2 peer   <rtt|stream> <size> <service-prefix> [--wait spin|event]
//! ```
//!
//! The client creates the services under a prefix unique to it (its pid), spawns itself
//! as the peer (on CPU `N` alone if given, set with `sched_setaffinity` in the child before
//! `exec`; the caller pins the client itself), waits for the peer's `ready` line, runs
//! `warmup` untimed ops and then `n` timed ones, tells the peer to quit and waits for it,
//! and only then prints exactly one line of JSON on stdout:
//!
//! ```text
//! {"ns_per_op": F, "p50_ns": F|null, "p99_ns": F|null}
//! ```
//!
//! (`p50_ns`/`p99_ns`: the median and 99th percentile of single round trips, nearest rank,
//! for `rtt`; `null` for `stream`). Any failure (a wrong echo or count, a peer that exits or
//! fails) ends the client with a message on stderr and a non-zero exit, and prints no JSON.
//! The client dies with the thread that started it and the peer with the client
//! (`PR_SET_PDEATHSIG`), so a harness child killed on its timeout leaves no spinning client
//! or peer behind; the shared memory of processes killed that way is removed
//! by the next run (iceoryx2 cleans up dead nodes when a node is created, its default).
//!
//! # Shapes, as in the suite
//!
//! - `rtt`: send one message of `size` bytes (byte `i` is `i % 251`), wait for the peer's
//!   echo, check its length and first and last bytes; each round trip is timed on its own.
//! - `stream`: send `n` messages one way, then an end marker (an empty message); the peer
//!   counts them and answers the count as 8 big-endian bytes, which the client checks
//!   equals `n`. One op is one message, timed until the count comes back.
//!
//! # How iceoryx2 is used
//!
//! Two publish-subscribe services of `[u8]` slices, `<prefix>/ping` (client to peer) and
//! `<prefix>/pong` (peer to client), `ipc::Service`, one publisher and one subscriber each.
//! This is the shape of iceoryx2's own round-trip benchmark for slice payloads
//! (`benchmarks/publish-subscribe`: services `a2b` and `b2a`, a sample sent one way and one
//! sent back), rather than request-response, whose benchmark carries a `u64` only.
//! Every message is a sample loaned from the publisher's shared memory
//! (`loan_slice_uninit`, publishers created with `initial_max_slice_len` = the case's size),
//! written in place and sent; the receiver reads it in place (zero copy). The client writes
//! the prebuilt payload into each loan (one copy, as every other row copies its payload into
//! its link); the peer echoes by copying the received sample into a loan of its own. A
//! `u64` user header marks a message as data (`0`) or the client's quit (`1`).
//!
//! No message is ever dropped: the services have no history and `enable_safe_overflow(false)`,
//! and the publishers `BackpressureStrategy::RetryUntilDelivered`, so a publisher whose
//! subscriber's buffer is full waits (iceoryx2's adaptive wait) until there is room. The
//! subscriber buffers hold one message in `rtt` (one is in flight at a time) and, for the
//! `stream` data, [`STREAM_BUFFER_BYTES`] worth of messages (at least 8, at most 1024).
//!
//! Waiting for the next sample, `--wait`:
//!
//! - `spin` (the default): busy polling, `while subscriber.receive()?.is_none() {}`, as
//!   iceoryx2's benchmarks do (their README: "Subscribers employ multithreaded busy waiting").
//!   Each side keeps a CPU busy while it waits.
//! - `event`: event driven. Beside each publish-subscribe service there is an event service
//!   (`<prefix>/ping-event`, `<prefix>/pong-event`); the sender notifies after every sample
//!   (`Notifier::notify`), and a receiver that finds no sample blocks in
//!   `Listener::timed_wait` until notified, as in iceoryx2's `event_based_communication`
//!   example. (A WaitSet would multiplex several listeners; with one there is nothing to
//!   multiplex, so the listener is waited on directly.)

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::publisher::Publisher;
use iceoryx2::port::subscriber::Subscriber;
use iceoryx2::prelude::*;
use iceoryx2::sample::Sample;

/// Subscriber buffer of the `stream` data service, in bytes of payload: 8 MiB, so 1024
/// messages of 64 B or 4 KiB and 8 of 1 MiB.
pub const STREAM_BUFFER_BYTES: usize = 8 << 20;

/// The user header of a data message (and of the end marker, an empty data message).
const DATA: u64 = 0;

/// The user header of the client's last message: the peer exits.
const QUIT: u64 = 1;

/// Empty polls between two checks that the other process is still there (client side).
const POLLS_PER_CHECK: u32 = 1 << 16;

/// How long an event-driven receiver blocks before it checks on the other process.
const EVENT_TIMEOUT: Duration = Duration::from_millis(50);

type Pub = Publisher<ipc::Service, [u8], u64>;
type Sub = Subscriber<ipc::Service, [u8], u64>;
type Msg = Sample<ipc::Service, [u8], u64>;

/// The two shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Rtt,
    Stream,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "rtt" => Ok(Mode::Rtt),
            "stream" => Ok(Mode::Stream),
            _ => Err(format!("no mode {s:?} (rtt or stream)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Rtt => "rtt",
            Mode::Stream => "stream",
        }
    }
}

/// How a receiver waits for the next sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Busy polling.
    Spin,
    /// Blocking on an iceoryx2 event, notified after every sample.
    Event,
}

impl Wait {
    fn parse(s: &str) -> Result<Wait, String> {
        match s {
            "spin" => Ok(Wait::Spin),
            "event" => Ok(Wait::Event),
            _ => Err(format!("no wait strategy {s:?} (spin or event)")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Wait::Spin => "spin",
            Wait::Event => "event",
        }
    }
}

/// The byte at `i` of every payload (as `pattern` in the suite).
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Subscriber buffer, in messages, of the service carrying `mode`'s data of `size` bytes.
fn data_depth(mode: Mode, size: usize) -> usize {
    match mode {
        Mode::Rtt => 1,
        Mode::Stream => (STREAM_BUFFER_BYTES / size.max(1)).clamp(8, 1024),
    }
}

fn service_name(prefix: &str, what: &str) -> Result<ServiceName, String> {
    let name = format!("{prefix}/{what}");
    ServiceName::new(&name).map_err(|e| format!("service name {name:?}: {e:?}"))
}

/// One side's ends: a publisher and a subscriber, and with [`Wait::Event`] the notifier
/// that goes with the publisher and the listener that goes with the subscriber.
struct Ends {
    tx: Pub,
    rx: Sub,
    events: Option<(Notifier<ipc::Service>, Listener<ipc::Service>)>,
    // Ports first: they are dropped before their node.
    _node: Node<ipc::Service>,
}

/// Which end of the link a process is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Peer,
}

impl Ends {
    /// The client creates the services (`ping`, `pong` and their events) and its ends; the
    /// peer opens them and makes its ends.
    fn new(side: Side, mode: Mode, size: usize, prefix: &str, wait: Wait) -> Result<Ends, String> {
        let node = NodeBuilder::new().create::<ipc::Service>().map_err(|e| format!("node: {e:?}"))?;
        // The ping service carries the client's data; pong the echoes or the count.
        let (ping_depth, pong_depth) = (data_depth(mode, size), 1);
        let pong_len = match mode {
            Mode::Rtt => size,
            Mode::Stream => 8,
        };
        let pubsub = |what: &str, depth: usize| {
            let builder = node
                .service_builder(&service_name(prefix, what)?)
                .publish_subscribe::<[u8]>()
                .user_header::<u64>();
            match side {
                Side::Client => builder
                    .max_publishers(1)
                    .max_subscribers(1)
                    .history_size(0)
                    .subscriber_max_buffer_size(depth)
                    .enable_safe_overflow(false)
                    .create()
                    .map_err(|e| format!("create service {prefix}/{what}: {e:?}")),
                Side::Peer => builder.open().map_err(|e| format!("open service {prefix}/{what}: {e:?}")),
            }
        };
        let event = |what: &str| {
            let builder = node.service_builder(&service_name(prefix, what)?).event();
            match side {
                Side::Client => builder
                    .max_notifiers(1)
                    .max_listeners(1)
                    .create()
                    .map_err(|e| format!("create service {prefix}/{what}: {e:?}")),
                Side::Peer => builder.open().map_err(|e| format!("open service {prefix}/{what}: {e:?}")),
            }
        };
        let ping = pubsub("ping", ping_depth)?;
        let pong = pubsub("pong", pong_depth)?;
        let (out, out_len, inp, inp_depth, out_event, in_event) = match side {
            Side::Client => (&ping, size, &pong, pong_depth, "ping-event", "pong-event"),
            Side::Peer => (&pong, pong_len, &ping, ping_depth, "pong-event", "ping-event"),
        };
        // The subscriber first, so that the other side's publisher finds it.
        let rx = inp
            .subscriber_builder()
            .buffer_size(inp_depth)
            .create()
            .map_err(|e| format!("subscriber: {e:?}"))?;
        let tx = out
            .publisher_builder()
            .initial_max_slice_len(out_len.max(1))
            .backpressure_strategy(BackpressureStrategy::RetryUntilDelivered)
            .create()
            .map_err(|e| format!("publisher: {e:?}"))?;
        let events = match wait {
            Wait::Spin => None,
            Wait::Event => {
                let (out_event, in_event) = (event(out_event)?, event(in_event)?);
                let listener =
                    in_event.listener_builder().create().map_err(|e| format!("listener: {e:?}"))?;
                let notifier =
                    out_event.notifier_builder().create().map_err(|e| format!("notifier: {e:?}"))?;
                Some((notifier, listener))
            }
        };
        Ok(Ends { tx, rx, events, _node: node })
    }

    /// Sends `bytes` as one sample with user header `kind`, written into a loan in place.
    fn send(&self, bytes: &[u8], kind: u64) -> Result<(), String> {
        let mut loan = self.tx.loan_slice_uninit(bytes.len()).map_err(|e| format!("loan: {e:?}"))?;
        *loan.user_header_mut() = kind;
        loan.write_from_slice(bytes).send().map_err(|e| format!("send: {e:?}"))?;
        if let Some((notifier, _)) = &self.events {
            notifier.notify().map_err(|e| format!("notify: {e:?}"))?;
        }
        Ok(())
    }

    /// The next sample. `alive` is asked now and then, while none comes, whether waiting
    /// still makes sense.
    fn recv(&self, alive: &mut dyn FnMut() -> Result<(), String>) -> Result<Msg, String> {
        let mut polls = 0u32;
        loop {
            if let Some(msg) = self.rx.receive().map_err(|e| format!("receive: {e:?}"))? {
                return Ok(msg);
            }
            match &self.events {
                None => {
                    polls += 1;
                    if polls == POLLS_PER_CHECK {
                        polls = 0;
                        alive()?;
                    }
                }
                Some((_, listener)) => {
                    let woken =
                        listener.timed_wait(|_| {}, EVENT_TIMEOUT).map_err(|e| format!("wait: {e:?}"))?;
                    if woken == 0 {
                        alive()?;
                    }
                }
            }
        }
    }
}

/// The client's view of the peer process.
struct Peer {
    child: Option<Child>,
}

impl Peer {
    fn spawn(mode: Mode, size: usize, prefix: &str, wait: Wait, cpu: Option<usize>) -> Result<Peer, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args(["peer", mode.name(), &size.to_string(), prefix, "--wait", wait.name()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let parent = std::process::id() as libc::pid_t;
        // Built before the fork: the hook below must not allocate.
        let set = cpu.map(one_cpu).transpose()?;
        // SAFETY: the hook runs in the forked child before `exec` and makes only
        // async-signal-safe calls (prctl, getppid, sched_setaffinity) on values it owns.
        unsafe {
            cmd.pre_exec(move || {
                // The peer dies with the client; if the client is already gone, so is the peer.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != parent {
                    return Err(std::io::Error::other("the client is gone"));
                }
                if let Some(set) = &set
                    && libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start the peer: {e}"))?;
        Ok(Peer { child: Some(child) })
    }

    /// Waits for the peer's `ready` line.
    fn ready(&mut self) -> Result<(), String> {
        let child = self.child.as_mut().ok_or("no peer")?;
        let out = child.stdout.take().ok_or("peer has no stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).map_err(|e| format!("peer: {e}"))?;
        match line.trim() {
            "ready" => Ok(()),
            other => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!("the peer did not start (said {other:?}; {status})"))
            }
        }
    }

    /// An error if the peer has exited.
    fn alive(&mut self) -> Result<(), String> {
        let child = self.child.as_mut().ok_or("no peer")?;
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("the peer exited ({status})")),
            Err(e) => Err(format!("peer: {e}")),
        }
    }

    /// Waits for the peer to exit; an error unless it exits with success.
    fn finish(mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let status = child.wait().map_err(|e| format!("peer: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("the peer failed ({status})")) }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn one_cpu(cpu: usize) -> Result<libc::cpu_set_t, String> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(format!("no CPU {cpu}"));
    }
    // SAFETY: an all-zero `cpu_set_t` is the empty set; `cpu` is below `CPU_SETSIZE`.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        Ok(set)
    }
}

/// What one client run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Report {
    ns_per_op: f64,
    /// The median and 99th percentile of single round trips (`rtt` only).
    latency: Option<(f64, f64)>,
}

impl Report {
    fn json(&self) -> String {
        let (p50, p99) = match self.latency {
            Some((p50, p99)) => (p50.to_string(), p99.to_string()),
            None => ("null".into(), "null".into()),
        };
        format!("{{\"ns_per_op\": {}, \"p50_ns\": {p50}, \"p99_ns\": {p99}}}", self.ns_per_op)
    }
}

/// The median and 99th percentile of `op_ns` (sorted in place), nearest rank, as the
/// harness's `Latency::of`.
fn percentiles(op_ns: &mut [u64]) -> Option<(f64, f64)> {
    if op_ns.is_empty() {
        return None;
    }
    op_ns.sort_unstable();
    let rank = |p: f64| op_ns[((p * op_ns.len() as f64).ceil() as usize).clamp(1, op_ns.len()) - 1] as f64;
    Some((rank(0.50), rank(0.99)))
}

/// The client side, for one run.
struct Client {
    ends: Ends,
    peer: Peer,
    mode: Mode,
    size: usize,
    payload: Vec<u8>,
}

impl Client {
    /// `n` ops of the run's shape; the round trips' single times go to `op_ns`.
    fn ops(&mut self, n: u64, op_ns: &mut Vec<u64>) -> Result<(), String> {
        let Client { ends, peer, mode, size, payload } = self;
        let mut alive = || peer.alive();
        match mode {
            Mode::Rtt => {
                op_ns.reserve(n as usize);
                let mut last = Instant::now();
                for i in 0..n {
                    ends.send(payload, DATA)?;
                    let echo = ends.recv(&mut alive)?;
                    let got = echo.payload();
                    if got.len() != *size
                        || got.first() != Some(&pattern(0))
                        || got.last() != Some(&pattern(*size - 1))
                    {
                        return Err(format!(
                            "round trip {i}: echo of {} bytes does not match what was sent",
                            got.len()
                        ));
                    }
                    drop(echo);
                    let now = Instant::now();
                    op_ns.push(now.duration_since(last).as_nanos() as u64);
                    last = now;
                }
            }
            Mode::Stream => {
                for _ in 0..n {
                    ends.send(payload, DATA)?;
                }
                ends.send(&[], DATA)?;
                let reply = ends.recv(&mut alive)?;
                let count = <[u8; 8]>::try_from(reply.payload())
                    .map(u64::from_be_bytes)
                    .map_err(|_| format!("bad count reply of {} bytes", reply.payload().len()))?;
                if count != n {
                    return Err(format!("the peer counted {count} of {n} messages"));
                }
            }
        }
        Ok(())
    }
}

/// `client <mode> <size> <n> <warmup> [--peer-cpu N] [--wait W]`.
fn client(args: &[String]) -> Result<Report, String> {
    let (pos, peer_cpu, wait) = options(args, true)?;
    let [mode, size, n, warmup] = &pos[..] else {
        return Err(usage());
    };
    let mode = Mode::parse(mode)?;
    let size = number(size, "size")? as usize;
    let (n, warmup) = (number(n, "n")?, number(warmup, "warmup")?);
    if size == 0 {
        return Err("size must be at least 1".into());
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes two integers and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
        return Err(format!("prctl: {}", std::io::Error::last_os_error()));
    }
    let prefix = format!("kcoro-bench-iceoryx2/{}", std::process::id());
    let ends = Ends::new(Side::Client, mode, size, &prefix, wait)?;
    let mut peer = Peer::spawn(mode, size, &prefix, wait, peer_cpu)?;
    peer.ready()?;
    let payload = (0..size).map(pattern).collect();
    let mut client = Client { ends, peer, mode, size, payload };

    client.ops(warmup, &mut Vec::new())?;
    let mut op_ns = Vec::new();
    let start = Instant::now();
    client.ops(n, &mut op_ns)?;
    let elapsed = start.elapsed();

    client.ends.send(&[], QUIT)?;
    let Client { ends, peer, .. } = client;
    peer.finish()?;
    drop(ends);
    Ok(Report {
        ns_per_op: elapsed.as_nanos() as f64 / n.max(1) as f64,
        latency: match mode {
            Mode::Rtt => percentiles(&mut op_ns),
            Mode::Stream => None,
        },
    })
}

/// `peer <mode> <size> <prefix> [--wait W]`: serves until the client's quit.
fn peer(args: &[String]) -> Result<(), String> {
    let (pos, _, wait) = options(args, false)?;
    let [mode, size, prefix] = &pos[..] else {
        return Err(usage());
    };
    let mode = Mode::parse(mode)?;
    let size = number(size, "size")? as usize;
    let ends = Ends::new(Side::Peer, mode, size, prefix, wait)?;
    let mut out = std::io::stdout();
    writeln!(out, "ready").and_then(|()| out.flush()).map_err(|e| format!("stdout: {e}"))?;
    // The client's death kills this process (PR_SET_PDEATHSIG): nothing to check.
    let mut alive = || Ok(());
    let mut count = 0u64;
    loop {
        let msg = ends.recv(&mut alive)?;
        if *msg.user_header() == QUIT {
            return Ok(());
        }
        let got = msg.payload();
        match mode {
            Mode::Rtt if got.len() == size => ends.send(got, DATA)?,
            Mode::Stream if got.is_empty() => ends.send(&std::mem::take(&mut count).to_be_bytes(), DATA)?,
            Mode::Stream if got.len() == size => count += 1,
            _ => return Err(format!("peer: a message of {} bytes, expected {size}", got.len())),
        }
    }
}

/// Splits `--peer-cpu N` (client only) and `--wait W` from the positional arguments.
fn options(args: &[String], client: bool) -> Result<(Vec<String>, Option<usize>, Wait), String> {
    let (mut pos, mut cpu, mut wait) = (Vec::new(), None, Wait::Spin);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--peer-cpu" if client => {
                let v = it.next().ok_or("--peer-cpu needs a CPU number")?;
                cpu = Some(number(v, "--peer-cpu")? as usize);
            }
            "--wait" => wait = Wait::parse(it.next().ok_or("--wait needs spin or event")?)?,
            s if s.starts_with("--") => return Err(format!("unknown option {s:?}\n{}", usage())),
            _ => pos.push(a.clone()),
        }
    }
    Ok((pos, cpu, wait))
}

fn number(s: &str, what: &str) -> Result<u64, String> {
    s.parse().map_err(|e| format!("bad {what} {s:?}: {e}"))
}

fn usage() -> String {
    "usage: kcoro-bench-iceoryx2 client <rtt|stream> <size> <n> <warmup> [--peer-cpu N] [--wait spin|event]\n\
     \x20      kcoro-bench-iceoryx2 peer <rtt|stream> <size> <service-prefix> [--wait spin|event]"
        .into()
}

fn main() -> ExitCode {
    // iceoryx2 logs warnings (a missing config file, for one) to the console; errors only.
    set_log_level_from_env_or(LogLevel::Error);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("client") => client(&args[1..]).map(|report| println!("{}", report.json())),
        Some("peer") => peer(&args[1..]),
        _ => Err(usage()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kcoro-bench-iceoryx2: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut ops: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentiles(&mut ops), Some((50.0, 99.0)));
        assert_eq!(percentiles(&mut [7]), Some((7.0, 7.0)));
        assert_eq!(percentiles(&mut []), None);
    }

    #[test]
    fn report_is_one_json_line() {
        let r = Report { ns_per_op: 1500.5, latency: Some((1400.0, 3000.0)) };
        assert_eq!(r.json(), r#"{"ns_per_op": 1500.5, "p50_ns": 1400, "p99_ns": 3000}"#);
        let r = Report { ns_per_op: 12.0, latency: None };
        assert_eq!(r.json(), r#"{"ns_per_op": 12, "p50_ns": null, "p99_ns": null}"#);
    }

    #[test]
    fn stream_buffers_hold_8_mib() {
        assert_eq!(data_depth(Mode::Stream, 64), 1024);
        assert_eq!(data_depth(Mode::Stream, 4 << 10), 1024);
        assert_eq!(data_depth(Mode::Stream, 1 << 20), 8);
        assert_eq!(data_depth(Mode::Rtt, 1 << 20), 1);
    }

    #[test]
    fn options_split() {
        let args: Vec<String> = ["rtt", "64", "--peer-cpu", "1", "10", "--wait", "event", "2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (pos, cpu, wait) = options(&args, true).unwrap();
        assert_eq!(pos, ["rtt", "64", "10", "2"]);
        assert_eq!((cpu, wait), (Some(1), Wait::Event));
        assert!(options(&args, false).is_err());
    }
}
