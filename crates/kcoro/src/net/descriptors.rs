//! The process's descriptor limit and table, sized for a server before its busy hour.
//!
//! Linux keeps a process's open descriptors in a table it grows by doubling when a new
//! descriptor does not fit, and never shrinks. In a process with more than one thread
//! each growth waits for an RCU grace period on the thread that opened the descriptor:
//! 8–16 ms each on the 2-vCPU VM this was measured on. A kcoro worker that accepts a burst
//! of a thousand connections (two descriptors each with a backend) passes 256, 512, 1024
//! and 2048 and stalls for every doubling, with every coroutine it runs; the same burst
//! on a single-threaded server pays nothing. Growing the table once, at start, takes the
//! wait out of the burst (and costs nothing before the runtime's threads exist).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Raises the soft `RLIMIT_NOFILE` to `want` (at most the hard limit) if it is lower;
/// returns the soft limit in force after. A server that will hold `want` descriptors calls
/// it at start, as Go's runtime does for every program (to the hard limit).
pub fn raise_descriptor_limit(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a live, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let raised = libc::rlimit { rlim_cur: want.min(lim.rlim_max), rlim_max: lim.rlim_max };
    // SAFETY: `raised` is a valid `rlimit` whose soft value does not exceed its hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(raised.rlim_cur)
}

/// Grows this process's descriptor table to hold `n` descriptors (at most the soft
/// `RLIMIT_NOFILE`), so that opening them later never waits for the kernel to grow it
/// (see the module's notes); returns the number of slots reserved. Call it before
/// building the runtime where possible: in a single-threaded process the growth is free,
/// later it waits one grace period, once. Opens and closes one descriptor; the table's
/// memory is 8 bytes a slot and stays with the process.
pub fn reserve_descriptors(n: usize) -> io::Result<usize> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a live, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n.min(usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)).min(libc::c_int::MAX as usize);
    if n == 0 {
        return Ok(0);
    }
    let probe = File::open("/dev/null")?;
    // The lowest free descriptor at or above n - 1: the table grows to hold it.
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor `probe` owns; the new one is ours to close.
    let high = unsafe { libc::fcntl(probe.as_raw_fd(), libc::F_DUPFD_CLOEXEC, (n - 1) as libc::c_int) };
    if high < 0 {
        let e = io::Error::last_os_error();
        // Every slot from n - 1 to the limit in use: the table already holds n.
        return if e.raw_os_error() == Some(libc::EMFILE) { Ok(n) } else { Err(e) };
    }
    // SAFETY: `high` was just opened by fcntl above and nothing else holds it.
    drop(unsafe { OwnedFd::from_raw_fd(high) });
    Ok(n)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// The table's size, from `FDSize` in /proc/self/status.
    fn table_size() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let line = status.lines().find(|l| l.starts_with("FDSize:")).expect("an FDSize line");
        line["FDSize:".len()..].trim().parse().expect("a number")
    }

    fn soft_limit() -> u64 {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a live, writable `rlimit`.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        lim.rlim_cur
    }

    #[test]
    fn the_table_grows_to_the_reservation_and_no_descriptor_is_left_open() {
        let soft = raise_descriptor_limit(8192).expect("the limit");
        assert!(soft >= soft_limit().min(8192), "the limit in force is returned");
        let want = (soft as usize).min(8192);
        assert!(want > 64, "a soft limit of {want} leaves nothing to test");
        let before = table_size();
        let got = reserve_descriptors(want).expect("reserved");
        assert_eq!(got, want);
        assert!(table_size() >= want, "FDSize {} (was {before}) after reserving {want}", table_size());
        // The descriptor that grew it is closed again.
        // SAFETY: F_GETFD only asks about the descriptor number.
        let open = unsafe { libc::fcntl((want - 1) as libc::c_int, libc::F_GETFD) };
        assert_eq!(open, -1, "descriptor {} is left open", want - 1);
    }

    #[test]
    fn a_reservation_past_the_limit_stops_at_the_limit() {
        assert_eq!(reserve_descriptors(0).expect("nothing"), 0);
        let soft = soft_limit() as usize;
        if soft > 1 << 20 {
            // A table of that many slots is more memory than a test should take.
            eprintln!("skipping the past-the-limit reservation: the soft limit is {soft}");
            return;
        }
        assert_eq!(reserve_descriptors(usize::MAX).expect("reserved"), soft);
        assert!(table_size() >= soft);
    }
}
