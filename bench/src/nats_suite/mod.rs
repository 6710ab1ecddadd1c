//! Suite `nats`: kcoro-nats from coroutines against plain async-nats from tokio tasks, the
//! same server, the same shapes.
//!
//! | case          | shape                                                              | one op    |
//! |---------------|--------------------------------------------------------------------|-----------|
//! | `wq_{64,4k}`  | work queue: 64 senders publish and await each ack, one consumer acks each | a message |
//! | `core_{64,4k}`| core subject: one publisher, one subscriber counting every message | a message |
//!
//! Every run is one child process that starts its own `nats-server` (JetStream on, memory
//! storage for the queue, 127.0.0.1), runs the case to the last message received, and
//! reports the server's CPU share over the run on stderr (from /proc): near 100% of a
//! core means the server is the bottleneck.

mod async_nats_peer;
mod kcoro_nats_side;

use std::time::{Duration, Instant};

use kcoro_nats::server::{LocalServer, ServerOptions};

use crate::harness::{KCORO, Measurement, Skip, Suite, payload};

/// The peer: async-nats used directly from tokio tasks.
pub const ASYNC_NATS: &str = "async-nats";

/// The same peer publishing to the work queue with a `Nats-Msg-Id` per message, as
/// kcoro-nats does by default (`WorkQueueOptions::dedupe_ids`): the server's share of the
/// cost of retries without duplicates, beside the bridge's.
pub const ASYNC_NATS_IDS: &str = "async-ids";

/// kcoro-nats with `dedupe_ids: false`: the guarantee plain async-nats gives (a retried
/// publish may be stored twice), so its ns/op compares with the `async-nats` row's, where
/// the `kcoro` row (ids on, the default) compares with `async-ids`.
pub const KCORO_NO_IDS: &str = "kcoro-noids";

/// Concurrent senders in the work-queue cases (each awaits its publish's ack).
pub const SENDERS: usize = 64;

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "nats",
    notes: &[
        "each run starts its own nats-server 2.9 (JetStream, memory storage) on 127.0.0.1",
        "wq_*: 64 concurrent senders publish to a work queue (capacity 10 000, discard new)",
        "  and await each ack; one consumer acks every message; one op = one message consumed",
        "core_*: one publisher, one subscriber on a core subject; one op = one message received",
        "kcoro: kcoro-nats from coroutines (Bytes values, framed; work-queue publishes with",
        "  dedupe ids, the default); async-nats 0.46 from tokio tasks on a 2-worker runtime",
        "  (Bytes payloads); async-ids: the same, each work-queue publish with a Nats-Msg-Id",
        "kcoro-noids: kcoro with dedupe_ids off, as plain async-nats publishes (its ratio is to",
        "  the kcoro row; compare its ns/op with async-nats's)",
    ],
    cases: &[
        payload("wq_64", 20_000, 2_000, 64),
        payload("wq_4k", 20_000, 2_000, 4 << 10),
        payload("core_64", 200_000, 20_000, 64),
        payload("core_4k", 100_000, 10_000, 4 << 10),
    ],
    impls: &[KCORO, ASYNC_NATS, ASYNC_NATS_IDS, KCORO_NO_IDS],
    skips: &[
        Skip { imp: ASYNC_NATS_IDS, cases: &["core_64", "core_4k"], why: "ids are for JetStream publishes" },
        Skip { imp: KCORO_NO_IDS, cases: &["core_64", "core_4k"], why: "ids are for JetStream publishes" },
    ],
    prepare: None,
    go_in_child: false,
    child,
};

/// The two shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// JetStream work queue.
    WorkQueue,
    /// Core subject.
    Core,
}

fn shape(case: &str) -> Option<(Shape, usize)> {
    let (shape, size) = case.split_once('_')?;
    let size = match size {
        "64" => 64,
        "4k" => 4 << 10,
        _ => return None,
    };
    let shape = match shape {
        "wq" => Shape::WorkQueue,
        "core" => Shape::Core,
        _ => return None,
    };
    Some((shape, size))
}

/// How long a run may wait for its last message before it counts as lost.
pub const LAST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    let (shape, size) = shape(case).ok_or_else(|| format!("nats: no case {case:?}"))?;
    let server = LocalServer::start(ServerOptions::default()).map_err(|e| e.to_string())?;
    let cpu_before = server.cpu_time();
    let start = Instant::now();
    let elapsed = match imp {
        KCORO => kcoro_nats_side::run(&server.url(), shape, size, n, true)?,
        KCORO_NO_IDS => kcoro_nats_side::run(&server.url(), shape, size, n, false)?,
        ASYNC_NATS => async_nats_peer::run(&server.url(), shape, size, n, false)?,
        ASYNC_NATS_IDS => async_nats_peer::run(&server.url(), shape, size, n, true)?,
        _ => return Err(format!("nats: no impl {imp:?}")),
    };
    let wall = start.elapsed();
    if let (Some(a), Some(b)) = (cpu_before, server.cpu_time()) {
        let share = (b - a).as_secs_f64() / wall.as_secs_f64() * 100.0;
        eprintln!("nats {case} {imp}: nats-server CPU {share:.0}% of one core over the run");
    }
    Ok(Measurement::per_op(elapsed, n))
}

/// True if a nats-server binary is installed (the suite runs only then).
pub fn available() -> bool {
    kcoro_nats::server::find_binary().is_some()
}
