//! Panics stay contained whatever the environment: with `RUST_BACKTRACE=1` or `full`, the
//! panic hook (std's default, or the program's) runs on the worker's stack, so a panic on
//! a small coroutine stack still surfaces where its API says, and the hook still prints
//! what it prints on a thread.
//!
//! Each scenario runs in a child process (this test binary, re-executed with one test
//! selected), so an abort fails the test instead of killing the runner.

use crate::common;

use std::backtrace::{Backtrace, BacktraceStatus};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::process::Output;
use std::time::Duration;

use kcoro::actor::{self, Actor, ActorError, ActorOpts, Flow};
use kcoro::chan::{ChanError, Kind};
use kcoro::{JoinError, Runtime, SpawnOptions};

/// Names the scenario a child process runs.
const CHILD_ENV: &str = "KCORO_TEST_PANIC_CHILD";
/// Printed by a child scenario that reached its end.
const DONE: &str = "scenario done:";

const SMALL: usize = 16 << 10;

fn is_child(name: &str) -> bool {
    std::env::var(CHILD_ENV).is_ok_and(|v| v == name)
}

fn done(name: &str) {
    println!("{DONE} {name}");
}

fn message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// Panics with `msg`; typed `()` so closures calling it are ordinary children.
fn boom(msg: &str) {
    panic!("{msg}")
}

fn small_runtime() -> Runtime {
    Runtime::builder().workers(1).stack_size(SMALL).build().unwrap()
}

fn spawn_child(name: &str, backtrace: &str) -> std::process::Child {
    common::this_test_alone(module_path!(), name)
        .env(CHILD_ENV, name)
        .env("RUST_BACKTRACE", backtrace)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn describe(name: &str, backtrace: &str, out: &Output) -> String {
    format!(
        "{name} with RUST_BACKTRACE={backtrace}: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every scenario below, each under `RUST_BACKTRACE=1` and `full`, in parallel children:
/// each must exit 0 having reached its end, and the panic hook must have printed the
/// panic and a backtrace that reaches into the coroutine.
#[test]
fn panics_surface_with_backtraces_enabled() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let scenarios = [
        ("coroutine_16k", "boom on 16 KiB"),
        ("coroutine_32k", "boom on 32 KiB"),
        ("coroutine_default_stack", "boom on the default stack"),
        ("scope_child", "child boom"),
        ("actor_handler", "actor boom"),
        ("producer", "producer boom"),
        ("sim_explore_body", "sim boom"),
        ("formatted_payload", "xxxxxxxx"),
        ("program_hook_before_start", "custom hook saw: hooked boom"),
        ("program_hook_after_start", "custom hook saw: late boom"),
        ("panic_inside_on_worker_stack", "deep boom"),
    ];
    let children: Vec<_> = scenarios
        .iter()
        .flat_map(|&(name, needle)| ["1", "full"].map(|bt| (name, needle, bt, spawn_child(name, bt))))
        .collect();
    for (name, needle, bt, child) in children {
        let out = child.wait_with_output().unwrap();
        let what = describe(name, bt, &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}");
        assert!(stdout.contains(&format!("{DONE} {name}")), "scenario did not finish: {what}");
        assert!(stderr.contains("panicked at") && stderr.contains(needle), "hook output missing: {what}");
        assert!(stderr.contains("stack backtrace:"), "no backtrace printed: {what}");
        // The backtrace walks from the worker's stack into the coroutine's frames.
        assert!(stderr.contains("rt_panic::"), "backtrace does not reach the panic site: {what}");
    }
}

/// `Backtrace::force_capture` on a 16 KiB coroutine returns, and the capture can be
/// symbolised on the worker's stack.
#[test]
fn backtrace_capture_on_a_small_stack() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    for bt in ["0", "1", "full"] {
        let out = spawn_child("capture_16k", bt).wait_with_output().unwrap();
        let what = describe("capture_16k", bt, &out);
        assert!(out.status.success(), "{what}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("scenario done: capture_16k"), "{what}");
    }
}

fn panic_on_stack(kib: usize, msg: &'static str) {
    let rt = small_runtime();
    let err = rt.block_on(move || {
        let opts = SpawnOptions::new().stack_size(kib << 10).name("p");
        kcoro::spawn_with(opts, move || -> u32 { panic!("{msg}") }).unwrap().join().unwrap_err()
    });
    let JoinError::Panicked(p) = err else { panic!("expected a panic, got {err:?}") };
    assert_eq!(message(&*p), msg);
}

#[test]
fn coroutine_16k() {
    if is_child("coroutine_16k") {
        panic_on_stack(16, "boom on 16 KiB");
        done("coroutine_16k");
    }
}

#[test]
fn coroutine_32k() {
    if is_child("coroutine_32k") {
        panic_on_stack(32, "boom on 32 KiB");
        done("coroutine_32k");
    }
}

#[test]
fn coroutine_default_stack() {
    if is_child("coroutine_default_stack") {
        let err =
            kcoro::run(|| kcoro::spawn(|| -> u8 { panic!("boom on the default stack") }).join().unwrap_err());
        assert!(matches!(err, JoinError::Panicked(_)), "{err:?}");
        done("coroutine_default_stack");
    }
}

#[test]
fn scope_child() {
    if is_child("scope_child") {
        let rt = small_runtime();
        let msg = rt.block_on(|| {
            let r = catch_unwind(AssertUnwindSafe(|| {
                kcoro::scope(|s| {
                    s.spawn(|| boom("child boom"));
                })
            }));
            message(&*r.expect_err("the scope must re-raise its child's panic"))
        });
        assert_eq!(msg, "child boom");
        done("scope_child");
    }
}

struct Doomed;

impl Actor for Doomed {
    type Msg = u32;
    fn handle(&mut self, _msg: u32) -> Flow {
        panic!("actor boom")
    }
}

#[test]
fn actor_handler() {
    if is_child("actor_handler") {
        let rt = small_runtime();
        let err = rt.block_on(|| {
            let a = actor::spawn(Doomed, ActorOpts::mailbox(4));
            a.tell(1).unwrap();
            a.join().unwrap_err()
        });
        assert!(matches!(&err, ActorError::Panicked(m) if m.contains("actor boom")), "{err:?}");
        done("actor_handler");
    }
}

#[test]
fn producer() {
    if is_child("producer") {
        let rt = small_runtime();
        let seen = rt.block_on(|| {
            let rx = kcoro::produce(Kind::Rendezvous, |tx| {
                tx.send(7u32).unwrap();
                boom("producer boom");
            });
            (rx.recv(), rx.recv())
        });
        assert_eq!(seen, (Ok(7), Err(ChanError::Closed)));
        done("producer");
    }
}

#[test]
fn sim_explore_body() {
    if is_child("sim_explore_body") {
        let failure = kcoro::sim::explore(0..3, |seed| {
            let h = kcoro::spawn(move || seed);
            assert_eq!(h.join().unwrap(), seed);
            panic!("sim boom");
        })
        .unwrap_err();
        assert_eq!(failure.seed, 0);
        assert!(failure.message.contains("sim boom"), "{failure:?}");
        done("sim_explore_body");
    }
}

#[test]
fn formatted_payload() {
    if is_child("formatted_payload") {
        let rt = small_runtime();
        let err = rt.block_on(|| {
            kcoro::spawn(|| {
                let big = "x".repeat(64 << 10);
                panic!("{big} {:?}", vec![1u64; 1000]);
            })
            .join()
            .unwrap_err()
        });
        let JoinError::Panicked(p) = err else { panic!("expected a panic") };
        assert!(message(&*p).starts_with("xxxxxxxx"));
        done("formatted_payload");
    }
}

/// A program hook that itself needs a deep stack: it symbolises a backtrace.
fn install_deep_hook() {
    std::panic::set_hook(Box::new(|info| {
        let trace = Backtrace::force_capture().to_string();
        let msg = message(info.payload());
        eprintln!("custom hook saw: {msg} at {}", info.location().map(|l| l.to_string()).unwrap_or_default());
        eprintln!("thread panicked at the hook's request\nstack backtrace:\n{trace}");
    }));
}

#[test]
fn program_hook_before_start() {
    if is_child("program_hook_before_start") {
        install_deep_hook();
        let rt = small_runtime();
        let err = rt.block_on(|| kcoro::spawn(|| boom("hooked boom")).join().unwrap_err());
        assert!(matches!(err, JoinError::Panicked(_)));
        done("program_hook_before_start");
    }
}

#[test]
fn program_hook_after_start() {
    if is_child("program_hook_after_start") {
        let rt = small_runtime();
        install_deep_hook();
        kcoro::coro::contain_panic_hook();
        let err = rt.block_on(|| kcoro::spawn(|| boom("late boom")).join().unwrap_err());
        assert!(matches!(err, JoinError::Panicked(_)));
        done("program_hook_after_start");
    }
}

#[test]
fn panic_inside_on_worker_stack() {
    if is_child("panic_inside_on_worker_stack") {
        let rt = small_runtime();
        let msg = rt.block_on(|| {
            let r = catch_unwind(|| kcoro::coro::on_worker_stack(|| panic!("deep boom")));
            // Back on the coroutine's own stack, which still works.
            kcoro::yield_now();
            message(&*r.unwrap_err())
        });
        assert_eq!(msg, "deep boom");
        done("panic_inside_on_worker_stack");
    }
}

#[test]
fn capture_16k() {
    if is_child("capture_16k") {
        let rt = small_runtime();
        let text = rt.block_on(|| {
            let bt = Backtrace::force_capture();
            assert_eq!(bt.status(), BacktraceStatus::Captured);
            kcoro::coro::on_worker_stack(|| bt.to_string())
        });
        assert!(text.contains("capture_16k"), "{text}");
        done("capture_16k");
    }
}

/// Suspending inside `on_worker_stack` is refused with a panic, not undefined behaviour:
/// a yield, and a park on the timer. The sleep is long so that it always parks: a short one
/// whose deadline has passed by the time it looks (a slow machine, qemu) returns at once
/// without suspending, and nothing would be refused.
#[test]
fn suspending_on_the_worker_stack_panics() {
    let rt = small_runtime();
    let msgs = rt.block_on(|| {
        let yielded = catch_unwind(|| kcoro::coro::on_worker_stack(kcoro::yield_now));
        let slept = catch_unwind(|| kcoro::coro::on_worker_stack(|| kcoro::sleep(Duration::from_secs(3600))));
        [message(&*yielded.unwrap_err()), message(&*slept.unwrap_err())]
    });
    for msg in msgs {
        assert!(msg.contains("tried to suspend inside on_worker_stack"), "{msg}");
    }
}

/// Where `with_stack` runs its closure: an address on the stack that runs it.
fn stack_address() -> usize {
    let here = std::hint::black_box(0u8);
    &here as *const u8 as usize
}

/// `with_stack` runs in place on a coroutine with that much stack left, on the worker's
/// stack on a small one, and in place as there refuses to suspend.
#[test]
fn with_stack_runs_in_place_only_with_room() {
    let rt = small_runtime();
    let (near, far, refused) = rt.block_on(|| {
        let big = || kcoro::SpawnOptions::new().stack_size(4 << 20);
        let distance = || stack_address().abs_diff(kcoro::coro::with_stack(1 << 20, stack_address));
        let near = kcoro::spawn_with(big(), distance).unwrap().join().unwrap();
        let far = kcoro::spawn_with(kcoro::SpawnOptions::new(), distance).unwrap().join().unwrap();
        let refused = kcoro::spawn_with(big(), || {
            catch_unwind(|| kcoro::coro::with_stack(1 << 20, kcoro::yield_now)).map_err(|p| message(&*p))
        });
        (near, far, refused.unwrap().join().unwrap())
    });
    assert!(near < SMALL, "in place, on the 4 MiB coroutine's stack: {near} bytes away");
    assert!(far >= SMALL, "on the worker's stack, off the {SMALL}-byte coroutine's: {far} bytes away");
    let msg = refused.expect_err("a yield inside with_stack must be refused");
    assert!(msg.contains("tried to suspend inside on_worker_stack or with_stack"), "{msg}");
}

/// Outside a coroutine `on_worker_stack` just calls the closure.
#[test]
fn on_worker_stack_outside_a_coroutine() {
    assert_eq!(kcoro::coro::on_worker_stack(|| 6 * 7), 42);
}
