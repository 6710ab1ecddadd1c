//! A plugin call made from a coroutine whose plugin panics surfaces as the status the plugin
//! reports, with backtraces on, on the smallest stack kcoro allows.
//!
//! A Rust plugin is its own copy of std with its own panic hook: when it panics inside
//! `handle`, that hook prints (and with `RUST_BACKTRACE` set, symbolises a backtrace) on
//! whatever stack called `handle`. The host runs every plugin function with at least
//! `PLUGIN_STACK`: on the worker's stack from a 16 KiB coroutine, which this cannot
//! overflow, and in place on a coroutine with a thread-sized stack. Each case runs in a
//! child process: an overflow aborts the child and fails the test instead of killing the
//! runner.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kcoro::SpawnOptions;
use kcoro_host::{HighLevelRequest, NrStatus, Plugin};

const CHILD_ENV: &str = "KCORO_HOST_PANIC_CHILD";
const LIB_ENV: &str = "KCORO_HOST_PANIC_LIB";
const DONE: &str = "scenario done:";
/// The smallest coroutine stack kcoro allows.
const SMALL: usize = 16 << 10;
/// A thread-sized coroutine stack: plugin functions run in place on it.
const THREAD_SIZED: usize = kcoro_host::PLUGIN_STACK * 4;

/// Runs the test `name` of this binary as a child with `RUST_BACKTRACE=backtrace`.
fn run_child(name: &str, lib: &Path, backtrace: &str) -> std::process::Output {
    Command::new(std::env::current_exe().expect("test exe"))
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .env(LIB_ENV, lib)
        .env("RUST_BACKTRACE", backtrace)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn child")
}

/// The child's part: on a coroutine with `stack` bytes of stack, calls `entry` (which
/// panics in the plugin) and checks the reply's status.
fn child(name: &str, entry: &'static str, expected: NrStatus, stack: usize) {
    let lib = std::env::var(LIB_ENV).expect("library path");
    let plugin = Plugin::load(&lib).expect("load");
    let status = kcoro::run(move || {
        let opts = SpawnOptions::new().stack_size(stack).name("plugin-caller");
        kcoro::spawn_with(opts, move || {
            let req = HighLevelRequest::new("GET", "/").body(b"x".to_vec());
            plugin.call(entry, &req).timeout(Duration::from_secs(10)).wait().map(|r| r.status)
        })
        .expect("spawn")
        .join()
        .expect("the coroutine must not panic")
    });
    assert_eq!(status.expect("the call must complete"), expected);
    println!("{DONE} {name}");
}

fn check(name: &str, lib: &Path, hook_text: &str) {
    for backtrace in ["1", "full"] {
        let out = run_child(name, lib, backtrace);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let what = format!("{name}, RUST_BACKTRACE={backtrace}: {:?}\n{stdout}\n{stderr}", out.status);
        assert!(out.status.success() && stdout.contains(DONE), "child failed: {what}");
        // The plugin's own hook ran (with a backtrace), so the stack was really exercised.
        assert!(stderr.contains(hook_text) && stderr.contains("stack backtrace"), "no hook output: {what}");
    }
}

#[test]
fn kcoro_plugin_panicking_under_a_small_coroutine() {
    if std::env::var(CHILD_ENV).is_ok_and(|v| v == "kcoro_plugin_panicking_under_a_small_coroutine") {
        return child("kcoro_plugin_panicking_under_a_small_coroutine", "panic", NrStatus::Err, SMALL);
    }
    let lib = common::rust_echo();
    check("kcoro_plugin_panicking_under_a_small_coroutine", &lib, "panicked at");
}

#[test]
fn nylon_plugin_panicking_under_a_small_coroutine() {
    if std::env::var(CHILD_ENV).is_ok_and(|v| v == "nylon_plugin_panicking_under_a_small_coroutine") {
        return child("nylon_plugin_panicking_under_a_small_coroutine", "panic", NrStatus::Panic, SMALL);
    }
    let lib = common::cargo_lib("kcoro-test-nylon02");
    check("nylon_plugin_panicking_under_a_small_coroutine", &lib, "panicked at");
}

#[test]
fn kcoro_plugin_panicking_in_place_on_a_thread_sized_coroutine() {
    let name = "kcoro_plugin_panicking_in_place_on_a_thread_sized_coroutine";
    if std::env::var(CHILD_ENV).is_ok_and(|v| v == name) {
        return child(name, "panic", NrStatus::Err, THREAD_SIZED);
    }
    check(name, &common::rust_echo(), "panicked at");
}

#[test]
fn nylon_plugin_panicking_in_place_on_a_thread_sized_coroutine() {
    let name = "nylon_plugin_panicking_in_place_on_a_thread_sized_coroutine";
    if std::env::var(CHILD_ENV).is_ok_and(|v| v == name) {
        return child(name, "panic", NrStatus::Panic, THREAD_SIZED);
    }
    check(name, &common::cargo_lib("kcoro-test-nylon02"), "panicked at");
}
