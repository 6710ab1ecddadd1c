//! Suite `plugin`: the cost of calling a native plugin through its host — our
//! `kcoro-host` against `nylon-ring-host` 0.2.2 (crates.io), the host of the ABI ours
//! descends from.
//!
//! Two plugins with the same four entries: `bench/plugins/kcoro` (kcoro's layout, on
//! `kcoro_abi::define_plugin!`) and `bench/plugins/nylon` (ABI 2, on nylon-ring 0.2.2's
//! `Plugin` trait). Three rows per case, each named for the host and the plugin it runs:
//!
//! | impl         | host               | plugin                                   |
//! |--------------|--------------------|------------------------------------------|
//! | `kcoro`      | kcoro-host         | `bench/plugins/kcoro`                    |
//! | `kcoro-ny`   | kcoro-host         | `bench/plugins/nylon`, the very `.so` the next row loads |
//! | `nylon-ring` | nylon-ring-host    | `bench/plugins/nylon`                    |
//!
//! `nylon-ring`'s ratio is against `kcoro-ny`: the two hosts on the same binary.
//! Every reply is sent synchronously, inside the call that asked for it — the fast path
//! both hosts have:
//!
//! | entry     | behaviour                                                               |
//! |-----------|-------------------------------------------------------------------------|
//! | `echo`    | replies `Ok` + the payload                                              |
//! | `noop`    | replies nothing, returns `Ok`                                           |
//! | `stream5` | 5 frames `Ok` + `frame`, then `StreamEnd`, all inside `handle`          |
//! | `bidi`    | `handle` replies nothing; each chunk sent in is echoed as one frame;    |
//! |           | closing the host's side sends `StreamEnd`                               |
//!
//! | case                 | one op                                                     | driver     |
//! |----------------------|------------------------------------------------------------|------------|
//! | `unary_empty`        | one unary call to `echo` with an empty payload, its reply  | 1          |
//! | `unary_1k`           | the same with a 1 KiB payload, echoed back                 | 1          |
//! | `unary_any_thread`   | `unary_empty` through the call that also takes a reply     | 1          |
//! |                      | from another thread                                        |            |
//! | `fire_and_forget`    | one call to `noop`, no reply awaited                       | 1          |
//! | `stream_5_frames`    | start `stream5`, read its 5 frames and the end             | 1          |
//! | `bidi_5_frames_echo` | open `bidi`, send 5 chunks, read 5 echoes, close, read end | 1          |
//! | `unary_2_workers`    | `unary_empty`, two drivers at once; ns/op = elapsed / n    | 2          |
//!
//! The unary cases other than `unary_any_thread` use each host's call for a plugin that
//! answers inside `handle` (kcoro-host's `inline_only`, nylon-ring-host's
//! `call_response_fast`: both fail a call answered later, and keep no sid in a shared
//! table); `unary_any_thread` uses the general call of each (kcoro-host's plain
//! `call_raw`, nylon-ring-host's `call_response`), which would wait for a reply from a
//! plugin thread, here still answered inside `handle`.
//!
//! The drivers: kcoro runs each as a coroutine on a `kcoro::Runtime` with `workers(1)`
//! (`workers(2)` and two coroutines of n/2 calls each for `unary_2_workers`) and uses
//! the blocking forms (`call_raw(..).wait()`, `StreamCall::recv`), which never park on
//! this fast path. The drivers' coroutines have thread-sized stacks (4 MiB,
//! [`kcoro_plugin::DRIVER_STACK`]), as nylon-ring-host's driver has on its thread, so
//! kcoro-host runs plugin functions in place; from a coroutine with the default 64 KiB
//! it would switch to the worker's stack and back for each (`kcoro_host::PLUGIN_STACK`). nylon-ring-host's API is async only; its driver runs in `block_on` of
//! a tokio `current_thread` runtime (no cross-thread wake-up, the cheapest way to drive
//! it), and `unary_2_workers` runs two tasks on a `multi_thread` runtime with
//! `worker_threads(2)`. nylon-ring's own harness (`ex-nyring-host`) drives calls the
//! same way, awaiting them one after another in a task.
//!
//! Both hosts resolve every entry once before timing (`Plugin::entry`,
//! `PluginHandle::entry`) and call by id. nylon-ring-host's plugin is loaded with `load`,
//! not `load_pinned` (which gives up unloading to skip the in-flight count): kcoro-host
//! always keeps its plugins unloadable. The nylon-ring API per case is in [`SUITE`]'s
//! notes and [`nylon_plugin`].
//!
//! Each case runs an untimed warm-up of `n / 10 + 1` operations first. `allocs/op` counts
//! this process's heap allocations (`alloc`, `alloc_zeroed`, `realloc`; see
//! [`crate::alloc_count`]) during the timed loop only, on every thread. A plugin `.so`
//! has its own copy of the Rust standard library and allocates through its own global
//! allocator, which is not counted: the number is the *host's* allocations. (The nylon
//! plugin allocates one `Vec` per non-empty reply or frame, because nylon-ring 0.2.2
//! replies only with owned bytes; the kcoro plugin lends its bytes and allocates
//! nothing.)
//!
//! The plugins are built by the harness process, once, before any child runs
//! ([`prepare`]: `cargo build --release -p kcoro-bench-plugin -p nylon-bench-plugin`,
//! with `$CARGO` or `cargo`, a no-op when they are fresh); children load them from
//! `target/release/`, next to the binary's own target directory. Go has no row.

pub mod kcoro_plugin;
pub mod nylon_plugin;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::alloc_count;
use crate::harness::{Case, GO, KCORO, Kind, Measurement, Skip, Suite, throughput};

pub use crate::runtime_suite::warmup;

/// The implementation name of nylon-ring-host's rows.
pub const NYLON: &str = "nylon-ring";

/// The implementation name of kcoro-host running the nylon-ring plugin.
pub const KCORO_NY: &str = "kcoro-ny";

/// The payload of `unary_1k`.
pub const PAYLOAD_1K: usize = 1024;

/// Frames of `stream_5_frames` and `bidi_5_frames_echo`, not counting the end.
pub const FRAMES: usize = 5;

/// The bytes of every frame, both ways.
pub const FRAME: &[u8] = b"frame";

/// Every case, for the Go skip.
const ALL: &[&str] = &[
    "unary_empty",
    "unary_1k",
    "unary_any_thread",
    "fire_and_forget",
    "stream_5_frames",
    "bidi_5_frames_echo",
    "unary_2_workers",
];

/// A throughput case that also reports `allocs_per_op`.
const fn case(name: &'static str, n_full: u64, n_quick: u64) -> Case {
    Case { kind: Kind::Allocs, ..throughput(name, n_full, n_quick) }
}

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "plugin",
    notes: &[
        "kcoro: kcoro-host + bench/plugins/kcoro; kcoro-ny: kcoro-host + bench/plugins/nylon (ABI 2);",
        "  nylon-ring: nylon-ring-host + bench/plugins/nylon, the same .so as kcoro-ny, whose row its x compares with",
        "kcoro, kcoro-ny: driver in a coroutine on kcoro workers(1), blocking forms, 4 MiB coroutine stacks",
        "  (a thread's size: plugin functions run in place, no switch to the worker's stack);",
        "  nylon-ring: nylon-ring-host 0.2.2, driver in block_on of a tokio current_thread runtime;",
        "  unary_2_workers: kcoro workers(2) + 2 coroutines, tokio worker_threads(2) + 2 tasks, n/2 calls each",
        "entries resolved once before timing, calls by id; nylon-ring plugin loaded with load (not load_pinned)",
        "API per case (kcoro | nylon-ring):",
        "  unary_empty, _1k, _2_workers: call_raw(&e, p).inline_only().wait() | PluginEntry::call_response_fast(p).await",
        "  unary_any_thread:   call_raw(&e, p).wait()           | PluginEntry::call_response(p).await",
        "  fire_and_forget:    fire_and_forget(&e, p)           | PluginEntry::call(p).await",
        "  stream_5_frames:    call_stream_raw(&e, p) + recv()  | PluginEntry::call_stream(p) + StreamReceiver::recv",
        "  bidi_5_frames_echo: StreamCall send/recv/close       | call_stream + PluginHandle::send_stream_data/close_stream",
        "allocs/op: heap allocations of the host process per op (median run); the plugin .so's own",
        "  allocations are not counted (the nylon plugin allocates 1 Vec per non-empty reply or frame;",
        "  kcoro-host keeps it without a copy in a boxed handle, nylon-ring-host copies it into a Vec)",
    ],
    cases: &[
        case("unary_empty", 5_000_000, 500_000),
        case("unary_1k", 2_000_000, 200_000),
        case("unary_any_thread", 5_000_000, 500_000),
        case("fire_and_forget", 10_000_000, 1_000_000),
        case("stream_5_frames", 1_000_000, 100_000),
        case("bidi_5_frames_echo", 500_000, 50_000),
        case("unary_2_workers", 5_000_000, 500_000),
    ],
    impls: &[KCORO, GO, KCORO_NY, NYLON],
    skips: &[Skip { imp: GO, cases: ALL, why: "no Go host for these plugins" }],
    prepare: Some(prepare),
    go_in_child: false,
    child,
};

/// Runs one case of one Rust implementation (the child side of the harness).
fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    match imp {
        KCORO => kcoro_plugin::run(case, n, kcoro_plugin_path()?),
        KCORO_NY => kcoro_plugin::run(case, n, nylon_plugin_path()?),
        NYLON => nylon_plugin::run(case, n),
        _ => Err(format!("plugin: no Rust impl {imp:?}")),
    }
}

/// The error for a case name no implementation knows.
fn unknown(case: &str) -> String {
    format!("plugin: no case {case:?}")
}

/// The packages of the two plugins.
const PACKAGES: [&str; 2] = ["kcoro-bench-plugin", "nylon-bench-plugin"];

/// Where the plugins are built and loaded from: `<target>/release/`, `<target>` being the
/// target directory of this binary (`<target>/<profile>/kcoro-bench`).
fn plugin_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in a target directory", exe.display()))?;
    Ok(target.join("release"))
}

/// The built library of `package` (`kcoro-bench-plugin` → `libkcoro_bench_plugin.so`).
fn plugin_path(package: &str) -> Result<PathBuf, String> {
    use std::env::consts::{DLL_PREFIX, DLL_SUFFIX};
    let file = format!("{DLL_PREFIX}{}{DLL_SUFFIX}", package.replace('-', "_"));
    Ok(plugin_dir()?.join(file))
}

/// The kcoro plugin, checked to exist.
pub fn kcoro_plugin_path() -> Result<PathBuf, String> {
    existing(plugin_path(PACKAGES[0])?)
}

/// The nylon-ring plugin, checked to exist.
pub fn nylon_plugin_path() -> Result<PathBuf, String> {
    existing(plugin_path(PACKAGES[1])?)
}

fn existing(path: PathBuf) -> Result<PathBuf, String> {
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no plugin at {} (the harness builds it; run the suite, not a lone child)",
            path.display()
        ))
    }
}

/// Builds both plugins into `<target>/release/` with `$CARGO` (or `cargo`), which
/// rebuilds whatever is missing or stale and does nothing otherwise. Runs in the harness
/// process, once, before any child.
fn prepare(_: &crate::harness::Selection) -> Result<(), String> {
    let dir = plugin_dir()?;
    let target = dir.parent().ok_or_else(|| format!("{} has no parent", dir.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("Cargo.toml");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release"]);
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    cmd.arg("--manifest-path").arg(&manifest).arg("--target-dir").arg(target);
    let built = PACKAGES.iter().all(|p| plugin_path(p).is_ok_and(|path| path.is_file()));
    match cmd.status() {
        Ok(status) if status.success() => {}
        Ok(status) => return Err(format!("building the plugins failed ({status}): {cmd:?}")),
        Err(e) if built => {
            println!("note: cannot run {cargo:?} ({e}); using the plugins already in {}", dir.display());
        }
        Err(e) => return Err(format!("cannot run {cargo:?} to build the plugins: {e}")),
    }
    for p in PACKAGES {
        existing(plugin_path(p)?)?;
    }
    Ok(())
}

/// The timed part of a case: wall time and host allocations from [`Timed::start`] to
/// [`Timed::stop`].
pub struct Timed {
    start: Instant,
    allocs: alloc_count::Window,
}

impl Timed {
    pub fn start() -> Timed {
        let allocs = alloc_count::Window::open();
        Timed { start: Instant::now(), allocs }
    }

    /// The measurement of `n` operations.
    pub fn stop(self, n: u64) -> Measurement {
        let elapsed = self.start.elapsed();
        let allocs = self.allocs.close();
        let mut m = Measurement::per_op(elapsed, n);
        m.allocs_per_op = Some(allocs as f64 / n.max(1) as f64);
        m
    }
}

/// Checks a unary reply: `ok` (its status), and `data` against the `sent` payload. The
/// timed loops check the length and both ends (`full` false); warm-ups compare it all.
///
/// Empty slices are never handed to `==`: it calls `bcmp` even for zero bytes, and
/// glibc's AVX-512 `bcmp` takes ~80 ns on an empty `Vec`'s dangling pointer on some
/// machines (a masked load of an unmapped page), which would swamp the profile.
pub fn check_echo(ok: bool, data: &[u8], sent: &[u8], full: bool) -> Result<(), String> {
    let same = data.len() == sent.len()
        && (sent.is_empty()
            || if full { data == sent } else { data.first() == sent.first() && data.last() == sent.last() });
    match (ok, same) {
        (true, true) => Ok(()),
        (false, _) => Err("echo replied with a status other than Ok".to_string()),
        (true, false) => Err(format!("echo replied {} bytes, not the {} sent", data.len(), sent.len())),
    }
}

/// Checks one non-terminal frame.
pub fn check_frame(ok: bool, data: &[u8]) -> Result<(), String> {
    if ok && data == FRAME {
        Ok(())
    } else {
        Err(format!("unexpected frame (ok: {ok}, {} bytes)", data.len()))
    }
}

/// The payload of `case`.
/// Which unary call a case makes (the module docs).
#[derive(Clone, Copy)]
pub enum Unary {
    /// Answered inside `handle`, or failed.
    Inline,
    /// Answered whenever, from any thread.
    AnyThread,
}

/// The unary call of `case`.
pub fn unary_call(case: &str) -> Unary {
    if case == "unary_any_thread" { Unary::AnyThread } else { Unary::Inline }
}

pub fn payload(case: &str) -> Vec<u8> {
    if case == "unary_1k" { (0..PAYLOAD_1K).map(|i| i as u8).collect() } else { Vec::new() }
}
