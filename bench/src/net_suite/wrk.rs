//! Load from `wrk` (the HTTP rows): one `wrk` thread, the case's connections, a Lua
//! `done` hook that prints the summary as one JSON line (so nothing parses wrk's human
//! output), and installing `wrk` from Debian's package when it is missing.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Deserialize;

use super::{LoadResult, sys};
use crate::harness::LoadGen;

/// The Lua hook: latencies are in microseconds, the duration too.
const SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"#;

/// Per-request timeout: far above any latency a healthy run shows, so a stalled
/// connection is an error, not a slow sample.
const TIMEOUT: &str = "10s";

#[derive(Deserialize)]
struct Summary {
    requests: u64,
    duration_us: u64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

/// Whether `wrk` runs here (`wrk -v` prints its version; it exits 1 after the usage).
pub fn available() -> bool {
    Command::new("wrk")
        .arg("-v")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).starts_with("wrk "))
}

/// Makes `wrk` available if it can: when missing, installs Debian's package with
/// `apt-get` (as root only). Returns the line to print under the table's header.
pub fn ensure() -> String {
    if available() {
        return "load: wrk for the http rows (one wrk thread)".to_string();
    }
    match sys::apt_install(&["wrk"]) {
        Ok(()) if available() => {
            "load: wrk for the http rows (one wrk thread; installed by this run)".to_string()
        }
        Ok(()) => "load: built-in generator for every row (wrk installed but does not run)".to_string(),
        Err(why) => format!("load: built-in generator for every row (wrk missing: {why})"),
    }
}

/// Runs `wrk` against `port` (over TLS if `tls`) with `conns` connections for `secs`
/// seconds, pinned to `cpu` if given.
pub fn run(tls: bool, port: u16, conns: usize, secs: u64, cpu: Option<usize>) -> Result<LoadResult, String> {
    let script = std::env::temp_dir().join(format!("kcoro-bench-wrk-{}.lua", std::process::id()));
    std::fs::write(&script, SCRIPT).map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let mut cmd = Command::new("wrk");
    cmd.args(["-t1", &format!("-c{conns}"), &format!("-d{secs}s"), "--timeout", TIMEOUT, "-s"])
        .arg(&script)
        .arg(format!("{}://127.0.0.1:{port}/", if tls { "https" } else { "http" }))
        .stdin(Stdio::null());
    if let Some(cpu) = cpu {
        sys::pin_command(&mut cmd, cpu).map_err(|e| format!("cannot pin wrk to CPU {cpu}: {e}"))?;
    }
    let out = cmd.output();
    let _ = std::fs::remove_file(&script);
    let out = out.map_err(|e| format!("cannot run wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("wrk failed ({}): {} {}", out.status, stdout.trim(), stderr.trim()));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("wrk printed no summary: {}", stdout.trim()))?;
    let s: Summary = serde_json::from_str(line).map_err(|e| format!("bad wrk summary {line:?}: {e}"))?;
    if s.errors > 0 {
        return Err(format!("wrk saw {} socket errors or bad statuses in {} requests", s.errors, s.requests));
    }
    if s.requests == 0 {
        return Err("wrk completed no request".to_string());
    }
    Ok(LoadResult {
        requests: s.requests,
        elapsed: Duration::from_micros(s.duration_us),
        p50_ns: s.p50_us as f64 * 1e3,
        p99_ns: s.p99_us as f64 * 1e3,
        load: LoadGen::Wrk,
    })
}
