//! Stacks: guard pages catch overflow (reported, then abort), spawning fails cleanly when
//! stacks run out, and guard pages do not cost a mapping each.
//!
//! What crashes the process, caps its address space or counts its mappings runs in a child
//! process of its own (this test binary, re-executed with that one test selected).

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use kcoro::{Error, JoinError, Runtime, StackError};

/// Set in the child process that is meant to overflow.
const CHILD_ENV: &str = "KCORO_TEST_OVERFLOW_CHILD";

/// Runs the test `name` of this binary alone in a child process, with `env` set so the
/// child knows it is the child, and `RUST_BACKTRACE` set to `backtrace` (else inherited).
fn run_child(name: &str, env: &str, backtrace: Option<&str>) -> std::process::Output {
    let mut cmd = common::this_test_alone(module_path!(), name);
    cmd.env(env, "1");
    if let Some(b) = backtrace {
        cmd.env("RUST_BACKTRACE", b);
    }
    cmd.output().unwrap()
}

#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = [depth as u8; 512];
    if depth == u64::MAX {
        return 0;
    }
    std::hint::black_box(&pad);
    recurse(depth + 1) + u64::from(std::hint::black_box(pad[7]))
}

#[test]
fn overflow_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return; // only meaningful as the child of `stack_overflow_is_reported_then_aborts`
    }
    let rt = Runtime::builder().workers(1).stack_size(16 << 10).build().unwrap();
    rt.block_on(|| {
        let opts = kcoro::SpawnOptions::new().name("deep");
        kcoro::spawn_with(opts, || recurse(0)).unwrap().join().ok();
    });
    unreachable!("the overflow must abort the process");
}

/// The report does not depend on the backtrace setting: the handler runs on the signal
/// stack and never consults the panic machinery.
#[test]
fn stack_overflow_is_reported_then_aborts() {
    // The 16 KiB asked for is rounded up to whole pages (64 KiB where pages are 64 KiB).
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
    let want = format!(" (deep) overflowed its {} KiB stack", (16usize << 10).next_multiple_of(page) >> 10);
    for backtrace in ["0", "1", "full"] {
        let out = run_child("overflow_child", CHILD_ENV, Some(backtrace));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "child must die (RUST_BACKTRACE={backtrace}): {stderr}");
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(libc::SIGABRT), "aborted, not segfaulted: {stderr}");
        }
        let re_ok = stderr.lines().any(|l| l.starts_with("kcoro: coroutine ") && l.ends_with(&want));
        assert!(re_ok, "overflow report missing (RUST_BACKTRACE={backtrace}); stderr was:\n{stderr}");
    }
}

#[test]
fn spawn_fails_cleanly_when_the_stack_pool_cannot_grow() {
    let rt = Runtime::builder().workers(1).max_stacks(4).build().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let r2 = Arc::clone(&release);
    let (err, via_join, after) = rt.block_on(move || {
        // The main coroutine holds one stack; three more fill the pool.
        let holders: Vec<_> = (0..3)
            .map(|_| {
                let r = Arc::clone(&r2);
                kcoro::spawn(move || {
                    while !r.load(SeqCst) {
                        kcoro::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        let err = kcoro::try_spawn(|| ()).unwrap_err();
        let via_join = kcoro::spawn(|| ()).join().unwrap_err();
        r2.store(true, SeqCst);
        for h in holders {
            h.join().unwrap();
        }
        // Freed stacks are reused: spawning works again.
        let after = kcoro::spawn(|| 5).join().unwrap();
        (err, via_join, after)
    });
    assert!(matches!(err, Error::Stack(StackError::Exhausted { max: 4 })), "{err:?}");
    assert!(err.to_string().contains("stack pool exhausted"));
    assert!(matches!(via_join, JoinError::Spawn(Error::Stack(StackError::Exhausted { .. }))));
    assert_eq!(after, 5);
    assert_eq!(rt.stats().stacks_allocated, 4);
}

fn map_count() -> usize {
    std::fs::read_to_string("/proc/self/maps").map(|s| s.lines().count()).unwrap_or(0)
}

/// Set in the child process that counts its own mappings.
const MAPS_CHILD_ENV: &str = "KCORO_TEST_MAPS_CHILD";
/// What that child prints when it has counted (and checked) the mappings.
const MAPS_CHECKED: &str = "MAPPINGS ADDED BY THE STACKS:";
/// What that child prints when guard pages are not installed with `madvise` here.
const NO_MADVISE_GUARDS: &str =
    "note: MADV_GUARD_INSTALL unavailable (kernel < 6.13) or ignored; skipping the no-cap check";

/// Counts the process's mappings, so the count runs in a child process of its own (this
/// test again): in this one the tests running beside it map and unmap thread stacks,
/// runtimes and regions while it counts.
#[test]
fn guard_pages_do_not_split_mappings() {
    if std::env::var_os(MAPS_CHILD_ENV).is_none() {
        let out = run_child("guard_pages_do_not_split_mappings", MAPS_CHILD_ENV, None);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the mapping count failed:\n{stdout}\n{stderr}");
        if stdout.contains(NO_MADVISE_GUARDS) {
            eprintln!("{NO_MADVISE_GUARDS}");
            return;
        }
        assert!(stdout.contains(MAPS_CHECKED), "the child did not count:\n{stdout}\n{stderr}");
        return;
    }
    // 40k parked coroutines: past the ~32k that mprotect guards allow under the default
    // vm.max_map_count. Only meaningful where MADV_GUARD_INSTALL exists (Linux 6.13+).
    const N: usize = 40_000;
    let rt = Runtime::builder().workers(2).stack_size(16 << 10).build().unwrap();
    rt.block_on(|| kcoro::spawn(|| ()).join().unwrap());
    if kcoro::guard_mode() != Some(kcoro::GuardMode::Madvise) {
        println!("{NO_MADVISE_GUARDS}");
        return;
    }
    let before = map_count();
    let parked = Arc::new(AtomicUsize::new(0));
    let go = Arc::new(AtomicBool::new(false));
    let (p2, g2) = (Arc::clone(&parked), Arc::clone(&go));
    let maps_during = rt.block_on(move || {
        let hs: Vec<_> = (0..N)
            .map(|_| {
                let (p, g) = (Arc::clone(&p2), Arc::clone(&g2));
                kcoro::spawn(move || {
                    p.fetch_add(1, SeqCst);
                    while !g.load(SeqCst) {
                        kcoro::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        while p2.load(SeqCst) < N {
            kcoro::sleep(Duration::from_millis(1));
        }
        let maps = map_count();
        g2.store(true, SeqCst);
        for h in hs {
            h.join().unwrap();
        }
        maps
    });
    assert_eq!(parked.load(SeqCst), N);
    let added = maps_during.saturating_sub(before);
    assert!(added < 200, "{N} stacks added {added} mappings; guard pages must not split them");
    println!("{MAPS_CHECKED} {added}");
}

/// Set in the child process whose address space is capped.
const NOMEM_CHILD_ENV: &str = "KCORO_TEST_NOMEM_CHILD";
/// What that child prints when the address-space cap did not take.
const RLIMIT_IGNORED: &str = "RLIMIT_AS NOT ENFORCED";

fn vm_size_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[test]
fn address_space_exhaustion_child() {
    if std::env::var_os(NOMEM_CHILD_ENV).is_none() {
        return; // only meaningful as the child of `spawn_fails_cleanly_when_memory_runs_out`
    }
    let rt = Runtime::builder().workers(1).build().unwrap();
    rt.block_on(|| kcoro::spawn(|| ()).join().unwrap()); // threads and arenas exist now
    let cap = vm_size_bytes() + (256 << 20);
    let limit = libc::rlimit { rlim_cur: cap, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) }, 0);
    // qemu-user accepts RLIMIT_AS and ignores it (the cap would bind the emulator's own
    // allocations); the kernel then still reports the old limit. Say so, rather than
    // spawning until the loop's own bound.
    let mut now = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscall writing into a local rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut now) }, 0);
    if now.rlim_cur != cap {
        println!("{RLIMIT_IGNORED}");
        return;
    }
    let release = Arc::new(AtomicBool::new(false));
    let r2 = Arc::clone(&release);
    let (spawned, err) = rt.block_on(move || {
        let mut held = Vec::with_capacity(1 << 16);
        let err = loop {
            let r = Arc::clone(&r2);
            match kcoro::try_spawn(move || {
                while !r.load(SeqCst) {
                    kcoro::park::park();
                }
            }) {
                Ok(h) => held.push(h),
                Err(e) => break e,
            }
            if held.len() == 1 << 16 {
                panic!("the address-space cap never bit");
            }
        };
        let n = held.len();
        r2.store(true, SeqCst);
        drop(held); // detached; shutdown unwinds whatever is still parked
        (n, err.to_string())
    });
    println!("SPAWNED {spawned} ERR {err}");
}

#[test]
fn spawn_fails_cleanly_when_memory_runs_out() {
    let out = run_child("address_space_exhaustion_child", NOMEM_CHILD_ENV, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child must survive running out of memory:\n{stdout}\n{stderr}");
    if stdout.contains(RLIMIT_IGNORED) {
        eprintln!("note: RLIMIT_AS is not enforced here (an emulator); skipping the out-of-memory check");
        return;
    }
    // The test harness prints the test's name on the same line, before the report.
    let line = stdout
        .lines()
        .find_map(|l| l.find("SPAWNED ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no report:\n{stdout}"));
    let spawned: usize = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(spawned > 100, "some coroutines fit before the cap: {line}");
    assert!(line.contains("cannot map"), "a clear mapping error: {line}");
}
