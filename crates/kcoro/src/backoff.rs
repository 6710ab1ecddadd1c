//! Waiting for another thread to finish a step it has begun (release the channel lock,
//! stamp a ring position it claimed, end an inspection of a task's registry slot) when
//! nothing will wake the waiter: spin briefly, then
//! yield the CPU a few times, then sleep, longer each time up to a cap.
//!
//! Why it ends in sleep: a wait that outlasts the spin and the yields is almost always a
//! wait for a thread the kernel preempted mid-step. A waiter that keeps calling
//! `sched_yield` stays runnable with little CPU time charged, so the kernel keeps picking
//! it over the preempted thread, and each such wait lasted a whole scheduling period.
//! On two busy cores a channel whose lock a snapshot loop held much of the time fell from
//! over 10 000 messages a second to about 100 that way. A sleeping waiter leaves the run
//! queue, and the thread it waits for runs next.

use std::time::Duration;

/// Yields after the spin, before the first sleep: a holder that is running on another
/// CPU, or runnable on this one, usually finishes within them.
const YIELDS: u32 = 8;
/// The first sleep (the kernel's timer slack, 50 µs by default, makes it about that).
const FIRST_SLEEP: Duration = Duration::from_micros(50);
/// The longest sleep: bounds the delay after the awaited step is done.
const LONGEST_SLEEP: Duration = Duration::from_millis(1);

/// What one turn of a wait does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// This many spin hints.
    Spin(u32),
    /// `sched_yield`.
    Yield,
    Sleep(Duration),
}

/// One wait's progress through its steps.
pub(crate) struct Backoff {
    spin_rounds: u32,
    turn: u32,
}

impl Backoff {
    /// A wait that spins `spin_rounds` rounds (doubling the hints each round) first.
    pub(crate) fn new(spin_rounds: u32) -> Self {
        Backoff { spin_rounds, turn: 0 }
    }

    /// The next step, and advances.
    pub(crate) fn next_step(&mut self) -> Step {
        let turn = self.turn;
        self.turn = self.turn.saturating_add(1);
        if turn < self.spin_rounds {
            return Step::Spin(1 << turn.min(16));
        }
        let after_spin = turn - self.spin_rounds;
        if after_spin < YIELDS {
            return Step::Yield;
        }
        let doublings = (after_spin - YIELDS).min(16);
        Step::Sleep(FIRST_SLEEP.saturating_mul(1 << doublings).min(LONGEST_SLEEP))
    }

    /// Takes the next step.
    #[inline]
    pub(crate) fn wait(&mut self) {
        match self.next_step() {
            Step::Spin(hints) => {
                for _ in 0..hints {
                    crate::loom::spin_wait();
                }
            }
            other => give_way(other),
        }
    }
}

/// The steps that leave the CPU, kept out of the inlined spin.
#[cold]
#[inline(never)]
fn give_way(step: Step) {
    #[cfg(loom)]
    {
        let _ = step;
        loom::thread::yield_now();
    }
    #[cfg(not(loom))]
    match step {
        Step::Sleep(d) => std::thread::sleep(d),
        Step::Spin(_) | Step::Yield => std::thread::yield_now(),
    }
}

/// CPU time the calling thread has used: what tests of a long wait compare with its
/// length.
#[cfg(all(test, not(loom)))]
pub(crate) fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux has.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn spins_doubling_then_yields_then_sleeps_longer_up_to_the_cap() {
        let mut b = Backoff::new(3);
        let steps: Vec<Step> = std::iter::repeat_with(|| b.next_step()).take(40).collect();
        assert_eq!(&steps[..3], &[Step::Spin(1), Step::Spin(2), Step::Spin(4)]);
        assert_eq!(&steps[3..3 + YIELDS as usize], &[Step::Yield; YIELDS as usize]);
        let sleeps: Vec<Duration> = steps[3 + YIELDS as usize..]
            .iter()
            .map(|s| match s {
                Step::Sleep(d) => *d,
                other => panic!("after the yields only sleeps, got {other:?}"),
            })
            .collect();
        assert_eq!(sleeps[0], FIRST_SLEEP);
        assert_eq!(sleeps[1], FIRST_SLEEP * 2);
        assert!(sleeps.windows(2).all(|w| w[0] <= w[1]), "sleeps never shorten: {sleeps:?}");
        assert_eq!(*sleeps.last().unwrap(), LONGEST_SLEEP);
    }

    #[test]
    fn a_wait_that_never_ends_keeps_sleeping_at_the_cap() {
        let mut b = Backoff::new(7);
        b.turn = u32::MAX - 1;
        assert_eq!(b.next_step(), Step::Sleep(LONGEST_SLEEP));
        assert_eq!(b.next_step(), Step::Sleep(LONGEST_SLEEP), "the turn count saturates");
    }
}
