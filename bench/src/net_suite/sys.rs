//! The operating-system calls the `net` suite needs: CPU affinity (to pin a server to one
//! core and its load generator to another), the open-file limit (a thousand connections
//! need a thousand descriptors on each side), a process's CPU time from `/proc` (alone or
//! with its children, for nginx's workers), signals to a process group, and Debian
//! packages for the programs the suite drives (`wrk`, HAProxy, nginx).
//!
//! The unsafe blocks are plain syscalls on values this module owns; the `pre_exec` hooks
//! run between `fork` and `exec`, where each makes one syscall on values built before the
//! fork and nothing else (no allocation, no lock).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The CPUs this process may run on, in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    let mut set = empty_set();
    // SAFETY: `set` is a live, writable `cpu_set_t` and we pass its exact size; pid 0
    // is the calling thread.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: every index is below `CPU_SETSIZE`, the number of bits in `set`.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// Restricts the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    set_affinity(&one_cpu(cpu)?)
}

/// Makes the process `cmd` starts run on `cpu` only (every thread it creates inherits it).
pub fn pin_command(cmd: &mut Command, cpu: usize) -> io::Result<()> {
    // Built here, before the fork: the hook below must not allocate.
    let set = one_cpu(cpu)?;
    // SAFETY: the hook runs in the forked child before `exec`; it makes a single
    // async-signal-safe syscall on `set`, which it owns by copy, and touches nothing else.
    unsafe {
        cmd.pre_exec(move || set_affinity(&set));
    }
    Ok(())
}

/// Raises the soft limit on open descriptors to the hard limit, for this process and the
/// children it starts afterwards.
pub fn raise_nofile_limit() -> io::Result<u64> {
    kcoro::net::raise_descriptor_limit(u64::MAX)
}

/// CPU time (user + system, all threads, living and exited) that process `pid` has used,
/// in nanoseconds, from `/proc/<pid>/stat` (clock-tick resolution, usually 10 ms).
pub fn process_cpu_ns(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| format!("cannot parse {path}: {stat:?}"))?;
    Ok(ticks.saturating_mul(1_000_000_000) / clock_ticks_per_sec())
}

/// CPU time, as [`process_cpu_ns`], of process `pid` and its living children (those
/// whose parent is `pid`): a server that forks its workers, such as nginx's master.
pub fn process_tree_cpu_ns(pid: u32) -> Result<u64, String> {
    let mut ticks = 0;
    let mut found = false;
    let dir = std::fs::read_dir("/proc").map_err(|e| format!("cannot list /proc: {e}"))?;
    for entry in dir.flatten() {
        let Some(name) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        // A process may end between the listing and the read: it is no longer ours to count.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((ppid, t)) = parse_ppid(&stat).zip(parse_cpu_ticks(&stat)) else { continue };
        if name == pid || ppid == pid {
            found |= name == pid;
            ticks += t;
        }
    }
    if !found {
        return Err(format!("no process {pid} in /proc"));
    }
    Ok(ticks.saturating_mul(1_000_000_000) / clock_ticks_per_sec())
}

/// The parent pid (field 4) of a `/proc/<pid>/stat` line, counted as in [`parse_cpu_ticks`].
fn parse_ppid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(4 - 3)?.parse().ok()
}

/// `utime + stime` of a `/proc/<pid>/stat` line. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted from the last `)`: the state is field 3,
/// `utime` field 14 and `stime` field 15.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// `sysconf(_SC_CLK_TCK)`, the unit of `/proc` CPU times (100 when unknown).
fn clock_ticks_per_sec() -> u64 {
    // SAFETY: `sysconf` only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}

/// Makes the process `cmd` starts the leader of a process group of its own (so one
/// signal reaches the workers it forks) and asks the kernel to kill it with `SIGKILL` when
/// the thread that started it ends (so a measuring child killed on a timeout leaves no
/// server behind; the workers a killed master forked may outlive it).
pub fn own_group_command(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: the hook runs in the forked child before `exec`; `prctl` is a single
    // async-signal-safe syscall on constants.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}

/// Sends `signal` to every process of group `pgid`. A group with no process left is not
/// an error: whatever was to be stopped has stopped.
pub fn signal_group(pgid: u32, signal: libc::c_int) -> io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `kill` only sends a signal; a negative pid names the group `pgid`.
    if unsafe { libc::kill(-pgid, signal) } == 0 {
        return Ok(());
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        e => Err(e),
    }
}

/// Installs Debian `packages` with `apt-get` (as root only; a non-root run gets the
/// command to type). A fresh machine may have no package lists yet: when the install
/// fails, it updates them once and retries.
pub fn apt_install(packages: &[&str]) -> Result<(), String> {
    let list = packages.join(" ");
    // SAFETY: `geteuid` only reads the caller's credentials.
    if unsafe { libc::geteuid() } != 0 {
        return Err(format!("not root, so not installing it; `apt-get install {list}`"));
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run apt-get: {e}"))
            .map(|out| out.status.success())
    };
    println!("note: installing {list} with apt-get");
    let install: Vec<&str> = ["install", "-y", "-q"].iter().chain(packages).copied().collect();
    if apt(&install)? || (apt(&["update", "-q"])? && apt(&install)?) {
        Ok(())
    } else {
        Err(format!("apt-get install {list} failed"))
    }
}

fn empty_set() -> libc::cpu_set_t {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeroes is the empty set.
    unsafe { std::mem::zeroed() }
}

fn one_cpu(cpu: usize) -> io::Result<libc::cpu_set_t> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no CPU {cpu}")));
    }
    let mut set = empty_set();
    // SAFETY: `cpu` is below `CPU_SETSIZE` (checked above), so the bit is inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    Ok(set)
}

fn set_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: `set` is a valid `cpu_set_t` of the size we pass; pid 0 is the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_a_thread_narrows_its_cpus() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let last = *cpus.last().unwrap();
        std::thread::spawn(move || {
            pin_current_thread(last).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![last]);
        })
        .join()
        .unwrap();
        // The test thread itself is untouched.
        assert_eq!(allowed_cpus().unwrap(), cpus);
    }

    #[test]
    fn pinned_command_runs_on_one_cpu() {
        let cpu = *allowed_cpus().unwrap().last().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "grep Cpus_allowed_list /proc/self/status"]);
        pin_command(&mut cmd, cpu).unwrap();
        assert!(pin_command(&mut Command::new("true"), 1 << 20).is_err());
        let out = cmd.output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.split_whitespace().last(), Some(cpu.to_string().as_str()), "{text}");
    }

    #[test]
    fn nofile_limit_is_raised_to_the_hard_limit() {
        let soft = raise_nofile_limit().unwrap();
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a live, writable `rlimit`.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, soft);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }

    #[test]
    fn stat_line_fields_after_an_odd_command_name() {
        let line = "42 (a) b (c)) R 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 1 0";
        assert_eq!(parse_cpu_ticks(line), Some(280));
        assert_eq!(parse_cpu_ticks("42 (x) R 1"), None);
    }

    #[test]
    fn stat_line_parent_pid() {
        assert_eq!(parse_ppid("42 (a) b (c)) R 17 2 3"), Some(17));
        assert_eq!(parse_ppid("42 (x)"), None);
    }

    /// A shell whose child burns CPU: the tree's time includes the child's.
    #[test]
    fn tree_cpu_time_counts_children() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "while :; do :; done & wait"]);
        own_group_command(&mut cmd);
        let mut shell = cmd.spawn().unwrap();
        let start = std::time::Instant::now();
        while process_tree_cpu_ns(shell.id()).unwrap() < 20_000_000 {
            assert!(start.elapsed().as_secs() < 10, "no CPU time charged to the tree after 10 s");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The shell itself only waits: the time is its child's.
        assert!(process_cpu_ns(shell.id()).unwrap() < 20_000_000);
        signal_group(shell.id(), libc::SIGKILL).unwrap();
        shell.wait().unwrap();
        // The group is gone now; signalling it again is not an error.
        signal_group(shell.id(), libc::SIGKILL).unwrap();
        assert!(process_tree_cpu_ns(shell.id()).is_err());
    }

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = process_cpu_ns(std::process::id()).unwrap();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        // Spin until the kernel has charged at least two clock ticks of CPU.
        while process_cpu_ns(std::process::id()).unwrap() < before + 20_000_000 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            assert!(start.elapsed().as_secs() < 10, "no CPU time charged after 10 s");
        }
    }
}
