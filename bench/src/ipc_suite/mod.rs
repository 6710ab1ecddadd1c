//! Suite `ipc`: moving messages between two processes through kcoro-ipc, against a raw
//! Unix socket written plainly (the floor) and against Servo's `ipc-channel`.
//!
//! | case          | shape                                                          | one op        |
//! |---------------|----------------------------------------------------------------|---------------|
//! | `rtt_{64,4k,1m}`    | request/response: send one message, wait for its echo    | a round trip  |
//! | `stream_{64,4k,1m}` | one-way: send `n` messages, then an end marker; the peer counts them and answers the count | one message |
//! | `rtt_{64,4k}_pinned` | as `rtt_*`, the client process on one CPU and the peer on another | a round trip |
//! | `stream_64_pinned` | as `stream_64`, the client process on one CPU and the peer on another | one message |
//!
//! Round-trip rows also report the median and 99th percentile of single round trips. The
//! pinned rows tell the cost of the link from the scheduler's placement: unpinned, on a
//! two-CPU machine the two processes' threads share both CPUs and a woken thread may wait
//! for one; pinned, each side has a CPU of its own (and every thread of a side shares it).
//!
//! Every run is two processes: the harness's child (the client, which times) and a peer
//! it spawns from this same binary (`kcoro-bench __ipc_peer <impl> <mode> <size> <addr>`,
//! [`peer`]), so the serving side is a real separate process. The client sends every
//! message from one prebuilt payload of the case's size; the peer checks each message's
//! length (and echoes it whole in `rtt`), and in `stream` answers an end marker (an empty
//! message) with the number of messages since the last marker, which the client checks.
//! Each run first does an untimed warm-up of [`warmup`]`(n)` ops over the same link.
//!
//! - `kcoro` ([`kcoro_link`]): the peer serves two buffered channels of `bytes::Bytes`,
//!   `in` and `out`, with `kcoro_ipc::Server` over a Unix socket, and echoes or counts on
//!   its own runtime; the client uses `RemoteSender`/`RemoteReceiver` from a coroutine.
//!   Defaults throughout: sends are credited (pipelined), elements of 64 KiB or more go
//!   through shared memory.
//! - `kcoro-shm`: the same, the client connecting to a `shm:` address: after the
//!   handshake the connection's frames go through shared-memory rings, and the Unix socket
//!   carries only the regions' descriptors.
//! - `raw` ([`raw_link`]): `std::os::unix::net::UnixStream`, messages framed as a `u32`
//!   length and the payload; the client writes each message with one `write_all` of a
//!   prebuilt frame, the peer reads through a 64 KiB `BufReader`.
//! - `ipc-channel` ([`ipc_channel_link`]): an `IpcBytesSender`/`IpcBytesReceiver` pair each
//!   way, exchanged through an `IpcOneShotServer`.
//! - `iceoryx2` ([`iceoryx2_link`]): iceoryx2 0.10 shared-memory publish-subscribe, `ping`
//!   and `pong` services of loaned `[u8]` samples, busy-polled. Not a dependency of this
//!   crate: its rows run the standalone `bench/iceoryx2` binary (client and its own peer
//!   process), which [`prepare`] builds only when an iceoryx2 row is selected.

mod iceoryx2_link;
mod ipc_channel_link;
mod kcoro_link;
mod raw_link;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::harness::{KCORO, Measurement, Skip, Suite, payload};
use crate::net_suite::sys;
use crate::runtime_suite::{WORKERS, warmup};

/// kcoro-ipc over a `shm:` address: the same server, the connection moved to
/// shared-memory rings.
pub const KCORO_SHM: &str = "kcoro-shm";

/// kcoro-ipc with each large message built in place in a lease of the connection's region.
pub const KCORO_LEASE: &str = "kcoro-lease";

/// `kcoro` with one worker per process, the threads raw and ipc-channel use.
pub const KCORO_1W: &str = "kcoro-1w";

/// `kcoro-shm` with one worker per process.
pub const KCORO_SHM_1W: &str = "kcoro-shm1w";

/// The floor: a Unix socket written plainly.
pub const RAW: &str = "raw";

/// Servo's cross-process channels.
pub const IPC_CHANNEL: &str = "ipc-channel";

/// Eclipse iceoryx2, zero-copy shared memory (the standalone `bench/iceoryx2` binary).
pub const ICEORYX2: &str = "iceoryx2";

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "ipc",
    notes: &[
        "two processes: the timing client and a peer process it spawns; Unix socket for every impl",
        "rtt_*: send one message of the size, wait for the peer's echo (one op = one round trip;",
        "  GB/s counts the request payload once); stream_*: one-way, one op = one message,",
        "  timed until the peer's count of them comes back",
        "kcoro: kcoro-ipc defaults (buffered channels of bytes::Bytes served by the peer; credited",
        "  sends; shared memory from 64 KiB); raw: std UnixStream, one write_all per message,",
        "  peer reads through a 64 KiB BufReader; ipc-channel: IpcBytesSender/Receiver each way",
        "kcoro-shm: as kcoro, connected to shm:PATH (frames through shared-memory rings)",
        "kcoro-1w, kcoro-shm1w (last, so the peers' ratios stay against the two-worker rows): as",
        "  kcoro and kcoro-shm, each process's runtime with one worker (raw and ipc-channel use",
        "  one thread per side) instead of the suite's two",
        "kcoro-lease (1 MiB cases): as kcoro, each message produced in place in a lease of the",
        "  connection's region (RemoteSender::lease; only the two checked bytes written): no copy",
        "iceoryx2: 0.10 shared-memory publish-subscribe (ping/pong services of loaned [u8] samples,",
        "  no drops); both sides busy-poll, as its own benchmarks do (bench/iceoryx2, built on demand)",
        "rtt_* rows add the p50 and p99 of single round trips; *_pinned: the client process on",
        "  one CPU, the peer process on another (every thread of each side on its CPU)",
    ],
    cases: &[
        payload("rtt_64", 20_000, 2_000, 64),
        payload("rtt_4k", 20_000, 2_000, 4 << 10),
        payload("rtt_1m", 1_000, 100, 1 << 20),
        payload("stream_64", 1_000_000, 100_000, 64),
        payload("stream_4k", 200_000, 20_000, 4 << 10),
        payload("stream_1m", 2_000, 200, 1 << 20),
        payload("rtt_64_pinned", 20_000, 2_000, 64),
        payload("rtt_4k_pinned", 20_000, 2_000, 4 << 10),
        payload("stream_64_pinned", 1_000_000, 100_000, 64),
    ],
    impls: &[KCORO, KCORO_SHM, KCORO_LEASE, RAW, IPC_CHANNEL, ICEORYX2, KCORO_1W, KCORO_SHM_1W],
    skips: &[Skip {
        imp: KCORO_LEASE,
        cases: &[
            "rtt_64",
            "rtt_4k",
            "stream_64",
            "stream_4k",
            "rtt_64_pinned",
            "rtt_4k_pinned",
            "stream_64_pinned",
        ],
        why: "below the 64 KiB shared-memory threshold (the kcoro row)",
    }],
    prepare: Some(prepare),
    go_in_child: false,
    child,
};

/// The two shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Echo every message.
    Rtt,
    /// Count messages; answer an end marker with the count.
    Stream,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Rtt => "rtt",
            Mode::Stream => "stream",
        }
    }

    fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "rtt" => Ok(Mode::Rtt),
            "stream" => Ok(Mode::Stream),
            _ => Err(format!("ipc: no mode {s:?}")),
        }
    }
}

/// The mode and payload size of a case, and whether its two processes are pinned.
fn shape(case: &str) -> Option<(Mode, usize, bool)> {
    let (case, pinned) = match case.strip_suffix("_pinned") {
        Some(unpinned) => (unpinned, true),
        None => (case, false),
    };
    let (mode, size) = case.split_once('_')?;
    let size = match size {
        "64" => 64,
        "4k" => 4 << 10,
        "1m" => 1 << 20,
        _ => return None,
    };
    Some((Mode::parse(mode).ok()?, size, pinned))
}

/// The client end of a link to a peer, as each implementation provides it.
pub trait Link {
    /// Sends one message: the prebuilt payload of the case's size.
    fn send(&mut self) -> Result<(), String>;
    /// Sends the end marker (an empty message).
    fn send_end(&mut self) -> Result<(), String>;
    /// Receives one message; returns its bytes (or those the link keeps them in).
    fn recv(&mut self) -> Result<&[u8], String>;
}

/// The byte at `i` of every payload, so an echo is checked, not just measured.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A payload of `size` bytes following [`pattern`].
pub fn make_payload(size: usize) -> Vec<u8> {
    (0..size).map(pattern).collect()
}

/// Runs one case of one implementation (the child side of the harness).
fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    let (mode, size, pinned) = shape(case).ok_or_else(|| format!("ipc: no case {case:?}"))?;
    let peer_cpu = if pinned { Some(pin_client()?) } else { None };
    match imp {
        KCORO => kcoro_link::run(kcoro_link::Over::Socket, mode, size, n, peer_cpu, WORKERS),
        KCORO_SHM => kcoro_link::run(kcoro_link::Over::Rings, mode, size, n, peer_cpu, WORKERS),
        KCORO_1W => kcoro_link::run(kcoro_link::Over::Socket, mode, size, n, peer_cpu, 1),
        KCORO_SHM_1W => kcoro_link::run(kcoro_link::Over::Rings, mode, size, n, peer_cpu, 1),
        KCORO_LEASE => kcoro_link::run(kcoro_link::Over::Leases, mode, size, n, peer_cpu, WORKERS),
        RAW => raw_link::run(mode, size, n, peer_cpu),
        IPC_CHANNEL => ipc_channel_link::run(mode, size, n, peer_cpu),
        ICEORYX2 => iceoryx2_link::run(mode, size, n, peer_cpu),
        _ => Err(format!("ipc: no Rust impl {imp:?}")),
    }
}

/// Builds the iceoryx2 binary when an iceoryx2 row runs; a failed build is a note, and
/// those rows fail with its reason, while the others run.
fn prepare(rows: &crate::harness::Selection) -> Result<(), String> {
    if rows.any(ICEORYX2, |_| true) {
        println!("note: {}", iceoryx2_link::prepare());
    }
    Ok(())
}

/// Pins this thread, and so every thread the client starts after it, to the first CPU it
/// may use; returns the next one, for the peer.
fn pin_client() -> Result<usize, String> {
    match sys::allowed_cpus().map_err(|e| format!("sched_getaffinity: {e}"))?[..] {
        [client, peer, ..] => {
            sys::pin_current_thread(client).map_err(|e| format!("sched_setaffinity: {e}"))?;
            Ok(peer)
        }
        _ => Err("the pinned cases put client and peer on two CPUs; this process may use one".into()),
    }
}

/// Warm-up, then the timed run of `mode` over `link`.
pub fn measure(link: &mut dyn Link, mode: Mode, size: usize, n: u64) -> Result<Measurement, String> {
    // The warm-up's round-trip times go to a vector of their own, dropped.
    let once = |link: &mut dyn Link, n: u64, op_ns: &mut Vec<u64>| match mode {
        Mode::Rtt => round_trips(link, size, n, op_ns),
        Mode::Stream => stream(link, n),
    };
    once(link, warmup(n), &mut Vec::new())?;
    let mut op_ns = Vec::new();
    let start = Instant::now();
    once(link, n, &mut op_ns)?;
    let elapsed = start.elapsed();
    Ok(Measurement::per_op_with_latency(elapsed, n, &mut op_ns))
}

/// `n` round trips, each echo checked (length and its first and last bytes), each one's
/// time in nanoseconds appended to `op_ns`.
fn round_trips(link: &mut dyn Link, size: usize, n: u64, op_ns: &mut Vec<u64>) -> Result<(), String> {
    op_ns.reserve(n as usize);
    let mut last = Instant::now();
    for i in 0..n {
        link.send()?;
        let got = link.recv()?;
        if got.len() != size || got.first() != Some(&pattern(0)) || got.last() != Some(&pattern(size - 1)) {
            return Err(format!("round trip {i}: echo of {} bytes does not match what was sent", got.len()));
        }
        let now = Instant::now();
        op_ns.push(now.duration_since(last).as_nanos() as u64);
        last = now;
    }
    Ok(())
}

/// `n` messages, the end marker, and the peer's count, which must be `n`.
fn stream(link: &mut dyn Link, n: u64) -> Result<(), String> {
    for _ in 0..n {
        link.send()?;
    }
    link.send_end()?;
    let got = link.recv()?;
    let count =
        <[u8; 8]>::try_from(got).map(u64::from_be_bytes).map_err(|_| "bad count reply".to_string())?;
    if count != n {
        return Err(format!("the peer counted {count} of {n} messages"));
    }
    Ok(())
}

/// What a peer does with each message it gets; `None` when it has nothing to send back.
pub struct PeerLogic {
    mode: Mode,
    size: usize,
    count: u64,
}

/// What the peer answers to one message.
pub enum Answer<'a> {
    /// Send this message back.
    Send(&'a [u8]),
    /// Send the count (the answer to an end marker).
    Count([u8; 8]),
    /// Nothing.
    Nothing,
}

impl PeerLogic {
    pub fn new(mode: Mode, size: usize) -> Self {
        PeerLogic { mode, size, count: 0 }
    }

    /// Checks `msg` and says what to send back.
    pub fn on<'a>(&mut self, msg: &'a [u8]) -> Result<Answer<'a>, String> {
        match self.mode {
            Mode::Rtt if msg.len() == self.size => Ok(Answer::Send(msg)),
            Mode::Stream if msg.is_empty() => {
                Ok(Answer::Count(std::mem::take(&mut self.count).to_be_bytes()))
            }
            Mode::Stream if msg.len() == self.size => {
                self.count += 1;
                Ok(Answer::Nothing)
            }
            _ => Err(format!("peer: a message of {} bytes, expected {}", msg.len(), self.size)),
        }
    }
}

/// The peer process: `__ipc_peer <impl> <mode> <size> <addr>`. It prints `ready` once the
/// client may connect, serves until the client goes, and exits.
pub fn peer(args: &[String]) -> Result<(), String> {
    let [imp, mode, size, addr] = args else {
        return Err("usage: kcoro-bench __ipc_peer <impl> <mode> <size> <addr>".into());
    };
    let mode = Mode::parse(mode)?;
    let size: usize = size.parse().map_err(|e| format!("bad size {size:?}: {e}"))?;
    let logic = PeerLogic::new(mode, size);
    match imp.as_str() {
        KCORO | KCORO_SHM | KCORO_LEASE => kcoro_link::peer(logic, addr, WORKERS),
        KCORO_1W | KCORO_SHM_1W => kcoro_link::peer(logic, addr, 1),
        RAW => raw_link::peer(logic, addr),
        IPC_CHANNEL => ipc_channel_link::peer(logic, addr),
        _ => Err(format!("ipc: no peer {imp:?}")),
    }
}

/// The peer process, killed if the client gives up before it exits.
pub struct PeerProcess {
    child: Option<Child>,
}

impl PeerProcess {
    /// Starts the peer of `imp` for `mode` and `size`, told to use `addr`, on `cpu` alone
    /// if given.
    pub fn spawn(
        imp: &str,
        mode: Mode,
        size: usize,
        addr: &str,
        cpu: Option<usize>,
    ) -> Result<PeerProcess, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args(["__ipc_peer", imp, mode.name(), &size.to_string(), addr])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(cpu) = cpu {
            sys::pin_command(&mut cmd, cpu).map_err(|e| format!("cannot pin the peer to CPU {cpu}: {e}"))?;
        }
        let child = cmd.spawn().map_err(|e| format!("cannot start the peer: {e}"))?;
        Ok(PeerProcess { child: Some(child) })
    }

    /// Waits for the peer's `ready` line.
    pub fn ready(&mut self) -> Result<(), String> {
        let out = self.child.as_mut().and_then(|c| c.stdout.take()).ok_or("peer has no stdout")?;
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).map_err(|e| format!("peer: {e}"))?;
        match line.trim() {
            "ready" => Ok(()),
            other => Err(format!("peer did not start (said {other:?})")),
        }
    }

    /// Waits for the peer to exit (the client has closed its end); fails on a bad exit.
    pub fn finish(mut self) -> Result<(), String> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let status = child.wait().map_err(|e| format!("peer: {e}"))?;
        if status.success() { Ok(()) } else { Err(format!("peer failed: {status}")) }
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A fresh Unix socket path for one run of `imp`.
pub fn socket_path(imp: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kcoro-bench-ipc-{imp}-{}.sock", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case has a shape whose size matches its payload column.
    #[test]
    fn cases_have_shapes() {
        for case in SUITE.cases {
            let (_, size, _) = shape(case.name).unwrap_or_else(|| panic!("{} has no shape", case.name));
            match case.kind {
                crate::harness::Kind::Payload { bytes } => assert_eq!(bytes, size as u64, "{}", case.name),
                k => panic!("{}: kind {k:?}", case.name),
            }
        }
        assert_eq!(shape("rtt_64_pinned"), Some((Mode::Rtt, 64, true)));
        assert_eq!(shape("stream_4k"), Some((Mode::Stream, 4 << 10, false)));
        assert!(shape("rtt_2k").is_none());
        assert!(shape("rtt_64_pinned_pinned").is_none());
        assert!(shape("echo_64").is_none());
    }

    /// The peer echoes in rtt, counts and answers markers in stream, and refuses a wrong size.
    #[test]
    fn peer_logic() {
        let mut p = PeerLogic::new(Mode::Rtt, 3);
        assert!(matches!(p.on(b"abc"), Ok(Answer::Send(b"abc"))));
        assert!(p.on(b"ab").is_err());
        let mut p = PeerLogic::new(Mode::Stream, 2);
        for _ in 0..5 {
            assert!(matches!(p.on(b"xy"), Ok(Answer::Nothing)));
        }
        assert!(matches!(p.on(b""), Ok(Answer::Count(c)) if u64::from_be_bytes(c) == 5));
        assert!(matches!(p.on(b""), Ok(Answer::Count(c)) if u64::from_be_bytes(c) == 0));
        assert!(p.on(b"xyz").is_err());
    }

    /// Each implementation's real link runs both shapes end to end, small and large
    /// (kcoro's shared-memory path), with the peer on a thread of the test process (the
    /// suite itself puts it in another process).
    #[test]
    fn links_run_both_shapes() {
        for mode in [Mode::Rtt, Mode::Stream] {
            for size in [64, 100 << 10] {
                raw_link::self_test(mode, size).unwrap_or_else(|e| panic!("raw {mode:?} {size}: {e}"));
                // Leases only where a message goes through shared memory.
                let leased = (size >= 64 << 10).then_some(kcoro_link::Over::Leases);
                for over in [kcoro_link::Over::Socket, kcoro_link::Over::Rings].into_iter().chain(leased) {
                    kcoro_link::self_test(over, mode, size, WORKERS)
                        .unwrap_or_else(|e| panic!("kcoro {over:?} {mode:?} {size}: {e}"));
                }
                // The `kcoro-1w` and `kcoro-shm1w` rows: one worker on each side.
                for over in [kcoro_link::Over::Socket, kcoro_link::Over::Rings] {
                    kcoro_link::self_test(over, mode, size, 1)
                        .unwrap_or_else(|e| panic!("kcoro {over:?} {mode:?} {size}, one worker: {e}"));
                }
                ipc_channel_link::self_test(mode, size)
                    .unwrap_or_else(|e| panic!("ipc-channel {mode:?} {size}: {e}"));
            }
        }
    }
}
