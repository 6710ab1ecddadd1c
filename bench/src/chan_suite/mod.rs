//! Suite `chan`: channel throughput — rendezvous round trips, Go's producer/consumer
//! benchmark, buffered pipelines and the cost of a failed non-blocking receive.
//!
//! Every message is a `u64`. kcoro and may run their parties as coroutines on two
//! workers, tokio as tasks on two workers, Go as goroutines on `GOMAXPROCS=2`; kanal,
//! crossbeam and flume have no runtime of their own, so each party is an OS thread. The
//! driver runs on the runtime (in a coroutine, task or goroutine) or, for the thread
//! peers, on the child's main thread.
//!
//! The cases are written once, in [`blocking`], for every implementation with a blocking
//! API (kcoro, may, kanal, crossbeam, flume); tokio's async API has its own copy of the
//! shapes in [`tokio_chan`], and Go's is in `bench/go/main.go`. Each case runs an untimed
//! warm-up of `n / 10 + 1` operations first (see [`warmup`]).
//!
//! | case                  | shape                                                 | one op         |
//! |-----------------------|-------------------------------------------------------|----------------|
//! | `pingpong_rendezvous` | two parties, two rendezvous channels (ping and pong)  | one round trip |
//! | `prodcons_{0,10,100}` | Go's `BenchmarkChanProdCons{0,10,100}` ([`prodcons`]) | one message    |
//! | `spsc_1024`           | capacity 1024, 1 producer, 1 consumer                 | one message    |
//! | `mpmc_4x4_1024`       | capacity 1024, 4 producers, 4 consumers               | one message    |
//! | `mpmc_4x4_0`          | rendezvous, 4 producers, 4 consumers                  | one message    |
//! | `nonblocking_try`     | Go's `BenchmarkChanNonblocking`, one caller ([`nonblocking`]) | one try |
//!
//! [`prodcons`]: blocking::prodcons
//! [`nonblocking`]: blocking::nonblocking
//!
//! Skipped: tokio's mpsc has one consumer, so it runs no case with several consumers;
//! may has only unbounded channels, so it runs no case where the capacity matters.

pub mod blocking;
pub mod crossbeam_chan;
pub mod flume_chan;
mod kanal_chan;
pub mod kcoro_chan;
mod kcoro_monitored;
mod may_chan;
mod tokio_chan;

use crate::harness::{GO, KCORO, Measurement, Skip, Suite, throughput};
use crate::runtime_suite::warmup;

/// Producers and consumers of the `prodcons_*` cases: one each per worker, as Go's
/// benchmark starts one of each per `GOMAXPROCS`.
pub const PRODCONS_PARTIES: usize = crate::runtime_suite::WORKERS;

/// Messages a producer claims at a time in the `prodcons_*` cases (Go's `CallsPerSched`).
pub const PRODCONS_BATCH: u64 = 1000;

/// Cases that have more than one consumer on one channel (tokio's mpsc has one).
const MULTI_CONSUMER: &[&str] = &["prodcons_0", "prodcons_10", "prodcons_100", "mpmc_4x4_1024", "mpmc_4x4_0"];

/// Cases whose shape depends on the channel's capacity (may's channels are unbounded).
const CAPACITY_MATTERS: &[&str] =
    &["prodcons_0", "prodcons_10", "prodcons_100", "spsc_1024", "mpmc_4x4_1024", "mpmc_4x4_0"];

/// The kcoro rows with a live monitor attached ([`kcoro_monitored`]).
const MONITORED: &str = "kcoro-mon";

/// Cases the monitored rows skip.
const UNMONITORED: &[&str] =
    &["pingpong_rendezvous", "prodcons_0", "prodcons_10", "prodcons_100", "mpmc_4x4_0", "nonblocking_try"];

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "chan",
    notes: &[
        "u64 messages; kcoro workers(2), go GOMAXPROCS=2, may set_workers(2), tokio worker_threads(2);",
        "  kanal, crossbeam, flume: one OS thread per party (they have no runtime)",
        "prodcons_*: Go's BenchmarkChanProdCons, 2 producers + 2 consumers, batches of 1000, localWork 0",
        "tokio: mpsc has no rendezvous flavour; pingpong_rendezvous and nonblocking_try use mpsc::channel(1)",
        "may: only unbounded channels; pingpong_rendezvous uses them (one message in flight at most)",
        "kcoro-mon: the kcoro row, its channel named, with kcoro_ipc::monitor served on the same",
        "  runtime and sampled (LIST + GET_SCHED over a Unix socket) every 100 ms by a thread, as",
        "  `kcoro chanmon` does; its x kcoro is the monitor's cost (1.02 = 2% slower)",
    ],
    cases: &[
        throughput("pingpong_rendezvous", 200_000, 20_000),
        throughput("prodcons_0", 1_000_000, 100_000),
        throughput("prodcons_10", 2_000_000, 200_000),
        throughput("prodcons_100", 2_000_000, 200_000),
        throughput("spsc_1024", 2_000_000, 200_000),
        throughput("mpmc_4x4_1024", 2_000_000, 200_000),
        throughput("mpmc_4x4_0", 200_000, 20_000),
        throughput("nonblocking_try", 10_000_000, 1_000_000),
    ],
    impls: &[KCORO, MONITORED, GO, "kanal", "crossbeam", "flume", "tokio", "may"],
    skips: &[
        Skip { imp: "tokio", cases: MULTI_CONSUMER, why: "mpsc is single-consumer" },
        Skip { imp: "may", cases: CAPACITY_MATTERS, why: "no bounded channel" },
        Skip { imp: MONITORED, cases: UNMONITORED, why: "the monitor's cost is measured on two cases" },
    ],
    prepare: None,
    go_in_child: false,
    child,
};

/// Runs one case of one Rust implementation (the child side of the harness).
fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    match imp {
        KCORO => kcoro_chan::run(case, n),
        MONITORED => kcoro_monitored::run(case, n),
        "kanal" => kanal_chan::run(case, n),
        "crossbeam" => crossbeam_chan::run(case, n),
        "flume" => flume_chan::run(case, n),
        "tokio" => tokio_chan::run(case, n),
        "may" => may_chan::run(case, n),
        _ => Err(format!("chan: no Rust impl {imp:?}")),
    }
}

/// The error for a case name an implementation does not know.
fn unknown(case: &str) -> String {
    format!("chan: no case {case:?}")
}

/// Party `i`'s part of `n` operations split over `k` parties: `n / k`, plus one for the
/// first `n % k` parties (the Go peer's `share`).
pub fn share(n: u64, k: usize, i: usize) -> u64 {
    let (k, i) = (k as u64, i as u64);
    n / k + u64::from(i < n % k)
}

/// A case run: what it measured and how many operations that covers.
pub type Timed = Result<(std::time::Duration, u64), String>;

/// Runs `case` untimed on [`warmup`]`(n)` operations, then on `n`, and reports the second.
pub fn measure(case: impl Fn(u64) -> Timed, n: u64) -> Result<Measurement, String> {
    case(warmup(n))?;
    let (elapsed, ops) = case(n)?;
    Ok(Measurement::per_op(elapsed, ops))
}
