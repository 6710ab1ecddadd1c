//! `ipc` suite, `iceoryx2` rows: Eclipse iceoryx2 0.10, zero-copy shared-memory
//! publish-subscribe. iceoryx2 is large, so it is not a dependency of this crate: its rows
//! run the standalone binary `bench/iceoryx2` (package `kcoro-bench-iceoryx2`, its own
//! workspace), which the suite's `prepare` builds only when one of these rows is selected
//! ([`prepare`]). That binary is client and peer both; its doc comment has the details:
//! `ping` and `pong` publish-subscribe services of `[u8]` slices, samples loaned and written
//! in place, subscribers busy-polled as in iceoryx2's own benchmarks, no message ever
//! dropped (a full buffer makes the publisher wait). It mirrors this suite's shapes, checks
//! and warm-up, and prints one line of JSON, which [`run`] turns into the row's measurement.
//!
//! `KCORO_BENCH_ICEORYX2_WAIT=event` runs the rows with the binary's event-driven waiting
//! (the receiver blocks on an iceoryx2 event, notified after every sample) instead.

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;

use super::Mode;
use crate::harness::{Latency, Measurement};
use crate::runtime_suite::warmup;

/// The environment variable that picks the binary's `--wait` (`spin`, the default, or `event`).
pub const WAIT_ENV: &str = "KCORO_BENCH_ICEORYX2_WAIT";

/// `bench/iceoryx2`, the standalone package.
fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("iceoryx2")
}

/// The binary `cargo build --release` makes in the package's own target directory.
fn binary() -> PathBuf {
    package_dir().join("target").join("release").join("kcoro-bench-iceoryx2")
}

/// Where [`prepare`] leaves the reason a build failed, for the rows (children) to report.
fn build_error_file() -> PathBuf {
    package_dir().join("target").join("kcoro-bench-build-error.txt")
}

/// Builds the binary ([`build`]) and says how it went, in a line for the suite's notes. A
/// failure is remembered (in [`build_error_file`]) so the rows fail with its reason instead of
/// running a binary left from an older build.
pub fn prepare() -> String {
    let error_file = build_error_file();
    if !binary().is_file() {
        println!("note: building bench/iceoryx2 (its first build compiles iceoryx2: a minute or two)");
    }
    match build() {
        Ok(bin) => {
            let _ = std::fs::remove_file(&error_file);
            format!("iceoryx2 rows run {}", bin.display())
        }
        Err(why) => {
            let _ = std::fs::create_dir_all(package_dir().join("target"));
            let _ = std::fs::write(&error_file, &why);
            format!("iceoryx2 rows skipped (they fail at once): {why}")
        }
    }
}

/// `cargo build --release --manifest-path bench/iceoryx2/Cargo.toml` (quick when nothing
/// changed); returns the binary. The first build compiles iceoryx2 (a minute or two).
fn build() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "-q", "--manifest-path"]).arg(package_dir().join("Cargo.toml"));
    // This crate's build may have set a target directory for the workspace; the package has its own.
    cmd.env_remove("CARGO_TARGET_DIR");
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(binary()),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().find(|l| l.starts_with("error")).unwrap_or("").trim();
            Err(format!("building bench/iceoryx2 failed ({}): {first}", out.status))
        }
        Err(e) => Err(format!("cannot run {cargo:?} to build bench/iceoryx2: {e}")),
    }
}

/// What the binary prints.
#[derive(Deserialize)]
struct Report {
    ns_per_op: f64,
    p50_ns: Option<f64>,
    p99_ns: Option<f64>,
}

/// One run: the binary as client (it spawns its own peer, on `peer_cpu` if given; this
/// process, and so the client, is already pinned then).
pub fn run(mode: Mode, size: usize, n: u64, peer_cpu: Option<usize>) -> Result<Measurement, String> {
    if let Ok(why) = std::fs::read_to_string(build_error_file()) {
        return Err(format!("skipped: bench/iceoryx2 did not build: {why}"));
    }
    let bin = binary();
    if !bin.is_file() {
        return Err(format!("no {} (the suite builds it; run the suite, not a lone child)", bin.display()));
    }
    let mut cmd = Command::new(&bin);
    cmd.args(["client", mode.name(), &size.to_string(), &n.to_string(), &warmup(n).to_string()]);
    if let Some(cpu) = peer_cpu {
        cmd.args(["--peer-cpu", &cpu.to_string()]);
    }
    if let Some(wait) = std::env::var_os(WAIT_ENV) {
        cmd.arg("--wait").arg(wait);
    }
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("iceoryx2 client failed ({}): {}", out.status, stderr.trim()));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Report = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("iceoryx2 client printed {:?}: {e}", stdout.trim()))?;
    let latency = match (report.p50_ns, report.p99_ns) {
        (Some(p50_ns), Some(p99_ns)) => Some(Latency { p50_ns, p99_ns }),
        _ => None,
    };
    Ok(Measurement { ns_per_op: report.ns_per_op, latency, ..Measurement::per_op(Default::default(), n) })
}
