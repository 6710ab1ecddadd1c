//! A socket's link to the runtime's reactor: retry an operation until it stops returning
//! `WouldBlock`, parking the caller (coroutine or thread) between readiness events.
//!
//! # Protocol
//! 1. Try the operation. Anything but `WouldBlock` is the answer.
//! 2. `IoSource::poll_ready`: if a readiness edge arrived since, consume it and retry;
//!    otherwise we are registered as a waiter for the next edge.
//! 3. If the runtime has shut down, fail: no readiness will ever be reported again
//!    (the driver wakes every waiter when it stops, so none is left parked).
//! 4. Park until woken or the deadline; on timeout unregister and fail with `TimedOut`.
//!
//! An edge that lands between 1 and 2 is kept in `ready`, so it is never lost.
//!
//! # Short stream reads
//! A stream read that returned less than it asked for emptied the socket (tokio relies on
//! the same). The next read then skips step 1 and registers at once, unless a read edge has
//! been reported since the short read's syscall began, or end-of-file or an error ever was
//! (`IoSource::poll_ready_since`): data that arrives later always brings an edge, so no
//! data is left unread, and a request costs one `recvfrom` instead of a second one that
//! ends in `EAGAIN`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use mio::Token;

use crate::coro::wait::Wait;
use crate::park::{self, Unparker};
use crate::runtime::Handle;
use crate::runtime::driver::{Driver, IoSource};

pub(crate) use crate::runtime::driver::{READABLE, WRITABLE};

/// A registered mio source. Deregisters on `deregister`; the owner calls it before the
/// source is closed.
pub(crate) struct Registration {
    driver: Arc<Driver>,
    source: Arc<IoSource>,
    token: Token,
    /// The descriptor, to say what a parked coroutine waits on.
    fd: i32,
    /// The read-edge count before the syscall of the last read if it was short, else
    /// `NOT_DRAINED`.
    drained_at: AtomicU64,
}

const NOT_DRAINED: u64 = u64::MAX;

impl Registration {
    /// Registers `src` with the current runtime's reactor (for both directions).
    pub(crate) fn new(src: &mut (impl mio::event::Source + std::os::fd::AsRawFd)) -> io::Result<Self> {
        let fd = src.as_raw_fd();
        let handle = Handle::try_current().ok_or_else(|| {
            io::Error::other("kcoro::net sockets must be created inside a kcoro runtime (a coroutine)")
        })?;
        let driver = handle.driver();
        let (source, token) = driver.register(src)?;
        Ok(Self { driver, source, token, fd, drained_at: AtomicU64::new(NOT_DRAINED) })
    }

    /// Runs `op` until it does not return `WouldBlock`, waiting for `dir` readiness in
    /// between; fails with `TimedOut` once `deadline` passes.
    pub(crate) fn io<R>(
        &self,
        dir: u8,
        deadline: Option<Instant>,
        op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        self.io_from(dir, deadline, None, op)
    }

    /// A stream read into a buffer of `len` bytes: `io(READABLE, ..)`, starting at
    /// registration when the last read was short and no edge came since (module docs).
    pub(crate) fn read(
        &self,
        deadline: Option<Instant>,
        len: usize,
        mut op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        let since = Some(self.drained_at.swap(NOT_DRAINED, Relaxed)).filter(|&s| s != NOT_DRAINED);
        let mut edges = 0;
        let r = self.io_from(READABLE, deadline, since, || {
            edges = self.source.read_edges();
            op()
        });
        if let Ok(n) = r
            && n > 0
            && n < len
        {
            self.drained_at.store(edges, Relaxed);
        }
        r
    }

    /// Parks until a read edge newer than the last short read, if the last read was short
    /// (it stays the reference for the next read); at once otherwise.
    pub(crate) fn readable(&self, deadline: Option<Instant>) -> io::Result<()> {
        let since = Some(self.drained_at.load(Relaxed)).filter(|&s| s != NOT_DRAINED);
        self.io_from(READABLE, deadline, since, || Ok(()))
    }

    /// `io`, which with `since` (a short read's edge count) registers before trying `op`.
    fn io_from<R>(
        &self,
        dir: u8,
        deadline: Option<Instant>,
        mut since: Option<u64>,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> io::Result<R> {
        let mut me: Option<Unparker> = None;
        loop {
            let ready = if let Some(seen) = since.take() {
                let me = me.get_or_insert_with(park::current);
                self.source.poll_ready_since(seen, me)
            } else {
                match op() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => return r,
                }
                let me = me.get_or_insert_with(park::current);
                self.source.poll_ready(dir, me)
            };
            if ready {
                continue;
            }
            let me = me.get_or_insert_with(park::current);
            if self.driver.is_shut_down() {
                self.source.unregister(dir, me);
                return Err(io::Error::other("kcoro: the runtime that owns this socket has shut down"));
            }
            let why = Wait::io(self.fd, dir == WRITABLE);
            match deadline {
                None => park::park_as(why),
                Some(d) => {
                    if park::park_deadline_as(d, why) {
                        self.source.unregister(dir, me);
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "kcoro: socket operation timed out",
                        ));
                    }
                }
            }
        }
    }

    /// Leaves the reactor.
    pub(crate) fn deregister(&self, src: &mut impl mio::event::Source) {
        self.driver.deregister(src, self.token);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    /// Yields until `calls` reaches `n`. On one worker, the reader has then made its
    /// `n`th syscall and gone on to its next park.
    fn wait_for(calls: &AtomicUsize, n: usize) {
        while calls.load(SeqCst) < n {
            crate::yield_now();
        }
    }

    /// On a one-worker runtime: a registered socket `a` of a pair, a count of the reads
    /// made on it, and a writer coroutine running `write` with the other end `b`.
    fn with_counted_reader(
        write: impl FnOnce(UnixStream, &AtomicUsize) + Send + 'static,
        read: impl FnOnce(&Registration, &mio::net::UnixStream, &AtomicUsize) + Send + 'static,
    ) {
        let rt = crate::Runtime::builder().workers(1).build().unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(|| {
            let (a, b) = UnixStream::pair().unwrap_or_else(|e| panic!("{e}"));
            a.set_nonblocking(true).unwrap_or_else(|e| panic!("{e}"));
            let mut a = mio::net::UnixStream::from_std(a);
            let reg = Registration::new(&mut a).unwrap_or_else(|e| panic!("{e}"));
            let calls = Arc::new(AtomicUsize::new(0));
            let writer = {
                let calls = Arc::clone(&calls);
                crate::spawn(move || write(b, &calls))
            };
            read(&reg, &a, &calls);
            writer.join().unwrap_or_else(|e| panic!("{e:?}"));
            reg.deregister(&mut a);
        });
    }

    #[test]
    fn after_a_short_read_the_next_read_waits_for_data_without_a_syscall() {
        with_counted_reader(
            |mut b, calls| {
                wait_for(calls, 1); // the first read found nothing and parked
                b.write_all(b"hello").unwrap_or_else(|e| panic!("{e}"));
                wait_for(calls, 2); // it read "hello" and started the second read
                b.write_all(b"world").unwrap_or_else(|e| panic!("{e}"));
            },
            |reg, mut a, calls| {
                let mut buf = [0u8; 64];
                let mut read = || {
                    let n = reg
                        .read(None, buf.len(), || {
                            calls.fetch_add(1, SeqCst);
                            a.read(&mut buf)
                        })
                        .unwrap_or_else(|e| panic!("{e}"));
                    buf[..n].to_vec()
                };
                assert_eq!(read(), b"hello");
                assert_eq!(calls.load(SeqCst), 2, "EAGAIN, park, then the read");
                assert_eq!(read(), b"world");
                assert_eq!(calls.load(SeqCst), 3, "after the short read: park first, then one read");
            },
        );
    }

    #[test]
    fn a_read_after_a_short_one_still_sees_end_of_file_that_came_with_the_data() {
        with_counted_reader(
            |mut b, calls| {
                wait_for(calls, 1);
                // Data and end-of-file in one go: the reactor reports them as one edge.
                b.write_all(b"bye").unwrap_or_else(|e| panic!("{e}"));
                drop(b);
            },
            |reg, mut a, calls| {
                let mut buf = [0u8; 64];
                // A deadline instead of a hang if the end-of-file were missed.
                let deadline = Instant::now() + std::time::Duration::from_secs(10);
                let mut read = || {
                    reg.read(Some(deadline), buf.len(), || {
                        calls.fetch_add(1, SeqCst);
                        a.read(&mut buf)
                    })
                };
                assert_eq!(read().unwrap_or_else(|e| panic!("{e}")), 3, "the data (a short read)");
                assert_eq!(read().unwrap_or_else(|e| panic!("{e}")), 0, "then end-of-file, at once");
            },
        );
    }
}
