//! The side-by-side harness: suites, cases and implementations as tables, each run in
//! a fresh child process, medians, the printed table and the JSON report.
//!
//! A suite is data: a list of [`Case`]s, a list of implementation names and one
//! [`Suite::child`] function that runs one case of one Rust implementation. The harness
//! never calls an implementation in its own process. Each run is a child:
//!
//! ```text
//! kcoro-bench __child <suite> <case> <impl> <n>     (Rust implementations)
//! kcoro-bench-go      <suite> <case> <n>            (the Go peer, built from bench/go)
//! ```
//!
//! and the child prints one JSON line, a [`Measurement`]. Children keep runtimes apart
//! (may's scheduler is a process-wide singleton that never stops), give memory cases a
//! fresh peak-RSS counter, and turn a crash or a hang of one implementation into an
//! error row instead of the end of the suite.
//!
//! A suite whose Go peer is a server ([`Suite::go_in_child`], the `net` suite) runs it
//! through a Rust child as well (`__child <suite> <case> go <n>`): that child starts the
//! Go binary named in [`GO_BIN_ENV`], drives it and measures it like the Rust servers.
//!
//! # Protocol
//!
//! 1. *Prepare*: run the suite's [`Suite::prepare`], if any (the `plugin` suite builds its
//!    plugins); build the Go peer once if some selected case runs it and `go` is on the
//!    `PATH`; otherwise note why it is skipped.
//! 2. *Measure*: for each case, for each implementation, run `runs` children one after
//!    the other. The first failed run ends that row with its error. A pair listed in
//!    [`Suite::skips`] runs no child and prints `skipped: <why>` instead.
//! 3. *Report*: print the row as soon as it is known (the `kcoro` row comes first, so
//!    every peer row has its ratio; when the `kcoro` row is skipped, failed or not
//!    selected, the peers still print, with ratio `-`), then the error details, then
//!    write the JSON file.
//!
//! # Invariants
//!
//! - A row is in the JSON report ⇒ all its runs succeeded; failed rows only print.
//! - `ratio = peer ns/op ÷ kcoro ns/op` everywhere, so a ratio above 1 means kcoro is
//!   faster (or, for overshoot cases, more accurate). The kcoro row is the nearest one above
//!   whose implementation [`is_kcoro`]: a suite may run kcoro on more than one subject
//!   (the `plugin` suite's `kcoro-ny` row runs kcoro-host on the peer's own plugin), and the
//!   peer rows after it compare against it; a `kcoro-*` row itself compares with `kcoro`.

use std::any::Any;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::go;

/// The implementation name of our own rows.
pub const KCORO: &str = "kcoro";

/// Whether `imp` is one of our rows: [`KCORO`], or `kcoro-<subject>` for kcoro run on
/// another subject (the base of the ratios of the rows after it).
pub fn is_kcoro(imp: &str) -> bool {
    imp == KCORO || imp.starts_with("kcoro-")
}

/// The implementation name of the Go peer; it runs from the binary built by [`go`].
pub const GO: &str = "go";

/// The environment variable through which a [`Suite::go_in_child`] child learns the path
/// of the built Go peer.
pub const GO_BIN_ENV: &str = "KCORO_BENCH_GO";

/// How often a child is polled for exit while the harness waits on it.
const CHILD_POLL: Duration = Duration::from_millis(20);

/// Width of the table's case column: the longest case name (`select_sync_contended`).
pub const CASE_COL: usize = 21;

/// Width of the table's impl column: the longest implementation name (`ipc-channel`).
pub const IMPL_COL: usize = 11;

/// How many characters of a child's error make it into the table row.
const ROW_ERROR_CHARS: usize = 70;

/// How many lines of a child's stderr are repeated under the table.
const DETAIL_LINES: usize = 12;

/// What `ns_per_op` of a case measures, which decides its `ops_per_sec`.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Time per operation.
    Throughput,
    /// Mean overshoot over a requested wait of `requested_ns`; one op is one wait.
    Overshoot {
        /// The requested wait, in nanoseconds.
        requested_ns: u64,
    },
    /// Time per operation, plus `bytes_per_op` from peak RSS.
    Memory,
    /// Time per operation, plus `allocs_per_op` from the counting allocator
    /// ([`crate::alloc_count`]); the table gets an `allocs/op` column.
    Allocs,
    /// Time per operation, each moving `bytes` of payload: the table gets `ops/s` and
    /// `GB/s` columns, the JSON row `bytes_per_sec` (`bytes × ops_per_sec`).
    Payload {
        /// Payload bytes one operation moves.
        bytes: u64,
    },
    /// Requests to a server under load for `n` seconds: `ns_per_op` is wall time per
    /// request (1e9 / requests per second) and the child adds [`NetStats`]; the table
    /// gets `req/s`, latency, server CPU, worker-share and load-generator columns. Runs
    /// that report `bytes_per_op` (payload per answer) give the row `bytes_per_sec`,
    /// printed as GB/s on a line under it.
    Net,
}

/// One benchmark case of a suite.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Name, unique in its suite; also the child's case argument.
    pub name: &'static str,
    /// Operations per run.
    pub n_full: u64,
    /// Operations per run with `--quick`.
    pub n_quick: u64,
    /// Runs per row (the median is reported).
    pub runs_full: usize,
    /// Runs per row with `--quick`.
    pub runs_quick: usize,
    /// What `ns_per_op` means.
    pub kind: Kind,
    /// A child running longer than this is killed and its row fails.
    pub timeout: Duration,
}

/// Child time limit of a [`throughput`] case.
const THROUGHPUT_TIMEOUT: Duration = Duration::from_secs(120);

/// A throughput case: 5 runs (3 with `--quick`), a two-minute limit per child.
pub const fn throughput(name: &'static str, n_full: u64, n_quick: u64) -> Case {
    Case {
        name,
        n_full,
        n_quick,
        runs_full: 5,
        runs_quick: 3,
        kind: Kind::Throughput,
        timeout: THROUGHPUT_TIMEOUT,
    }
}

/// A [`Kind::Payload`] case moving `bytes` per operation, otherwise as [`throughput`].
pub const fn payload(name: &'static str, n_full: u64, n_quick: u64, bytes: u64) -> Case {
    Case { kind: Kind::Payload { bytes }, ..throughput(name, n_full, n_quick) }
}

/// Child time limit of a [`net`] case: server start, connection set-up and shutdown
/// around at most a few seconds of load.
const NET_TIMEOUT: Duration = Duration::from_secs(60);

/// A [`Kind::Net`] case: `n` is the load's duration in seconds; 3 runs (1 with `--quick`).
pub const fn net(name: &'static str, secs_full: u64, secs_quick: u64) -> Case {
    Case {
        name,
        n_full: secs_full,
        n_quick: secs_quick,
        runs_full: 3,
        runs_quick: 1,
        kind: Kind::Net,
        timeout: NET_TIMEOUT,
    }
}

/// Runs one case of one Rust implementation inside a child process.
pub type ChildFn = fn(case: &str, imp: &str, n: u64) -> Result<Measurement, String>;

/// Cases an implementation does not run, and why (printed in place of its row).
#[derive(Clone, Copy, Debug)]
pub struct Skip {
    /// The implementation.
    pub imp: &'static str,
    /// The cases it does not run.
    pub cases: &'static [&'static str],
    /// Why, in a few words.
    pub why: &'static str,
}

/// A suite: its cases, its implementations and how a child runs them.
pub struct Suite {
    /// Name on the command line and in the report.
    pub name: &'static str,
    /// Lines printed under the header: setup shared by every row.
    pub notes: &'static [&'static str],
    /// The cases, in print order.
    pub cases: &'static [Case],
    /// Implementation names in print order; [`KCORO`] first. [`GO`] runs the Go peer.
    pub impls: &'static [&'static str],
    /// Case and implementation pairs that are not run; every other pair is.
    pub skips: &'static [Skip],
    /// Runs once in the harness's own process before any child, e.g. to build what the
    /// children load; an error ends the suite run.
    pub prepare: Option<PrepareFn>,
    /// The [`GO`] rows run through [`Suite::child`] (which finds the Go binary in
    /// [`GO_BIN_ENV`]) instead of as the Go binary itself: for peers that are servers the
    /// child drives and measures.
    pub go_in_child: bool,
    /// Runs one Rust implementation in a child process.
    pub child: ChildFn,
}

impl Suite {
    /// The entry saying `imp` does not run `case`, if there is one.
    pub fn skip(&self, case: &str, imp: &str) -> Option<&Skip> {
        self.skips.iter().find(|s| s.imp == imp && s.cases.contains(&case))
    }
}

/// What one child run reports.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Measurement {
    /// Nanoseconds per operation (for overshoot cases: mean overshoot per wait).
    pub ns_per_op: f64,
    /// Peak-RSS growth per operation, for memory cases; payload bytes per request, for
    /// [`Kind::Net`] cases whose answers carry one (the table adds their GB/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_op: Option<f64>,
    /// Heap allocations per operation, for [`Kind::Allocs`] cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocs_per_op: Option<f64>,
    /// Latency, server CPU and worker balance, for [`Kind::Net`] cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetStats>,
    /// The spread of single operations' times, for cases that time each one (round trips).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
}

impl Measurement {
    /// `elapsed` spread over `n` operations.
    pub fn per_op(elapsed: Duration, n: u64) -> Self {
        Self {
            ns_per_op: elapsed.as_nanos() as f64 / n.max(1) as f64,
            bytes_per_op: None,
            allocs_per_op: None,
            net: None,
            latency: None,
        }
    }

    /// [`per_op`](Self::per_op), with the spread of the single operations' times.
    pub fn per_op_with_latency(elapsed: Duration, n: u64, op_ns: &mut [u64]) -> Self {
        Self { latency: Latency::of(op_ns), ..Self::per_op(elapsed, n) }
    }
}

/// The median and 99th percentile of single operations' times in one run (nearest rank).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median time of one operation.
    pub p50_ns: f64,
    /// 99th-percentile time of one operation.
    pub p99_ns: f64,
}

impl Latency {
    /// The percentiles of `op_ns` (sorted in place); `None` when it is empty.
    pub fn of(op_ns: &mut [u64]) -> Option<Latency> {
        if op_ns.is_empty() {
            return None;
        }
        op_ns.sort_unstable();
        let rank =
            |p: f64| op_ns[((p * op_ns.len() as f64).ceil() as usize).clamp(1, op_ns.len()) - 1] as f64;
        Some(Latency { p50_ns: rank(0.50), p99_ns: rank(0.99) })
    }

    /// The median of each percentile over `runs`; `None` unless every run has them.
    fn median_of(runs: &[Measurement]) -> Option<Latency> {
        let all: Vec<Latency> = runs.iter().map(|m| m.latency).collect::<Option<_>>()?;
        (!all.is_empty()).then(|| Latency {
            p50_ns: median(all.iter().map(|l| l.p50_ns)),
            p99_ns: median(all.iter().map(|l| l.p99_ns)),
        })
    }
}

/// Which program generated the load of a [`Kind::Net`] run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadGen {
    /// `wrk` (HTTP cases, when installed).
    Wrk,
    /// The suite's own closed-loop generator (echo and proxy cases; HTTP without `wrk`).
    Builtin,
}

/// What a [`Kind::Net`] run measures besides requests per second.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetStats {
    /// Median request latency seen by the load generator.
    pub p50_ns: f64,
    /// 99th-percentile request latency.
    pub p99_ns: f64,
    /// Server CPU time (user + system, every thread) per request.
    pub cpu_ns_per_op: f64,
    /// The largest share (0 to 1) of the requests served by one worker thread, for a
    /// server with more than one worker that counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_worker_share: Option<f64>,
    /// The load generator.
    pub load: LoadGen,
}

impl NetStats {
    /// The median of each field over `runs` (the load generator of the first).
    fn median_of(runs: &[NetStats]) -> Option<NetStats> {
        let first = runs.first()?;
        let shares: Vec<f64> = runs.iter().filter_map(|r| r.max_worker_share).collect();
        Some(NetStats {
            p50_ns: median(runs.iter().map(|r| r.p50_ns)),
            p99_ns: median(runs.iter().map(|r| r.p99_ns)),
            cpu_ns_per_op: median(runs.iter().map(|r| r.cpu_ns_per_op)),
            max_worker_share: (!shares.is_empty()).then(|| median(shares.into_iter())),
            load: first.load,
        })
    }
}

/// A suite's preparation, told which rows will run.
pub type PrepareFn = fn(&Selection) -> Result<(), String>;

/// The rows a run will measure, for a suite's [`Suite::prepare`] (build or install only
/// what they need).
pub struct Selection<'a> {
    suite: &'a Suite,
    opts: &'a Options,
}

impl Selection<'_> {
    /// Whether the row of `case` and `imp` runs: both selected, and not skipped.
    pub fn runs(&self, case: &str, imp: &str) -> bool {
        let selected = |list: &[String], name: &str| list.is_empty() || list.iter().any(|s| s == name);
        selected(&self.opts.cases, case)
            && selected(&self.opts.impls, imp)
            && self.suite.skip(case, imp).is_none()
    }

    /// Whether any row of `imp` runs whose case name satisfies `case`.
    pub fn any(&self, imp: &str, case: impl Fn(&str) -> bool) -> bool {
        self.suite.cases.iter().any(|c| case(c.name) && self.runs(c.name, imp))
    }
}

/// Command-line options of a suite run.
#[derive(Debug, Default)]
pub struct Options {
    /// Fewer operations and runs.
    pub quick: bool,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Run only these cases (all when empty).
    pub cases: Vec<String>,
    /// Run only these implementations (all when empty).
    pub impls: Vec<String>,
}

/// One line of the JSON report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    suite: String,
    case: String,
    #[serde(rename = "impl")]
    imp: String,
    ns_per_op: f64,
    /// The fastest and slowest run: a wide gap marks a case whose runs differ (where its
    /// parties started, or the machine's noise), which a median alone would hide.
    min_ns_per_op: f64,
    max_ns_per_op: f64,
    ops_per_sec: f64,
    runs: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_op: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allocs_per_op: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_per_sec: Option<f64>,
    /// Medians of the runs' [`NetStats`], field by field.
    #[serde(skip_serializing_if = "Option::is_none")]
    net: Option<NetStats>,
    /// Medians of the runs' percentiles of single operations, for cases that time each.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<Latency>,
    /// The fastest and slowest cross-CPU round trip measured just before the runs
    /// ([`core_probe`](crate::core_probe)): how far apart the host kept the two CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    core_rtt_ns: Option<(f64, f64)>,
}

/// A row that failed, kept for the details printed under the table.
struct Failure {
    case: &'static str,
    imp: &'static str,
    detail: String,
}

/// Runs every selected case of `suite`, prints the table and writes the JSON report.
pub fn run_suite(suite: &Suite, opts: &Options) -> Result<(), String> {
    for name in &opts.cases {
        if !suite.cases.iter().any(|c| c.name == name) {
            return Err(format!("suite {}: no case {name:?}", suite.name));
        }
    }
    for name in &opts.impls {
        if !suite.impls.contains(&name.as_str()) {
            return Err(format!("suite {}: no impl {name:?}", suite.name));
        }
    }
    let selected = |list: &[String], name: &str| list.is_empty() || list.iter().any(|s| s == name);

    // Step 1: prepare.
    if let Some(prepare) = suite.prepare {
        prepare(&Selection { suite, opts })?;
    }
    let go_runs = suite.impls.contains(&GO)
        && selected(&opts.impls, GO)
        && suite.cases.iter().any(|c| selected(&opts.cases, c.name) && suite.skip(c.name, GO).is_none());
    let go_bin = if go_runs {
        match go::prepare() {
            Ok(bin) => Some(bin),
            Err(why) => {
                println!("note: go peer skipped: {why}");
                None
            }
        }
    } else {
        None
    };
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;

    let has =
        |kind: fn(&Kind) -> bool| suite.cases.iter().any(|c| selected(&opts.cases, c.name) && kind(&c.kind));
    let cols = Columns {
        allocs: has(|k| matches!(k, Kind::Allocs)),
        rate: has(|k| matches!(k, Kind::Payload { .. })),
        net: has(|k| matches!(k, Kind::Net)),
    };
    print_header(suite, opts, cols);

    // Step 2 and 3: measure and report.
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for case in suite.cases.iter().filter(|c| selected(&opts.cases, c.name)) {
        let (n, runs) =
            if opts.quick { (case.n_quick, case.runs_quick) } else { (case.n_full, case.runs_full) };
        let mut kcoro_ns = None;
        for &imp in suite.impls.iter().filter(|i| selected(&opts.impls, i)) {
            if let Some(skip) = suite.skip(case.name, imp) {
                println!("{:<CASE_COL$} {imp:<IMPL_COL$} skipped: {}", case.name, skip.why);
                continue;
            }
            let command = || -> Option<Command> {
                let mut cmd;
                if imp == GO && !suite.go_in_child {
                    cmd = Command::new(go_bin.as_ref()?);
                    cmd.args([suite.name, case.name, &n.to_string()]);
                    cmd.env("GOMAXPROCS", "2");
                } else {
                    cmd = Command::new(&exe);
                    cmd.args(["__child", suite.name, case.name, imp, &n.to_string()]);
                    if imp == GO {
                        cmd.env(GO_BIN_ENV, go_bin.as_ref()?);
                    }
                }
                Some(cmd)
            };
            if command().is_none() {
                println!("{:<CASE_COL$} {imp:<IMPL_COL$} skipped", case.name);
                continue;
            }
            let (samples, probes) = match measure(command, runs, case.timeout) {
                Ok(measured) => measured,
                Err(detail) => {
                    print_error_row(case.name, imp, &detail);
                    failures.push(Failure { case: case.name, imp, detail });
                    continue;
                }
            };
            // A net row without its figures is a broken child, not a row to print.
            let net = match case.kind {
                Kind::Net => {
                    let runs: Vec<NetStats> = samples.iter().filter_map(|m| m.net).collect();
                    if runs.len() != samples.len() {
                        let detail = "a run reported no latency and CPU figures".to_string();
                        print_error_row(case.name, imp, &detail);
                        failures.push(Failure { case: case.name, imp, detail });
                        continue;
                    }
                    NetStats::median_of(&runs)
                }
                _ => None,
            };
            let ns = median(samples.iter().map(|m| m.ns_per_op));
            let (min_ns, max_ns) = min_max(samples.iter().map(|m| m.ns_per_op));
            let bytes = match case.kind {
                Kind::Memory => Some(median(samples.iter().filter_map(|m| m.bytes_per_op))),
                Kind::Net if samples.iter().all(|m| m.bytes_per_op.is_some()) => {
                    Some(median(samples.iter().filter_map(|m| m.bytes_per_op)))
                }
                _ => None,
            };
            let allocs = match case.kind {
                Kind::Allocs => Some(median(samples.iter().filter_map(|m| m.allocs_per_op))),
                _ => None,
            };
            // A `kcoro-*` row is compared with the kcoro row above it, then becomes the base
            // of the rows after it.
            if imp == KCORO {
                kcoro_ns = Some(ns);
            }
            let ops = ops_per_sec(case.kind, ns);
            let bytes_per_sec = match case.kind {
                Kind::Payload { bytes } => Some(bytes as f64 * ops),
                Kind::Net => bytes.map(|b| b * ops),
                _ => None,
            };
            let cells = Cells {
                bytes,
                allocs: cols.allocs.then_some(allocs),
                rate: cols.rate.then_some((ops, bytes_per_sec)),
                net: cols.net.then_some((ops, net)),
            };
            print_row(case.name, imp, (ns, max_ns / min_ns), kcoro_ns, cells);
            // A net row moving a payload: its rate, under the row (the net columns are
            // shared with rows that move none).
            if let (Kind::Net, Some(bps)) = (case.kind, bytes_per_sec) {
                println!(
                    "{:CASE_COL$} {:IMPL_COL$} ({} GB/s of answer payload)",
                    "",
                    "",
                    fmt_gbps(bps / 1e9)
                );
            }
            let latency = Latency::median_of(&samples);
            if let Some(l) = latency {
                println!(
                    "{:CASE_COL$} {:IMPL_COL$} (one op: p50 {}, p99 {})",
                    "",
                    "",
                    fmt_duration(l.p50_ns),
                    fmt_duration(l.p99_ns)
                );
            }
            let core_rtt_ns = (!probes.is_empty()).then(|| min_max(probes.iter().copied()));
            if let Some((lo, hi)) = core_rtt_ns
                && max_ns / min_ns >= SPREAD_MARK
            {
                println!(
                    "{:CASE_COL$} {:IMPL_COL$} (cross-CPU round trip before these runs: {lo:.0}–{hi:.0} ns)",
                    "", ""
                );
            }
            if is_kcoro(imp) {
                kcoro_ns = Some(ns);
            }
            rows.push(Row {
                suite: suite.name.to_string(),
                case: case.name.to_string(),
                imp: imp.to_string(),
                ns_per_op: ns,
                min_ns_per_op: min_ns,
                max_ns_per_op: max_ns,
                ops_per_sec: ops,
                runs: samples.len(),
                bytes_per_op: bytes,
                allocs_per_op: allocs,
                bytes_per_sec,
                net,
                latency,
                core_rtt_ns,
            });
        }
    }

    print_failures(&failures);
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| format!("json: {e}"))?;
        std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {} rows to {}", rows.len(), path.display());
    }
    Ok(())
}

/// The child side: runs one case of one implementation and prints its measurement.
pub fn run_child_command(suite: &Suite, case: &str, imp: &str, n: u64) -> Result<(), String> {
    let m = (suite.child)(case, imp, n)?;
    let line = serde_json::to_string(&m).map_err(|e| format!("json: {e}"))?;
    println!("{line}");
    Ok(())
}

/// Runs `runs` children made by `command`, one after the other, each just after a
/// cross-CPU probe; the first failure ends the row. Returns the measurements and the
/// probes' round trips.
fn measure(
    command: impl Fn() -> Option<Command>,
    runs: usize,
    timeout: Duration,
) -> Result<(Vec<Measurement>, Vec<f64>), String> {
    let mut samples = Vec::with_capacity(runs);
    let mut probes = Vec::with_capacity(runs);
    for _ in 0..runs {
        probes.extend(crate::core_probe::round_trip_ns());
        let cmd = command().ok_or("no command for this implementation")?;
        samples.push(run_child(cmd, timeout)?);
    }
    Ok((samples, probes))
}

/// Median of `values`; the mean of the middle two for an even count, NaN when empty.
pub fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

/// The smallest and largest of `values` (NaN for both when empty).
pub fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::NAN, f64::NAN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Operations per second for a row of `kind` whose median is `ns` per op.
fn ops_per_sec(kind: Kind, ns: f64) -> f64 {
    match kind {
        Kind::Throughput | Kind::Memory | Kind::Allocs | Kind::Payload { .. } | Kind::Net => 1e9 / ns,
        Kind::Overshoot { requested_ns } => 1e9 / (requested_ns as f64 + ns),
    }
}

/// Reads a `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`, …) in bytes.
pub fn proc_status_bytes(field: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix(field)?.strip_prefix(':')?;
            let kb = rest.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?;
            Some(kb * 1024)
        })
        .ok_or_else(|| format!("no {field} in /proc/self/status"))
}

/// The message of a panic payload, for `join` errors that carry one.
pub fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_string()
    }
}

/// Runs `cmd` to completion (or `timeout`) and parses the last JSON line it printed.
fn run_child(mut cmd: Command, timeout: Duration) -> Result<Measurement, String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    // Drain both pipes on their own threads so a chatty child never blocks on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));

    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("timed out after {timeout:?} (killed)"));
            }
            Ok(None) => thread::sleep(CHILD_POLL),
            Err(e) => break Err(format!("wait failed: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let status = status.map_err(|why| with_stderr(why, &stderr))?;
    if !status.success() {
        return Err(with_stderr(describe(status), &stderr));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .ok_or_else(|| with_stderr("child printed no result".to_string(), &stderr))?;
    serde_json::from_str(line).map_err(|e| format!("bad child output {line:?}: {e}"))
}

/// "exit code 1" or "killed by signal 11 (SIGSEGV)".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => {
            let name = match sig {
                4 => " (SIGILL)",
                6 => " (SIGABRT)",
                7 => " (SIGBUS)",
                9 => " (SIGKILL, out of memory?)",
                11 => " (SIGSEGV)",
                _ => "",
            };
            format!("killed by signal {sig}{name}")
        }
        (None, None) => format!("{status}"),
    }
}

/// `why`, followed by the child's stderr without the backtrace hint.
fn with_stderr(why: String, stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("note: run with `RUST_BACKTRACE")
                && !l.starts_with("note: Some details are omitted")
                && !is_backtrace_line(l)
        })
        .collect();
    if lines.is_empty() { why } else { format!("{why}: {}", lines.join("\n")) }
}

/// `stack backtrace:`, its numbered frames and their `at file:line` lines.
fn is_backtrace_line(line: &str) -> bool {
    let t = line.trim_start();
    t == "stack backtrace:"
        || t.starts_with("at ")
        || t.split_once(": ")
            .is_some_and(|(num, _)| !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()))
}

/// The optional columns of a table, each present when some selected case needs it.
#[derive(Clone, Copy, Debug)]
struct Columns {
    /// `allocs/op`: some case is [`Kind::Allocs`].
    allocs: bool,
    /// `ops/s` and `GB/s`: some case is [`Kind::Payload`].
    rate: bool,
    /// `req/s`, `p50`, `p99`, `cpu/req`, `worker` and `load`: some case is [`Kind::Net`].
    net: bool,
}

fn print_header(suite: &Suite, opts: &Options, cols: Columns) {
    let runs = |c: &Case| {
        if opts.quick { c.runs_quick } else { c.runs_full }
    };
    let mut counts: Vec<usize> = suite.cases.iter().map(runs).collect();
    counts.sort_unstable();
    // The most common run count, then the cases that differ from it.
    let usual =
        counts.iter().copied().max_by_key(|&r| (counts.iter().filter(|&&x| x == r).count(), r)).unwrap_or(0);
    let others: Vec<String> = suite
        .cases
        .iter()
        .filter(|c| runs(c) != usual)
        .map(|c| format!("{} for {}", runs(c), c.name))
        .collect();
    let others = if others.is_empty() { String::new() } else { format!(" ({})", others.join(", ")) };
    println!(
        "suite {}{}: median of {usual} runs per row{others}, each run in a fresh process",
        suite.name,
        if opts.quick { " (--quick)" } else { "" },
    );
    println!("x kcoro = peer ns/op / kcoro ns/op (above 1: kcoro faster; below 1: peer faster)");
    println!(
        "spread = slowest run / fastest run ({SPREAD_MARK} or more is marked '!': the runs differ, \
         by where the parties started or by the machine's noise)"
    );
    if let Some(ns) = crate::core_probe::round_trip_ns() {
        println!(
            "cross-CPU round trip now: {ns:.0} ns (measured before every run too, and shown under \
             rows marked '!': on a VM it changes with where the host places the CPUs)"
        );
    }
    for note in suite.notes {
        println!("  {note}");
    }
    println!();
    let (allocs, allocs_width) = if cols.allocs {
        (format!(" {:>ALLOCS_COL$}", "allocs/op"), ALLOCS_COL + 1)
    } else {
        (String::new(), 0)
    };
    let (rate, rate_width) = if cols.rate {
        (format!(" {:>OPS_COL$} {:>GBPS_COL$}", "ops/s", "GB/s"), OPS_COL + GBPS_COL + 2)
    } else {
        (String::new(), 0)
    };
    let (net, net_width) = if cols.net {
        let head = format!(
            " {:>OPS_COL$} {:>LAT_COL$} {:>LAT_COL$} {:>LAT_COL$} {:>SHARE_COL$} {:<LOAD_COL$}",
            "req/s", "p50", "p99", "cpu/req", "worker", "load"
        );
        let width = head.chars().count();
        (head, width)
    } else {
        (String::new(), 0)
    };
    println!(
        "{:<CASE_COL$} {:<IMPL_COL$} {:>12} {:>9} {:>SPREAD_COL$} {:>10}{allocs}{rate}{net}",
        "case", "impl", "ns/op", "x kcoro", "spread", "bytes/op"
    );
    let width = CASE_COL + IMPL_COL + 12 + 9 + SPREAD_COL + 10 + 5 + allocs_width + rate_width + net_width;
    println!("{}", "-".repeat(width));
}

/// Width of the `spread` column.
const SPREAD_COL: usize = 7;

/// A spread (slowest run / fastest run) from which a row is marked as uneven.
const SPREAD_MARK: f64 = 1.5;

/// Width of the `allocs/op` column, printed only by suites with [`Kind::Allocs`] cases.
const ALLOCS_COL: usize = 10;

/// Width of the `ops/s` column, printed only by suites with [`Kind::Payload`] cases.
const OPS_COL: usize = 8;

/// Width of the `GB/s` column, printed with `ops/s`.
const GBPS_COL: usize = 9;

/// Width of the latency and CPU columns of [`Kind::Net`] rows (`p50`, `p99`, `cpu/req`).
const LAT_COL: usize = 8;

/// Width of the `worker` column: the busiest worker's share of the requests.
const SHARE_COL: usize = 6;

/// Width of the `load` column: the load generator.
const LOAD_COL: usize = 7;

/// The optional cells of a row. For the columns of [`Columns`]: `None` when the table
/// has no such column, `Some(None)` for a row without a value there.
struct Cells {
    /// Peak-RSS bytes per op (memory cases).
    bytes: Option<f64>,
    allocs: Option<Option<f64>>,
    /// Operations per second, and payload bytes per second for [`Kind::Payload`] rows.
    rate: Option<(f64, Option<f64>)>,
    /// Requests per second and the [`NetStats`] of [`Kind::Net`] rows.
    net: Option<(f64, Option<NetStats>)>,
}

/// Prints one row; `ns` is the median and the spread of its runs.
fn print_row(case: &str, imp: &str, (ns, spread): (f64, f64), kcoro_ns: Option<f64>, cells: Cells) {
    let ratio = match kcoro_ns {
        Some(k) if k > 0.0 => fmt_ratio(ns / k),
        _ => "-".to_string(),
    };
    let spread = fmt_spread(spread);
    let bytes = cells.bytes.map_or(String::new(), |b| format!("{b:.0}"));
    let allocs = match cells.allocs {
        None => String::new(),
        Some(a) => format!(" {:>ALLOCS_COL$}", a.map_or(String::new(), fmt_allocs)),
    };
    let rate = match cells.rate {
        None => String::new(),
        Some((ops, bps)) => {
            let gbps = bps.map_or(String::new(), |b| fmt_gbps(b / 1e9));
            format!(" {:>OPS_COL$} {gbps:>GBPS_COL$}", fmt_si(ops))
        }
    };
    let net = match cells.net {
        None => String::new(),
        Some((_, None)) => format!(" {:>OPS_COL$}", ""),
        Some((ops, Some(n))) => {
            let share = n.max_worker_share.map_or("-".to_string(), |s| format!("{:.0}%", s * 100.0));
            let load = match n.load {
                LoadGen::Wrk => "wrk",
                LoadGen::Builtin => "builtin",
            };
            format!(
                " {:>OPS_COL$} {:>LAT_COL$} {:>LAT_COL$} {:>LAT_COL$} {share:>SHARE_COL$} {load:<LOAD_COL$}",
                fmt_si(ops),
                fmt_duration(n.p50_ns),
                fmt_duration(n.p99_ns),
                fmt_duration(n.cpu_ns_per_op),
            )
        }
    };
    println!(
        "{case:<CASE_COL$} {imp:<IMPL_COL$} {:>12} {ratio:>9} {spread:>SPREAD_COL$} {bytes:>10}{allocs}{rate}{net}",
        fmt_ns(ns)
    );
}

/// A duration given in nanoseconds, in the largest unit that keeps it at or above 1:
/// `850ns`, `12.3us`, `4.56ms`, `1.20s`.
fn fmt_duration(ns: f64) -> String {
    let (v, unit) = match ns {
        x if x >= 1e9 => (x / 1e9, "s"),
        x if x >= 1e6 => (x / 1e6, "ms"),
        x if x >= 1e3 => (x / 1e3, "us"),
        x => (x, "ns"),
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$}{unit}")
}

/// Three significant digits and an SI suffix: `950`, `12.3k`, `4.56M`, `1.20G`.
fn fmt_si(x: f64) -> String {
    let (v, suffix) = match x {
        x if x >= 1e9 => (x / 1e9, "G"),
        x if x >= 1e6 => (x / 1e6, "M"),
        x if x >= 1e3 => (x / 1e3, "k"),
        x => (x, ""),
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    if suffix.is_empty() { format!("{v:.0}") } else { format!("{v:.digits$}{suffix}") }
}

/// GB/s (10^9 bytes per second): two decimals below 10, one below 100, none above.
fn fmt_gbps(g: f64) -> String {
    if g >= 100.0 {
        format!("{g:.0}")
    } else if g >= 10.0 {
        format!("{g:.1}")
    } else {
        format!("{g:.2}")
    }
}

/// Allocations per op: two decimals (a fraction means "some ops allocate").
fn fmt_allocs(a: f64) -> String {
    format!("{a:.2}")
}

fn print_error_row(case: &str, imp: &str, detail: &str) {
    let summary = summarize(detail);
    let short: String = summary.chars().take(ROW_ERROR_CHARS).collect();
    let more = if short.len() < summary.len() { "…" } else { "" };
    println!("{case:<CASE_COL$} {imp:<IMPL_COL$} error: {short}{more}");
}

/// One line out of a failure: how the child ended, plus its own error message if it
/// printed one (`kcoro-bench: …`), else the message of its first panic, else its first
/// stderr line.
fn summarize(detail: &str) -> String {
    let mut lines = detail.lines();
    let first = lines.next().unwrap_or_default();
    let (why, first_err) = first.split_once(": ").unwrap_or((first, ""));
    let rest: Vec<&str> = std::iter::once(first_err).chain(lines).collect();
    let own = rest.iter().rev().find_map(|l| l.strip_prefix("kcoro-bench: "));
    let panic = || {
        let at = rest.iter().position(|l| l.contains(" panicked at "))?;
        rest.get(at + 1).copied()
    };
    match own.or_else(panic).or(rest.first().copied()) {
        Some(msg) if !msg.is_empty() => format!("{why}: {msg}"),
        _ => why.to_string(),
    }
}

fn print_failures(failures: &[Failure]) {
    if failures.is_empty() {
        return;
    }
    println!();
    println!("errors:");
    for f in failures {
        println!("  {} / {}:", f.case, f.imp);
        for line in f.detail.lines().take(DETAIL_LINES) {
            println!("    {line}");
        }
    }
}

/// Two decimals, three for ratios below 0.1 so they never print as zero.
/// A spread as `1.03`, or `2.41!` from [`SPREAD_MARK`] on; `-` when it is not finite.
fn fmt_spread(spread: f64) -> String {
    match spread {
        s if !s.is_finite() => "-".to_string(),
        s if s >= SPREAD_MARK => format!("{s:.2}!"),
        s => format!("{s:.2}"),
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 0.1 { format!("{r:.2}") } else { format!("{r:.3}") }
}

/// Three significant digits at least, no exponent.
fn fmt_ns(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{ns:.0}")
    } else if ns >= 10.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_slowest_over_fastest_and_marks_uneven_rows() {
        let (lo, hi) = min_max([30.0, 25.0, 153.0, 74.0].into_iter());
        assert_eq!((lo, hi), (25.0, 153.0));
        assert!(min_max(std::iter::empty()).0.is_nan());
        assert_eq!(fmt_spread(hi / lo), "6.12!");
        assert_eq!(fmt_spread(1.49), "1.49");
        assert_eq!(fmt_spread(1.5), "1.50!");
        assert_eq!(fmt_spread(f64::NAN), "-");
    }

    #[test]
    fn median_odd_even_empty() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), 2.5);
        assert!(median(std::iter::empty()).is_nan());
    }

    #[test]
    fn measurement_json_shape() {
        let m =
            Measurement { ns_per_op: 1.5, bytes_per_op: None, allocs_per_op: None, net: None, latency: None };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"ns_per_op":1.5}"#);
        let back: Measurement = serde_json::from_str(r#"{"ns_per_op":2.0,"bytes_per_op":3.0}"#).unwrap();
        assert_eq!(back.bytes_per_op, Some(3.0));
        assert_eq!(back.allocs_per_op, None);
        let m = Measurement {
            ns_per_op: 1.5,
            bytes_per_op: None,
            allocs_per_op: Some(2.0),
            net: None,
            latency: None,
        };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"ns_per_op":1.5,"allocs_per_op":2.0}"#);
    }

    #[test]
    fn summarize_prefers_own_message_then_panic() {
        let own = "exit code 1: thread 'x' panicked at a.rs:1:1:\nboom\nkcoro-bench: driver failed: boom";
        assert_eq!(summarize(own), "exit code 1: driver failed: boom");
        let panic = "exit code 101: thread 'main' panicked at a.rs:1:1:\nboom";
        assert_eq!(summarize(panic), "exit code 101: boom");
        assert_eq!(summarize("timed out after 1s (killed)"), "timed out after 1s (killed)");
        let plain = "killed by signal 11 (SIGSEGV): fatal runtime error";
        assert_eq!(summarize(plain), "killed by signal 11 (SIGSEGV): fatal runtime error");
    }

    #[test]
    fn backtrace_lines_are_dropped() {
        let err = "exit code 101: thread 'main' panicked at a.rs:1:1:\nboom\nstack backtrace:\n   0: std::panic\n             at /rustc/x.rs:1:1\n  12: main";
        assert_eq!(
            with_stderr("exit code 101".into(), err.split_once(": ").unwrap().1),
            "exit code 101: thread 'main' panicked at a.rs:1:1:\nboom"
        );
    }

    #[test]
    fn child_timeout_crash_and_output() {
        let mut sleeper = Command::new("sleep");
        sleeper.arg("5");
        let err = run_child(sleeper, Duration::from_millis(100)).unwrap_err();
        assert!(err.starts_with("timed out"), "{err}");

        let mut crasher = Command::new("sh");
        crasher.args(["-c", "echo oops >&2; kill -SEGV $$"]);
        let err = run_child(crasher, Duration::from_secs(5)).unwrap_err();
        assert_eq!(err, "killed by signal 11 (SIGSEGV): oops");

        let mut ok = Command::new("sh");
        ok.args(["-c", "echo chatter; echo '{\"ns_per_op\":7}'"]);
        assert_eq!(run_child(ok, Duration::from_secs(5)).unwrap().ns_per_op, 7.0);
    }

    #[test]
    fn rate_cells_format() {
        assert_eq!(fmt_si(950.0), "950");
        assert_eq!(fmt_si(12_345.0), "12.3k");
        assert_eq!(fmt_si(4_561_000.0), "4.56M");
        assert_eq!(fmt_si(120_000_000.0), "120M");
        assert_eq!(fmt_si(1.2e9), "1.20G");
        assert_eq!(fmt_gbps(0.0123), "0.01");
        assert_eq!(fmt_gbps(3.456), "3.46");
        assert_eq!(fmt_gbps(123.4), "123");
    }

    #[test]
    fn payload_rows_carry_bytes_per_sec() {
        let kind = Kind::Payload { bytes: 1000 };
        assert_eq!(ops_per_sec(kind, 500.0), 2e6);
        let row = Row {
            suite: "s".into(),
            case: "c".into(),
            imp: KCORO.into(),
            ns_per_op: 500.0,
            min_ns_per_op: 490.0,
            max_ns_per_op: 520.0,
            ops_per_sec: 2e6,
            runs: 3,
            bytes_per_op: None,
            allocs_per_op: None,
            bytes_per_sec: Some(2e9),
            net: None,
            latency: None,
            core_rtt_ns: None,
        };
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"suite":"s","case":"c","impl":"kcoro","ns_per_op":500.0,"min_ns_per_op":490.0,"max_ns_per_op":520.0,"ops_per_sec":2000000.0,"runs":3,"bytes_per_sec":2000000000.0}"#
        );
        let timed = Row { latency: Some(Latency { p50_ns: 4e3, p99_ns: 9e3 }), ..row.clone() };
        assert!(
            serde_json::to_string(&timed)
                .unwrap()
                .ends_with(r#""latency":{"p50_ns":4000.0,"p99_ns":9000.0}}"#)
        );
        let probed = Row { core_rtt_ns: Some((64.0, 351.0)), ..row };
        assert!(serde_json::to_string(&probed).unwrap().ends_with(r#""core_rtt_ns":[64.0,351.0]}"#));
    }

    #[test]
    fn latency_is_nearest_rank_and_its_median_needs_every_run() {
        let mut ops: Vec<u64> = (1..=200).rev().collect();
        let l = Latency::of(&mut ops).unwrap();
        assert_eq!((l.p50_ns, l.p99_ns), (100.0, 198.0));
        assert_eq!(Latency::of(&mut [7]), Some(Latency { p50_ns: 7.0, p99_ns: 7.0 }));
        assert!(Latency::of(&mut []).is_none());
        let run = |p50: f64| Measurement {
            latency: Some(Latency { p50_ns: p50, p99_ns: p50 * 3.0 }),
            ..Measurement::per_op(Duration::from_nanos(10), 1)
        };
        let l = Latency::median_of(&[run(4.0), run(1.0), run(2.0)]).unwrap();
        assert_eq!((l.p50_ns, l.p99_ns), (2.0, 6.0));
        let without = Measurement::per_op(Duration::from_nanos(10), 1);
        assert!(Latency::median_of(&[run(4.0), without]).is_none());
        assert!(Latency::median_of(&[]).is_none());
        let json = serde_json::to_string(&run(4.0)).unwrap();
        assert_eq!(json, r#"{"ns_per_op":10.0,"latency":{"p50_ns":4.0,"p99_ns":12.0}}"#);
        assert_eq!(serde_json::from_str::<Measurement>(&json).unwrap().latency, run(4.0).latency);
    }

    #[test]
    fn net_stats_take_medians_field_by_field() {
        let run = |p50, share| NetStats {
            p50_ns: p50,
            p99_ns: p50 * 10.0,
            cpu_ns_per_op: 1.0,
            max_worker_share: share,
            load: LoadGen::Wrk,
        };
        let m = NetStats::median_of(&[run(3.0, Some(0.9)), run(1.0, None), run(2.0, Some(0.5))]).unwrap();
        assert_eq!((m.p50_ns, m.p99_ns, m.max_worker_share), (2.0, 20.0, Some(0.7)));
        assert_eq!(NetStats::median_of(&[run(1.0, None)]).unwrap().max_worker_share, None);
        assert!(NetStats::median_of(&[]).is_none());
        let json = serde_json::to_string(&run(1.0, None)).unwrap();
        assert_eq!(json, r#"{"p50_ns":1.0,"p99_ns":10.0,"cpu_ns_per_op":1.0,"load":"wrk"}"#);
        let m: Measurement = serde_json::from_str(&format!(r#"{{"ns_per_op":5.0,"net":{json}}}"#)).unwrap();
        assert_eq!(m.net, Some(run(1.0, None)));
    }

    #[test]
    fn durations_format_in_their_unit() {
        assert_eq!(fmt_duration(850.0), "850ns");
        assert_eq!(fmt_duration(12_345.0), "12.3us");
        assert_eq!(fmt_duration(4_561_000.0), "4.56ms");
        assert_eq!(fmt_duration(1.2e9), "1.20s");
    }

    #[test]
    fn proc_status_has_rss() {
        assert!(proc_status_bytes("VmRSS").unwrap() > 0);
        assert!(proc_status_bytes("VmHWM").unwrap() > 0);
    }
}
