//! Suite `select`: the cost of a select — over ready buffered channels with nobody
//! else around, and over rendezvous channels that several senders and receivers share.
//!
//! Every message is a `u64`. kcoro runs its parties as coroutines on two workers, tokio
//! as tasks on two workers, Go as goroutines on `GOMAXPROCS=2`; crossbeam and flume have
//! no runtime of their own, so each party is an OS thread.
//!
//! The cases are written once, in [`blocking`], over a [`Select`](blocking::Select)
//! trait that each implementation fills in with its own select: kcoro and crossbeam
//! `select!`, flume `Selector`. tokio's async API has its own copy in [`tokio_select`],
//! Go's is in `bench/go/main.go`. kcoro's `select!` is its default, biased form (the first
//! ready clause wins); every peer picks among ready clauses at random, as Go does. Each
//! case runs an untimed warm-up of `n / 10 + 1` operations first.
//!
//! | case                    | shape (Go benchmark, parties)                 | one op          |
//! |-------------------------|-----------------------------------------------|-----------------|
//! | `select2_uncontended`   | `SelectUncontended`, one ([`uncontended`])    | a select + send |
//! | `select_sync_contended` | `SelectSyncContended`, 2 pairs ([`sync_contended`]) | one receive |
//!
//! [`uncontended`]: blocking::uncontended
//! [`sync_contended`]: blocking::sync_contended
//!
//! Not here: kanal has no select; may has neither bounded nor rendezvous channels (and
//! its `select!` runs each arm in a coroutine of its own). Skipped: tokio's mpsc has one
//! consumer, so it skips `select_sync_contended`, whose receivers share their channels.
//! flume skips it too: with flume 0.12.0 its `Selector` loses a wake-up there, and two
//! selecting receivers against two selecting senders stop for good within a few hundred
//! messages (it resembles the upstream reports zesterer/flume#135 and #44).

pub mod blocking;
mod crossbeam_select;
mod flume_select;
mod kcoro_select;
mod tokio_select;

use crate::harness::{GO, KCORO, Measurement, Skip, Suite, throughput};

/// Sender/receiver pairs of `select_sync_contended`: one per worker, as Go's
/// `RunParallel` starts one goroutine per `GOMAXPROCS`.
pub const CONTENDED_PAIRS: usize = crate::runtime_suite::WORKERS;

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "select",
    notes: &[
        "u64 messages; kcoro workers(2), go GOMAXPROCS=2, tokio worker_threads(2);",
        "  crossbeam, flume: one OS thread per party (they have no runtime)",
        "kcoro: select!, which is biased (the first ready clause wins; select_unbiased! starts at random);",
        "  crossbeam select!, tokio::select!, go and flume's Selector (built per select) pick at random",
        "select2_uncontended: tokio uses mpsc::channel(1), as the others use capacity 1",
        "not in this suite: kanal (no select), may (no bounded or rendezvous channel)",
        "flume: skips select_sync_contended, where its Selector hangs (cf. zesterer/flume#135)",
    ],
    cases: &[
        throughput("select2_uncontended", 2_000_000, 200_000),
        throughput("select_sync_contended", 200_000, 20_000),
    ],
    impls: &[KCORO, GO, "crossbeam", "flume", "tokio"],
    skips: &[
        Skip { imp: "tokio", cases: &["select_sync_contended"], why: "mpsc is single-consumer" },
        Skip { imp: "flume", cases: &["select_sync_contended"], why: "its Selector hangs here" },
    ],
    prepare: None,
    go_in_child: false,
    child,
};

/// Runs one case of one Rust implementation (the child side of the harness).
fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    match imp {
        KCORO => kcoro_select::run(case, n),
        "crossbeam" => crossbeam_select::run(case, n),
        "flume" => flume_select::run(case, n),
        "tokio" => tokio_select::run(case, n),
        _ => Err(format!("select: no Rust impl {imp:?}")),
    }
}

/// The error for a case name an implementation does not know.
fn unknown(case: &str) -> String {
    format!("select: no case {case:?}")
}
