//! Waiting for SIGINT or SIGTERM in a long-running command (`kcoro ipc serve`, `kcoro
//! proxy`), so that it can clean up (remove its socket file, drain its connections) instead
//! of dying where it stands; and for SIGHUP, `kcoro proxy`'s reload.
//!
//! [`Interrupts::block`] blocks both signals in the calling thread *before* any other
//! thread starts, so every thread inherits the mask and the signals stay pending for
//! [`Interrupts::wait`], which takes them synchronously (`sigtimedwait`): no handler runs
//! on an arbitrary thread, nothing async-signal-unsafe can happen.

use std::time::{Duration, Instant};

/// The signals a command stops on, blocked in this thread (and the threads it starts).
pub struct Interrupts {
    set: libc::sigset_t,
}

impl Interrupts {
    /// Blocks SIGINT and SIGTERM in the calling thread. Call it before starting threads.
    pub fn block() -> std::io::Result<Interrupts> {
        Self::block_these(&[libc::SIGINT, libc::SIGTERM])
    }

    /// Blocks SIGINT, SIGTERM and SIGHUP (a reload) in the calling thread.
    pub fn block_with_hangup() -> std::io::Result<Interrupts> {
        Self::block_these(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
    }

    fn block_these(signals: &[libc::c_int]) -> std::io::Result<Interrupts> {
        // SAFETY: a zeroed sigset_t is valid storage; sigemptyset initialises it.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t owned here; the signal numbers are valid.
        let ok = unsafe { libc::sigemptyset(&mut set) == 0 }
            // SAFETY: as above; each number is a valid signal.
            && signals.iter().all(|&sig| unsafe { libc::sigaddset(&mut set, sig) } == 0);
        if !ok {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `set` is initialised; the old mask is not wanted (null).
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(Interrupts { set })
    }

    /// Waits until one of the signals arrives (its name) or `limit` passes (`None`).
    pub fn wait(&self, limit: Option<Duration>) -> Option<&'static str> {
        let deadline = limit.map(|d| Instant::now() + d);
        loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return None;
            }
            // At most a day per call: `timespec` from any Duration, no overflow.
            let step = left.unwrap_or(Duration::from_secs(86_400)).min(Duration::from_secs(86_400));
            let ts =
                libc::timespec { tv_sec: step.as_secs() as libc::time_t, tv_nsec: step.subsec_nanos() as _ };
            // SAFETY: `self.set` is initialised and blocked in this thread; a null info
            // pointer is allowed; `ts` is a valid timespec.
            let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
            match sig {
                libc::SIGINT => return Some("SIGINT"),
                libc::SIGTERM => return Some("SIGTERM"),
                libc::SIGHUP => return Some("SIGHUP"),
                _ => {} // timed out (EAGAIN) or interrupted (EINTR): look at the clock again
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocked_signal_is_taken_by_wait_not_delivered() {
        // On a thread of its own: the mask is per thread, and the test harness's threads
        // do not inherit this one.
        std::thread::spawn(|| {
            let ints = Interrupts::block().unwrap();
            assert_eq!(ints.wait(Some(Duration::from_millis(10))), None);
            // SAFETY: raises SIGTERM at this thread, where it is blocked: it stays pending
            // (the default action, ending the process, never runs).
            assert_eq!(unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGTERM) }, 0);
            assert_eq!(ints.wait(Some(Duration::from_secs(5))), Some("SIGTERM"));
        })
        .join()
        .unwrap();
    }
}
