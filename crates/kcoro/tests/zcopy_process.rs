//! Zero copy across a process boundary, and what it leaves behind: a region shared with a
//! child process (its memfd passed at spawn) is read by the child through descriptors the
//! parent sends over a pipe; and regions, leases, backend channels and runtimes leave no
//! mapping and no fd behind once deregistered and dropped.
//!
//! The leak check counts its process's memfd mappings and fds and the regions registered
//! in it, so it runs in a child process of its own (this test binary, re-executed with that
//! one test selected): in this one the tests running beside it make and drop regions.

use crate::common;

use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use kcoro::chan::{Builder, Kind};
use kcoro::zcopy::{self, Access, Region, ZBuf, ZDesc};

const CHILD_ENV: &str = "KCORO_TEST_ZCOPY_CHILD";
/// Set in the child process that runs the leak check.
const LEAK_CHILD_ENV: &str = "KCORO_TEST_ZCOPY_LEAK_CHILD";
/// Printed by that child once everything it counted was back where it started.
const NOTHING_LEFT: &str = "NOTHING LEFT BEHIND";
/// The fd number the child finds the region at.
const CHILD_FD: i32 = 3;

fn memfd_maps() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:kcoro-region"))
        .count()
}

fn memfd_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|p| p.to_string_lossy().contains("memfd:kcoro-region"))
        .count()
}

/// A checksum both sides compute the same way.
fn sum(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .enumerate()
        .fold(0u64, |acc, (i, &b)| acc.wrapping_mul(31).wrapping_add(u64::from(b) ^ i as u64))
}

/// The child: maps the region at fd 3 read-only under the parent's export id, then
/// answers each `offset len` line on stdin with the checksum of that span, or the error.
#[test]
fn child_reads_descriptors() {
    let Some(export_id) = std::env::var(CHILD_ENV).ok().and_then(|v| v.parse::<u64>().ok()) else {
        return; // only meaningful as the child of `region_shared_with_a_child_process`
    };
    // SAFETY: the parent placed the region's memfd at this fd number for us.
    let fd = unsafe { OwnedFd::from_raw_fd(CHILD_FD) };
    let region = Region::import(fd, Access::ReadOnly, export_id).unwrap();
    assert!(!region.is_writable());
    assert!(matches!(region.alloc(64), Err(zcopy::ZError::NotOwner)));
    for line in std::io::stdin().lock().lines() {
        let line = line.unwrap();
        let mut it = line.split_whitespace().map(|n| n.parse::<u64>().unwrap());
        let (offset, len) = (it.next().unwrap(), it.next().unwrap() as usize);
        match zcopy::resolve(&ZDesc::in_region(export_id, offset, len)) {
            Ok(view) => println!("sum {}", sum(&view)),
            Err(e) => println!("error {e}"),
        }
    }
}

#[test]
fn region_shared_with_a_child_process() {
    let region = Region::anonymous(1 << 20).unwrap();
    let leases: Vec<ZBuf> = (0..5u8)
        .map(|i| {
            let mut b = region.alloc(1000 * (usize::from(i) + 1)).unwrap();
            b.iter_mut().enumerate().for_each(|(j, x)| *x = (j as u8).wrapping_mul(i + 1));
            b
        })
        .collect();
    let fd = region.fd().unwrap().as_raw_fd();
    let mut cmd = common::this_test_alone(module_path!(), "child_reads_descriptors");
    cmd.env(CHILD_ENV, region.export_id().to_string()).stdin(Stdio::piped()).stdout(Stdio::piped());
    // SAFETY: dup2 and fcntl are async-signal-safe; they put our memfd at the agreed number
    // without close-on-exec (dup2 onto itself would keep the flag, hence the fcntl), so the
    // child inherits it.
    unsafe {
        cmd.pre_exec(move || {
            let rc =
                if fd == CHILD_FD { libc::fcntl(fd, libc::F_SETFD, 0) } else { libc::dup2(fd, CHILD_FD) };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut to_child = child.stdin.take().unwrap();
    for b in &leases {
        let d = b.desc();
        writeln!(to_child, "{} {}", d.offset, d.len).unwrap();
    }
    writeln!(to_child, "{} 2", region.len() - 1).unwrap(); // out of bounds: refused there
    drop(to_child);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed:\n{stdout}");
    // The harness prints the test's name on the line of the first answer.
    let answers: Vec<&str> =
        stdout.lines().filter_map(|l| l.find("sum ").or_else(|| l.find("error ")).map(|i| &l[i..])).collect();
    let expected: Vec<String> = leases.iter().map(|b| format!("sum {}", sum(b))).collect();
    assert_eq!(&answers[..5], &expected[..], "the child read the parent's bytes through descriptors");
    assert!(answers[5].contains("outside its region"), "{}", answers[5]);
}

/// Runs in a child process of its own (this test again), where nothing else makes or drops
/// regions while it counts.
#[test]
fn no_mapping_or_fd_outlives_its_region() {
    if std::env::var_os(LEAK_CHILD_ENV).is_none() {
        let out = common::this_test_alone(module_path!(), "no_mapping_or_fd_outlives_its_region")
            .env(LEAK_CHILD_ENV, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "the leak check failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains(NOTHING_LEFT), "the child did not check:\n{stdout}\n{stderr}");
        return;
    }
    let (maps0, fds0, regions0) = (memfd_maps(), memfd_fds(), zcopy::regions());
    let rt = kcoro::Runtime::builder().workers(2).build().unwrap();
    rt.block_on(move || {
        let regions: Vec<Region> = (0..16).map(|_| Region::anonymous(256 << 10).unwrap()).collect();
        assert_eq!(memfd_maps(), maps0 + 16);
        assert_eq!(memfd_fds(), fds0 + 16);
        for region in &regions {
            let (tx, rx) = Builder::<ZBuf>::new(Kind::Unlimited).zero_copy(zcopy::ZREF).build();
            let r = region.clone();
            let producer =
                kcoro::spawn(move || (0..50).for_each(|_| tx.send(r.alloc(3000).unwrap()).unwrap()));
            assert_eq!(rx.iter().count(), 50);
            producer.join().unwrap();
            // A lease left in a channel that is dropped unread comes back too.
            let (tx, rx) = kcoro::chan::buffered::<ZBuf>(4);
            tx.send(region.alloc(10).unwrap()).unwrap();
            drop((tx, rx));
            region.deregister(Duration::from_secs(5)).unwrap();
        }
        // A region dropped while a lease is still out stays mapped until the lease goes.
        let late = Region::anonymous(256 << 10).unwrap();
        let lease = late.alloc(100).unwrap();
        drop(late);
        assert_eq!(memfd_maps(), maps0 + 17);
        drop(lease);
        drop(regions);
    });
    drop(rt);
    assert_eq!((memfd_maps(), memfd_fds(), zcopy::regions()), (maps0, fds0, regions0));
    println!("{NOTHING_LEFT}");
}
