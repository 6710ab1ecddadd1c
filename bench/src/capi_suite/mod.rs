//! Suite `capi`: the `chan` suite's shapes through libkcoro's C API, from C, against the
//! same shapes through kcoro's Rust API and Go channels: what the C boundary costs.
//!
//! The `kcoro` rows run `bench/c/capi_bench.c` (built by [`prepare`] against
//! `libkcoro_capi.a` from a release build of `kcoro-capi`); the harness child execs it and
//! relays its JSON line. `kcoro-rs` runs the same shapes on `kcoro::chan` ([`rust_api`]),
//! Go in `bench/go/main.go`. Every implementation runs its parties as coroutines
//! (goroutines) on two workers (`GOMAXPROCS=2`).
//!
//! | case                  | shape                                                 | one op         |
//! |-----------------------|-------------------------------------------------------|----------------|
//! | `pingpong_rendezvous` | driver and echo, two rendezvous channels of 4 bytes   | one round trip |
//! | `spsc_1024_{4,64}b`   | capacity 1024, 1 producer, 1 consumer, 4/64-byte elements | one message |
//! | `mpmc_4x4_1024_{4,64}b` | capacity 1024, 4 producers, 4 consumers             | one message    |
//! | `ptr_spsc_64k`        | pointer mode, capacity 1024, a 64 KiB buffer per message (not touched) | one message |
//!
//! C copies elements in and out through `elem_sz`; Rust moves a `u32` or a `[u8; 64]`; Go
//! a `uint32` or a `[64]byte`. Pointer mode moves `(ptr, len)` (Rust: a `(usize, usize)`,
//! Go: a `[]byte` of the buffer). The C side times from before spawning to after
//! `kc_sched_drain`; the Rust side from before spawning to after joining.

mod rust_api;

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{GO, KCORO, Measurement, Suite, payload, throughput};

/// The Rust API rows.
const RUST: &str = "kcoro-rs";

/// Bytes one `ptr_spsc_64k` message stands for.
pub const PTR_BYTES: u64 = 64 * 1024;

/// The suite table.
pub static SUITE: Suite = Suite {
    name: "capi",
    notes: &[
        "kcoro: C (bench/c/capi_bench.c) on libkcoro's C API, static link, kc_sched_init(workers 2);",
        "  kcoro-rs: the same shapes on kcoro::chan, workers(2); go: GOMAXPROCS=2",
        "kcoro-rs x kcoro > 0.87 means the C row is within 1.15x of the Rust API",
        "ptr_spsc_64k: pointer mode, GB/s of the 64 KiB buffers handed over (never copied)",
    ],
    cases: &[
        throughput("pingpong_rendezvous", 200_000, 20_000),
        throughput("spsc_1024_4b", 2_000_000, 200_000),
        throughput("spsc_1024_64b", 2_000_000, 200_000),
        throughput("mpmc_4x4_1024_4b", 2_000_000, 200_000),
        throughput("mpmc_4x4_1024_64b", 2_000_000, 200_000),
        payload("ptr_spsc_64k", 2_000_000, 200_000, PTR_BYTES),
    ],
    impls: &[KCORO, RUST, GO],
    skips: &[],
    prepare: Some(prepare),
    go_in_child: false,
    child,
};

fn child(case: &str, imp: &str, n: u64) -> Result<Measurement, String> {
    match imp {
        KCORO => run_c(case, n),
        RUST => rust_api::run(case, n),
        _ => Err(format!("capi: no Rust impl {imp:?}")),
    }
}

/// `target/release`, next to this binary's profile directory.
fn release_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in a target dir", exe.display()))?;
    Ok(target.join("release"))
}

fn bench_bin() -> Result<PathBuf, String> {
    Ok(release_dir()?.join("kcoro-capi-bench"))
}

/// Builds `libkcoro_capi.a` (release) and links the C bench program against it.
fn prepare(_: &crate::harness::Selection) -> Result<(), String> {
    let release = release_dir()?;
    let target = release.parent().ok_or("release dir has no parent")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build.args(["build", "--release", "-p", "kcoro-capi", "--manifest-path"]);
    build.arg(root.join("Cargo.toml")).arg("--target-dir").arg(target);
    match build.status() {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(format!("building kcoro-capi failed ({s}): {build:?}")),
        Err(e) => return Err(format!("cannot run {cargo:?} to build kcoro-capi: {e}")),
    }
    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-I"]).arg(root.join("include"));
    cc.arg(root.join("bench/c/capi_bench.c")).arg(release.join("libkcoro_capi.a"));
    cc.args(["-pthread", "-ldl", "-lm", "-lrt", "-o"]).arg(bench_bin()?);
    match cc.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!("cc capi_bench.c failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("cannot run cc: {e}")),
    }
}

/// Runs the C program on `case` and relays its measurement.
fn run_c(case: &str, n: u64) -> Result<Measurement, String> {
    let out = Command::new(bench_bin()?)
        .arg(case)
        .arg(n.to_string())
        .output()
        .map_err(|e| format!("cannot run kcoro-capi-bench: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "kcoro-capi-bench {case} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("kcoro-capi-bench printed no measurement: {e}"))
}
