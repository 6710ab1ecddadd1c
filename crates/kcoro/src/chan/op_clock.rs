//! The coarse time that stamps channel operations (`first_op_ns`, `last_op_ns`).
//!
//! Every channel operation stamps its time, and reading `CLOCK_MONOTONIC_COARSE` through
//! the vDSO costs about as much as a whole lock-free buffered operation: 9.5 ns on the
//! 2-vCPU VMs we measure on, where an SPSC message took 20 ns with the read on each side
//! and 10 ns without. So while channels are busy, one thread reads the clock once per
//! tick and publishes it, and an operation reads the published value: one load of a line
//! that changes once per tick.
//!
//! # Protocol
//! 1. *Cold*: `now` is 0 and no ticker exists: a read takes the clock itself. The
//!    [`WARM_READS`]th such read starts the ticker (a program that stamps a handful of
//!    operations never gets a thread).
//! 2. *Ticking*: the ticker stores the clock in `now` (never 0), sleeps one tick (the
//!    clock's own resolution, 1–10 ms) and looks whether anyone read `now` meanwhile
//!    (`read`: a reader sets it only when it is clear, so the line stays shared).
//! 3. *Exit*: after [`IDLE`] without a read, the ticker zeroes the count of cold reads,
//!    stores 0 in `now`, says `NONE`, and ends: no thread stays behind an idle program. A
//!    reader that still got the old value got one at most a tick old; a reader that sees
//!    0 takes the clock, and the [`WARM_READS`]th such read starts a new ticker, so a
//!    channel used now and then never starts one.
//! 4. *Fork*: a forked child has no ticker; a `pthread_atfork` handler resets the
//!    process's clock to cold, so the child takes the clock until it starts its own.
//!
//! A stamp is therefore at most one tick, plus however late the ticker runs, behind the
//! coarse clock (itself one resolution step behind time); stamps never go backwards,
//! since the published value only grows.

// Under loom and Miri operations stamp a constant (see `now_ns`): no ticker there.
#![cfg_attr(any(miri, loom), allow(dead_code))]

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64};
use std::time::Duration;

/// Clock reads before the ticker starts.
const WARM_READS: u64 = 256;
/// How long the ticker ticks on without a read before it ends.
const IDLE: Duration = Duration::from_secs(1);

/// No ticker (yet, or again): readers take the clock and count.
const NONE: u8 = 0;
/// The ticker ticks (`now` set, or about to be, or about to be cleared as it ends).
const RUNNING: u8 = 1;
/// Starting the ticker failed: readers take the clock for good.
const FAILED: u8 = 2;

/// One published clock and its ticker. The process has one ([`now_ns`]); tests make their
/// own, with short ticks, so other tests' reads do not keep theirs busy.
struct OpClock {
    /// The published time in ns; 0 while no ticker publishes.
    now: AtomicU64,
    /// Someone read `now` since the ticker last looked.
    read: AtomicBool,
    state: AtomicU8,
    /// Clock reads while cold, counting up to [`WARM_READS`].
    cold_reads: AtomicU64,
    tick: Duration,
    idle: Duration,
}

static PROCESS: OpClock = OpClock::new(Duration::ZERO, IDLE);

/// The coarse time in ns for stamping an operation; never 0 (0 means "no operation
/// yet").
#[inline]
pub(crate) fn now_ns() -> u64 {
    #[cfg(any(miri, loom))]
    {
        1
    }
    #[cfg(not(any(miri, loom)))]
    {
        PROCESS.now_ns()
    }
}

/// `CLOCK_MONOTONIC_COARSE` in ns, never 0.
fn read_clock() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel
    // supports since 2.6.32. On failure `ts` stays zero and we report 1.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64).max(1)
}

/// The coarse clock's resolution, as a tick between 1 and 10 ms.
fn resolution() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: as in `read_clock`; on failure `ts` stays zero and the tick is 1 ms.
    unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    let ns = (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64);
    Duration::from_nanos(ns).clamp(Duration::from_millis(1), Duration::from_millis(10))
}

impl OpClock {
    /// A cold clock; `tick` zero means the coarse clock's resolution.
    const fn new(tick: Duration, idle: Duration) -> Self {
        OpClock {
            now: AtomicU64::new(0),
            read: AtomicBool::new(false),
            state: AtomicU8::new(NONE),
            cold_reads: AtomicU64::new(0),
            tick,
            idle,
        }
    }

    #[inline]
    fn now_ns(&'static self) -> u64 {
        let now = self.now.load(Relaxed);
        if now == 0 {
            return self.read_cold();
        }
        if !self.read.load(Relaxed) {
            self.read.store(true, Relaxed);
        }
        now
    }

    #[cold]
    #[inline(never)]
    fn read_cold(&'static self) -> u64 {
        let now = read_clock();
        // The [`WARM_READS`]th cold read since the last ticker ended (or ever) starts one;
        // one reader gets that count. RUNNING: about to publish, or ending (its reads
        // uncounted); FAILED: no ticker.
        if self.state.load(Acquire) == NONE && self.cold_reads.fetch_add(1, Relaxed) + 1 == WARM_READS {
            self.start();
        }
        now
    }

    /// Starts the ticker (one caller: the one whose read was the [`WARM_READS`]th).
    fn start(&'static self) {
        if std::ptr::eq(self, &PROCESS) {
            register_fork_handler();
        }
        self.state.store(RUNNING, Relaxed);
        let spawned = std::thread::Builder::new().name("kcoro-op-clock".into()).spawn(move || self.run());
        if let Err(e) = spawned {
            self.state.store(FAILED, Relaxed);
            eprintln!("kcoro: cannot start the channel clock's ticker ({e}); operations read the clock");
        }
    }

    /// The ticker's loop.
    fn run(&'static self) {
        let tick = if self.tick.is_zero() { resolution() } else { self.tick };
        let idle_ticks = (self.idle.as_nanos() / tick.as_nanos()).max(1);
        let mut idle = 0;
        loop {
            // Only grows: the clock is monotonic.
            self.now.store(read_clock(), Relaxed);
            std::thread::sleep(tick);
            if self.read.swap(false, Relaxed) {
                idle = 0;
                continue;
            }
            idle += 1;
            if idle < idle_ticks {
                continue;
            }
            // In this order: a reader that sees 0 and then NONE counts from 0. Nothing of
            // this clock is touched after NONE, when a reader may start the next ticker.
            self.cold_reads.store(0, Relaxed);
            self.now.store(0, Relaxed);
            self.state.store(NONE, Release);
            return;
        }
    }

    #[cfg(test)]
    fn state(&self) -> u8 {
        self.state.load(Acquire)
    }
}

/// Resets the process's clock to cold in a forked child, where the ticker does not exist.
fn register_fork_handler() {
    extern "C" fn in_child() {
        // Only atomic stores: async-signal-safe, as a fork child handler must be.
        PROCESS.now.store(0, Relaxed);
        PROCESS.read.store(false, Relaxed);
        PROCESS.cold_reads.store(0, Relaxed);
        PROCESS.state.store(NONE, Release);
    }
    // SAFETY: `in_child` is a plain function that stays valid for the process's life.
    let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    if rc != 0 {
        eprintln!("kcoro: cannot register the channel clock's fork handler ({rc})");
    }
}

#[cfg(all(test, not(any(miri, loom))))]
mod tests {
    use super::*;
    use std::time::Instant;

    fn clock(tick_ms: u64, idle_ms: u64) -> &'static OpClock {
        Box::leak(Box::new(OpClock::new(Duration::from_millis(tick_ms), Duration::from_millis(idle_ms))))
    }

    /// Waits (at most a minute, however loaded the machine) until `done`.
    fn until(what: &str, mut done: impl FnMut() -> bool) {
        let give_up = Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(Instant::now() < give_up, "still waiting: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn cold_reads_take_the_clock_until_the_ticker_starts() {
        let c = clock(1, 60_000);
        for _ in 0..WARM_READS - 1 {
            let before = read_clock();
            let t = c.now_ns();
            assert!(t >= before && t <= read_clock());
        }
        assert_eq!(c.state(), NONE, "no thread for a handful of reads");
        c.now_ns();
        assert_eq!(c.state(), RUNNING);
        until("the ticker publishes", || c.now.load(Relaxed) != 0);
    }

    #[test]
    fn the_published_time_moves_and_never_runs_ahead_of_the_clock() {
        let c = clock(1, 60_000);
        (0..WARM_READS).for_each(|_| {
            c.now_ns();
        });
        until("the ticker publishes", || c.now.load(Relaxed) != 0);
        let first = c.now_ns();
        let mut last = first;
        until("the published time moves", || {
            let t = c.now_ns();
            assert!(t >= last, "stamps never go backwards");
            assert!(t <= read_clock(), "published from the clock, never ahead of it");
            last = t;
            t > first
        });
    }

    #[test]
    fn an_unread_ticker_ends_and_busy_reads_start_another() {
        let c = clock(1, 5);
        (0..WARM_READS).for_each(|_| {
            c.now_ns();
        });
        // Started (RUNNING) by the last read; nothing reads it now.
        until("the unread ticker ends", || c.state() == NONE);
        assert_eq!(c.now.load(Relaxed), 0, "ended, it publishes nothing");
        for _ in 0..WARM_READS - 1 {
            let before = read_clock();
            assert!(c.now_ns() >= before, "a read without a ticker takes the clock");
        }
        assert_eq!(c.state(), NONE, "a channel used now and then does not start one");
        c.now_ns();
        assert_eq!(c.state(), RUNNING, "busy again, a ticker starts");
        // Read on while waiting, as a busy channel would, or a slow look could find it
        // already ended (5 ms unread); the reads then start another.
        until("a new ticker publishes", || {
            c.now_ns();
            c.now.load(Relaxed) != 0
        });
    }

    #[test]
    fn a_forked_child_starts_cold_and_stamps_from_the_clock() {
        (0..2 * WARM_READS).for_each(|_| {
            now_ns();
        });
        until("the process's ticker publishes", || PROCESS.now.load(Relaxed) != 0);
        // SAFETY: the child only reads atomics and the clock, then exits without
        // unwinding or running destructors.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let cold = PROCESS.now.load(Relaxed) == 0 && PROCESS.state.load(Relaxed) == NONE;
            let before = read_clock();
            let fresh = now_ns() >= before;
            // SAFETY: `_exit` ends the child at once, as a forked test child must.
            unsafe { libc::_exit(if cold && fresh { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is writable.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
    }
}
