//! Runs the `kcoro` binary: the pipeline demo must pass its exactly-once check for every
//! pair of stage kinds, must fail it when a fault is injected, and must reject bad flags.
//! Runs are short and concurrent, so the whole file takes a little over a second.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PASS: &str = "exactly-once check: PASS";
const FAIL: &str = "exactly-once check: FAIL";
const KINDS: [&str; 4] = ["rendezvous", "buffered", "conflated", "unlimited"];

fn start(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kcoro"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the kcoro binary")
}

/// Waits for `child`, killing it if it runs far past its `--seconds`.
fn finish(mut child: Child, what: &str) -> (Output, String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what}: still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("wait_with_output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Small sizes and two runtime threads, so that many runs can share the machine.
fn small(seconds: &str) -> Vec<&str> {
    let mut v = vec!["demo", "--seconds", seconds, "--producers", "2", "--workers", "3"];
    v.extend(["--capacity", "64", "--payload", "64", "--runtime-workers", "2"]);
    v
}

#[test]
fn demo_passes_with_progress_on_stderr_only() {
    let (out, stdout, stderr) = finish(start(&small("1")), "demo");
    assert!(out.status.success(), "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    assert!(stdout.contains(PASS), "stdout:\n{stdout}");
    assert!(stdout.contains("demo.stage1") && stdout.contains("demo.stage2"), "stdout:\n{stdout}");
    // stderr is a pipe here: plain progress lines (one per second), none on stdout.
    assert!(stderr.contains("GB/s") && !stderr.contains('\r'), "stderr:\n{stderr}");
    assert!(!stdout.contains("queued"), "progress leaked to stdout:\n{stdout}");
}

#[test]
fn every_stage_combination_passes() {
    let runs: Vec<_> = KINDS
        .iter()
        .flat_map(|a| KINDS.iter().map(move |b| (*a, *b)))
        .map(|(a, b)| {
            let mut args = small("0.2");
            args.extend(["--stage1", a, "--stage2", b]);
            ((a, b), start(&args))
        })
        .collect();
    for ((a, b), child) in runs {
        let (out, stdout, stderr) = finish(child, &format!("{a} -> {b}"));
        assert!(
            out.status.success() && stdout.contains(PASS),
            "{a} -> {b}: status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        );
    }
}

#[test]
fn injected_faults_fail_the_check() {
    let runs: Vec<_> = ["lose", "duplicate"]
        .into_iter()
        .flat_map(|f| ["rendezvous", "conflated"].map(move |k| (f, k)))
        .map(|(f, k)| {
            let mut args = small("0.2");
            args.extend(["--inject-fault", f, "--stage2", k]);
            ((f, k), start(&args))
        })
        .collect();
    for ((f, k), child) in runs {
        let (out, stdout, stderr) = finish(child, f);
        assert_eq!(out.status.code(), Some(1), "{f}/{k}: stdout:\n{stdout}\nstderr:\n{stderr}");
        assert!(stdout.contains(FAIL), "{f}/{k}: stdout:\n{stdout}");
    }
}

#[test]
fn bad_flags_exit_2_with_usage() {
    for args in [
        &["demo", "--producers", "0"][..],
        &["demo", "--stage1", "fifo"],
        &["demo", "--seconds"],
        &["demo", "--frobnicate", "1"],
        &["frob"],
    ] {
        let (out, stdout, stderr) = finish(start(args), "bad flags");
        assert_eq!(out.status.code(), Some(2), "{args:?}: stderr:\n{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains("try '--help'"),
            "{args:?}: stderr:\n{stderr}"
        );
        assert!(stdout.is_empty(), "{args:?}: stdout:\n{stdout}");
    }
    let (out, stdout, _) = finish(start(&["demo", "--help"]), "help");
    assert!(out.status.success() && stdout.contains("--stage1 <STAGE1>") && stdout.contains("Examples:"));
}
