//! Suite `adapter`: throughput of the stream/session manager of `kcoro-adapter`
//! ([`kcoro_adapter::session`]) against the same protocol written on tokio.
//!
//! One session, [`STREAMS`] streams opened at once by [`STREAMS`] client parties; every
//! frame is a fresh `Vec<u8>` of [`FRAME`] bytes (`vec![b; FRAME]`, written by the client)
//! with a sequence number, flow-controlled by a credit window of [`WINDOW`] bytes per
//! direction and stream. The `n` frames of a run are shared out over the streams
//! ([`share`]): 262 144 frames, 512 MiB per stream, for `session_streams` and half that
//! for `session_echo` (with `--quick`, 1/16 of it). A server accepts each stream and runs
//! one party per stream.
//!
//! | case              | server party per stream                          | one op                  |
//! |-------------------|--------------------------------------------------|-------------------------|
//! | `session_streams` | drains: checks seq, length, first and last byte  | one frame delivered     |
//! | `session_echo`    | sends each frame back; a client reader drains it | one frame there and back |
//!
//! After its last frame a client half-closes its sending half; the server answers with its
//! own half-close once it has seen the client's, and the client waits for it, so every
//! stream is closed at the end of a run. The timed part starts before the streams are
//! opened and ends when every client has seen the server's half-close; the server's accept
//! loop is started before it. The checks after it (frames per stream; for kcoro also the
//! session's counters) are not timed. Each case runs an untimed warm-up of `n / 10 + 1`
//! frames first ([`warmup`]), on a fresh session.
//!
//! The implementations, both on two workers:
//!
//! - `kcoro`: `kcoro_adapter::session::{Session, Acceptor}` with `max_streams` 16 and
//!   `window` [`WINDOW`]; parties are coroutines on a `kcoro::Runtime` with `workers(2)`
//!   ([`kcoro_session`]). Each half is a kcoro unlimited channel of frames plus a credit
//!   counter; the session also keeps its exact counters, checked after the run. Clients
//!   start with `SpawnOptions::spread()`, and each stream's server party (and echo reader)
//!   on the worker the stream was opened from (`on_worker(opened_on)`), as docs/ADAPTER.md
//!   advises: started coroutines do not migrate, so this is what puts a stream's two
//!   parties together, which tokio's scheduler does by moving tasks.
//! - `tokio`: per half a `tokio::sync::mpsc` unbounded channel of `(seq, Vec<u8>)` plus a
//!   shared `tokio::sync::Semaphore` holding the window in permits (`acquire_many(len)`
//!   and `forget` before a send, `add_permits(len)` after a receive); half-close is
//!   dropping the sender; streams reach the server over an unbounded accept channel, a
//!   stream slot is a permit of a 16-permit semaphore. Parties are tasks on a
//!   `worker_threads(2)` runtime ([`tokio_session`]).
//!
//! Go has no row (no Go session manager to compare with).

pub mod kcoro_session;
pub mod tokio_session;

pub use crate::chan_suite::{Timed, share};
use crate::harness::{Case, KCORO, Measurement, Suite, throughput};
pub use crate::runtime_suite::warmup;

/// Streams per session, all open at once.
pub const STREAMS: usize = 8;

/// Bytes per frame.
pub const FRAME: usize = 16 << 10;

/// Credit window per direction and stream, in bytes (four frames).
pub const WINDOW: u64 = 64 << 10;

/// Stream slots of a session (more than [`STREAMS`]: opening never waits).
pub const MAX_STREAMS: usize = 16;

/// A throughput case with 9 runs per row: a run is short (0.1 to 0.3 s) and its time
/// depends on how the parties happen to spread over the two workers, so single runs vary
/// by up to 2x.
const fn case(name: &'static str, n_full: u64, n_quick: u64) -> Case {
    Case { runs_full: 9, ..throughput(name, n_full, n_quick) }
}

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "adapter",
    notes: &[
        "8 streams at once, 16 KiB frames (a fresh Vec each), credit window 64 KiB per stream and way;",
        "  one op = one frame client -> server (session_streams), there and back (session_echo)",
        "kcoro: kcoro-adapter Session on kcoro workers(2), one coroutine per party;",
        "  clients spread, each stream's parties on the worker it was opened from (on_worker);",
        "  tokio: per half mpsc::unbounded_channel + Semaphore credit (acquire_many / add_permits),",
        "  worker_threads(2), one task per party",
        "throughput: MB/s = 16384000 / (ns/op)  (one-way bytes per second for both cases)",
    ],
    cases: &[
        // 8 streams x 512 MiB (quick: x 32 MiB), one way.
        case("session_streams", 262_144, 16_384),
        // 8 streams x 256 MiB (quick: x 16 MiB), there and back.
        case("session_echo", 131_072, 8_192),
    ],
    impls: &[KCORO, "tokio"],
    skips: &[],
    prepare: None,
    go_in_child: false,
    child,
};

/// Runs one case of one Rust implementation (the child side of the harness).
fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    match imp {
        KCORO => kcoro_session::run(case, n),
        "tokio" => tokio_session::run(case, n),
        _ => Err(format!("adapter: no Rust impl {imp:?}")),
    }
}

/// The error for a case name no implementation knows.
fn unknown(case: &str) -> String {
    format!("adapter: no case {case:?}")
}

/// The byte frame `seq` of stream `id` is filled with.
pub fn fill(id: u64, seq: u64) -> u8 {
    (seq as u8).wrapping_add((id as u8).wrapping_mul(31))
}

/// A new frame: [`FRAME`] bytes of [`fill`].
pub fn frame(id: u64, seq: u64) -> Vec<u8> {
    vec![fill(id, seq); FRAME]
}

/// Checks a frame received as `seq` on stream `id` when `expected` was next: the order,
/// the length and both ends (not every byte: the check should not dominate the run).
pub fn check(id: u64, expected: u64, seq: u64, bytes: &[u8]) -> Result<(), String> {
    if seq != expected {
        return Err(format!("stream {id}: frame {seq} arrived where {expected} was next"));
    }
    let b = fill(id, seq);
    if bytes.len() != FRAME || bytes[0] != b || bytes[FRAME - 1] != b {
        return Err(format!("stream {id}: frame {seq} corrupted ({} bytes)", bytes.len()));
    }
    Ok(())
}

/// Checks that each stream delivered what was sent on it (`(stream id, frames)` pairs, in
/// any order) and that the streams carried `n` frames in all.
pub fn check_totals(n: u64, mut sent: Vec<(u64, u64)>, mut got: Vec<(u64, u64)>) -> Result<(), String> {
    sent.sort_unstable();
    got.sort_unstable();
    if sent != got {
        return Err(format!("frames per stream: sent {sent:?}, delivered {got:?}"));
    }
    let total: u64 = sent.iter().map(|&(_, f)| f).sum();
    if sent.len() != STREAMS || total != n {
        return Err(format!("{} streams carried {total} frames, not {STREAMS} carrying {n}", sent.len()));
    }
    Ok(())
}
