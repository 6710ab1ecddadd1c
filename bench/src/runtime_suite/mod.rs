//! Suite `runtime`: the scheduler's own costs — yield, spawn+join, park/unpark round
//! trips, sleep accuracy, the time and memory of a million parked coroutines — and two
//! shapes built on them: structured scopes and actors.
//!
//! Every implementation runs on two worker threads: kcoro `workers(2)`, may
//! `set_workers(2)`, tokio `worker_threads(2)`, Go `GOMAXPROCS=2`. Each case's driver
//! runs *on* the runtime (inside a coroutine, task or goroutine), never on the
//! harness's main thread, so no implementation pays a cross-thread hop the others don't.
//!
//! Throughput cases run an untimed warm-up of `n / 10 + 1` operations first (see
//! [`warmup`]); the Go peer in `bench/go/main.go` does the same.
//!
//! | case                   | one op                                   | kind       |
//! |------------------------|------------------------------------------|------------|
//! | `yield`                | one yield of a lone coroutine            | throughput |
//! | `spawn_join`           | spawn an empty coroutine, join it        | throughput |
//! | `pingpong_park`        | A wakes B, B wakes A (one round trip)    | throughput |
//! | `sleep_1ms_accuracy`   | mean overshoot of a 1 ms sleep           | overshoot  |
//! | `spawn_1m_parked`      | spawn, park, wake, join; RSS growth      | memory     |
//! | `scope_spawn_join_100` | one scope: spawn 100 children, join all  | throughput |
//! | `actor_tell`           | one fire-and-forget `Add(1)` to an actor | throughput |
//! | `actor_ask`            | one `Get` to an actor and its reply      | throughput |
//! | `pair_one_worker`      | a rendezvous round trip, pair on 1 worker | throughput |
//! | `pair_two_workers`     | the same, the pair started on 2 workers  | throughput |
//!
//! The scope and actor cases: a scope's children each add their index (0..100) to one
//! shared atomic, and the driver checks the sum. The actor is a task owning a `u64`
//! counter and looping on a bounded mailbox of capacity [`MAILBOX`]; `actor_tell` times
//! n tells plus one final ask (so the actor has handled them all) and checks the counter
//! is exactly warm-up + n; `actor_ask` sends a `Get` carrying a fresh one-shot reply
//! channel per op. kcoro uses `kcoro::scope` (children borrow the counter from the
//! driver's stack) and `kcoro::actor` (a `Reply` one-shot per ask). may has no rows for
//! these (listed in [`SUITE`]'s skips).

pub mod kcoro_pair;
pub mod kcoro_rt;
pub mod may_rt;
pub mod stackful;
pub mod tokio_rt;

use std::time::Duration;

use crate::harness::{Case, GO, KCORO, Kind, Measurement, Skip, Suite, throughput};

/// Worker threads of every implementation.
pub const WORKERS: usize = 2;

/// The sleep requested by `sleep_1ms_accuracy`.
pub const SLEEP: Duration = Duration::from_millis(1);

/// may's coroutine stack, in machine words (may counts words, not bytes): 16 KiB.
/// may's default is 0x1000 words (32 KiB); an even count keeps may from painting the
/// whole stack for usage tracking.
pub const MAY_STACK_WORDS: usize = 16 * 1024 / size_of::<usize>();

/// Children spawned by each scope of `scope_spawn_join_100`.
pub const SCOPE_CHILDREN: u64 = 100;

/// Mailbox capacity of the actor in `actor_tell` and `actor_ask`.
pub const MAILBOX: usize = 1024;

/// The cases may has no peer for.
const SCOPE_ACTOR: &[&str] = &["scope_spawn_join_100", "actor_tell", "actor_ask"];

/// The cases that place a pair on chosen workers: only kcoro says where a coroutine starts.
const PAIRS: &[&str] = &["pair_one_worker", "pair_two_workers"];

/// Child time limit of `sleep_1ms_accuracy`.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "runtime",
    notes: &[
        "2 workers each: kcoro workers(2), go GOMAXPROCS=2, may set_workers(2), tokio worker_threads(2)",
        "may: coroutine stack set to 16 KiB (default 32 KiB), worker pinning left at its default (on);",
        "  each may stack is its own mmap + mprotect guard (2 mappings), so vm.max_map_count caps it near 32k",
        "pingpong_park: the measuring coroutine spawns its partner (as Go's `go func` does); kcoro and may park/unpark + a turn counter, tokio Notify + the same counter, go unbuffered channels",
        "sleep_1ms_accuracy: ns/op is the mean overshoot of a 1 ms sleep (lower is better)",
        "spawn_1m_parked: bytes/op = (peak RSS - RSS before spawning) / n, incl. the driver's handle vectors",
        "scope_spawn_join_100: per scope, 100 children each add their index to one shared atomic;",
        "  kcoro: kcoro::scope with 100 s.spawn (children borrow the counter), go: 100 goroutines + a",
        "  sync.WaitGroup, tokio: a JoinSet with 100 spawns drained by join_next",
        "actor_tell / actor_ask: the actor owns a u64 counter and loops on a bounded mailbox of 1024;",
        "  kcoro: kcoro::actor with ActorOpts::mailbox(1024), go: a goroutine on a chan of cap 1024,",
        "  tokio: a task on mpsc::channel(1024);",
        "  actor_tell: n Add(1) sends, then one ask to wait for the actor (counter checked == warm-up + n)",
        "  actor_ask: a Get carrying a new reply per op, kcoro: actor::Reply, go: chan uint64 of cap 1,",
        "  tokio: oneshot",
        "pair_one_worker / pair_two_workers (kcoro only): a rendezvous ping-pong round trip between two",
        "  coroutines started (SpawnOptions::spread) on the same worker / on different workers",
    ],
    cases: &[
        throughput("yield", 2_000_000, 200_000),
        throughput("spawn_join", 200_000, 20_000),
        throughput("pingpong_park", 200_000, 20_000),
        Case {
            name: "sleep_1ms_accuracy",
            n_full: 200,
            n_quick: 50,
            runs_full: 5,
            runs_quick: 3,
            kind: Kind::Overshoot { requested_ns: SLEEP.as_nanos() as u64 },
            timeout: TIMEOUT,
        },
        Case {
            name: "spawn_1m_parked",
            n_full: 1_000_000,
            n_quick: 100_000,
            runs_full: 3,
            runs_quick: 3,
            kind: Kind::Memory,
            timeout: Duration::from_secs(600),
        },
        throughput("scope_spawn_join_100", 20_000, 2_000),
        throughput("actor_tell", 5_000_000, 500_000),
        throughput("actor_ask", 1_000_000, 100_000),
        throughput("pair_one_worker", 200_000, 20_000),
        throughput("pair_two_workers", 200_000, 20_000),
    ],
    impls: &[KCORO, GO, "may", "tokio"],
    skips: &[
        Skip { imp: "may", cases: SCOPE_ACTOR, why: "no may peer for this case" },
        Skip { imp: GO, cases: PAIRS, why: "no placement control" },
        Skip { imp: "may", cases: PAIRS, why: "no placement control" },
        Skip { imp: "tokio", cases: PAIRS, why: "no placement control" },
    ],
    prepare: None,
    go_in_child: false,
    child,
};

/// Runs one case of one Rust implementation (the child side of the harness).
fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    match imp {
        KCORO => kcoro_rt::run(case, n),
        "may" => may_rt::run(case, n),
        "tokio" => tokio_rt::run(case, n),
        _ => Err(format!("runtime: no Rust impl {imp:?}")),
    }
}

/// Operations in the untimed warm-up before a throughput case of `n` operations.
pub fn warmup(n: u64) -> u64 {
    n / 10 + 1
}

/// The error for a case name no implementation knows.
fn unknown(case: &str) -> String {
    format!("runtime: no case {case:?}")
}

/// Bytes per coroutine from the RSS before spawning and the peak while all are parked.
fn bytes_per(base: u64, peak: u64, n: u64) -> f64 {
    peak.saturating_sub(base) as f64 / n.max(1) as f64
}

/// Notices when the count of parked coroutines stops growing (a failed spawn never
/// counts itself), so a memory case reports an error instead of waiting forever.
struct Stall {
    last: u64,
    since: std::time::Instant,
}

impl Stall {
    /// How long the parked count may stay flat before the driver gives up.
    const LIMIT: Duration = Duration::from_secs(10);

    fn new() -> Self {
        Self { last: 0, since: std::time::Instant::now() }
    }

    /// True once `parked` has not changed for [`Stall::LIMIT`].
    fn stuck(&mut self, parked: u64) -> bool {
        if parked != self.last {
            self.last = parked;
            self.since = std::time::Instant::now();
        }
        self.since.elapsed() > Self::LIMIT
    }

    /// After joining: an error if not all `n` parked or a join failed.
    fn check(&self, parked: u64, n: u64, join_err: Option<String>) -> Result<(), String> {
        match join_err {
            Some(e) if parked < n => Err(format!("only {parked} of {n} parked; {e}")),
            Some(e) => Err(e),
            None if parked < n => Err(format!("only {parked} of {n} parked (stalled)")),
            None => Ok(()),
        }
    }
}
