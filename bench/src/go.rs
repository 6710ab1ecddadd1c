//! The Go peer: builds `bench/go` once per harness run into the cargo target directory.
//!
//! The Go program is one `main.go` with no dependencies outside the standard library;
//! it takes `<suite> <case> <n>` and prints the same JSON line as a Rust child
//! (see `harness::Measurement`). Without `go` on the `PATH` the peer is skipped.

use std::path::PathBuf;
use std::process::Command;

/// File name of the built Go peer.
const BIN_NAME: &str = "kcoro-bench-go";

/// Builds the Go peer and returns the path of its binary, or why it cannot run.
pub fn prepare() -> Result<PathBuf, String> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("go");
    if !src.join("main.go").is_file() {
        return Err(format!("no main.go in {}", src.display()));
    }
    match Command::new("go").arg("version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => return Err(format!("`go version` failed: {}", out.status)),
        Err(e) => return Err(format!("`go` not found on PATH ({e})")),
    }
    // Next to our own binary, i.e. target/<profile>/, so it is cleaned with the rest.
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let dir = exe.parent().ok_or_else(|| format!("{} has no parent directory", exe.display()))?;
    let bin = dir.join(BIN_NAME);
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        // Build with the installed toolchain; never download another one.
        .env("GOTOOLCHAIN", "local")
        .output()
        .map_err(|e| format!("cannot run `go build`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`go build` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(bin)
}
