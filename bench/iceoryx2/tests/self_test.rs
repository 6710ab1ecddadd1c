//! The binary end to end, as the `ipc` suite runs it: a client process and its peer process,
//! both shapes, a small message and one of 100 KiB, both wait strategies, few ops.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_kcoro-bench-iceoryx2");

/// Runs the client and returns its one line of JSON.
fn client(args: &[&str]) -> Result<String, String> {
    let out = Command::new(BIN).arg("client").args(args).output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    match stdout.lines().collect::<Vec<_>>()[..] {
        [line] => Ok(line.to_string()),
        _ => Err(format!("expected one line of JSON, got {stdout:?}")),
    }
}

/// The number after `"key": ` in `json`, or `None` for `null`.
fn field(json: &str, key: &str) -> Option<f64> {
    let rest = json.split(&format!("\"{key}\": ")).nth(1).unwrap_or_else(|| panic!("no {key} in {json}"));
    let value = rest.split([',', '}']).next().unwrap().trim();
    (value != "null").then(|| value.parse().unwrap_or_else(|e| panic!("{key} in {json}: {e}")))
}

#[test]
fn both_shapes_both_waits() {
    for wait in ["spin", "event"] {
        for mode in ["rtt", "stream"] {
            for size in ["64", "102400"] {
                let what = format!("{mode} {size} --wait {wait}");
                let json = client(&[mode, size, "50", "6", "--wait", wait])
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let ns = field(&json, "ns_per_op").unwrap_or_else(|| panic!("{what}: no ns_per_op"));
                assert!(ns > 0.0, "{what}: {json}");
                let (p50, p99) = (field(&json, "p50_ns"), field(&json, "p99_ns"));
                match mode {
                    "rtt" => assert!(
                        p50.is_some_and(|p50| p99.is_some_and(|p99| 0.0 < p50 && p50 <= p99)),
                        "{what}: {json}"
                    ),
                    _ => assert!(p50.is_none() && p99.is_none(), "{what}: {json}"),
                }
            }
        }
    }
}

#[test]
fn bad_arguments_fail() {
    assert!(client(&["rtt", "0", "10", "1"]).is_err());
    assert!(client(&["echo", "64", "10", "1"]).is_err());
    assert!(client(&["rtt", "64", "10"]).is_err());
    assert!(client(&["rtt", "64", "10", "1", "--wait", "sleep"]).is_err());
}
