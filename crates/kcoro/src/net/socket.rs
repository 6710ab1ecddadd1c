//! The plumbing every kcoro socket shares: a mio source, its reactor [`Registration`],
//! and per-direction timeouts; plus the macros that give TCP and Unix types one shape.
//!
//! `tcp.rs` and `unix.rs` only say what differs (how to connect and bind, and options
//! such as `TCP_NODELAY`). Reading, writing, timeouts, shutdown, accepting, adopting std
//! sockets, addresses, `Debug` and the fd traits are written once here, in [`Socket`] and
//! in `stream_impls!` / `listener_impls!`.
//!
//! # Timeouts
//! A configured timeout applies to each call on its own, as in std: `None` waits as long
//! as it takes; a positive duration fails the call with `TimedOut` once it has passed;
//! zero means *try* (kcoro's rule for every timeout): the call does not wait and fails
//! with `WouldBlock` if it would have to. Waiting is parking on the reactor and the timer
//! wheel, never a poll loop.
//!
//! # Invariants
//! - A `Socket`'s source is registered with its runtime's reactor from `Socket::new`
//!   until `Drop`, which deregisters it before the descriptor is closed (the `io` field
//!   drops after `drop` returns).

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use mio::event::Source;

use crate::net::registration::{READABLE, Registration, WRITABLE};
use crate::net::sys;

/// How long one socket operation may wait for readiness.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    /// Park until ready, however long that takes.
    Forever,
    /// Do not park: fail with `WouldBlock` if not ready.
    Never,
    /// Park until ready or this instant, then fail with `TimedOut`.
    Until(Instant),
}

impl Wait {
    /// The wait a configured timeout allows, counted from now (see the module docs).
    pub(crate) fn timeout(t: Option<Duration>) -> Self {
        match t {
            None => Wait::Forever,
            Some(d) if d.is_zero() => Wait::Never,
            Some(d) => Wait::deadline_after(d),
        }
    }

    /// A wait that ends `d` from now; zero makes one attempt and then fails with
    /// `TimedOut`. A deadline beyond what `Instant` can hold waits forever.
    pub(crate) fn deadline_after(d: Duration) -> Self {
        Instant::now().checked_add(d).map_or(Wait::Forever, Wait::Until)
    }
}

/// A timeout set through `&self` (std's setters take `&self`, and `&TcpStream` reads).
/// Nanoseconds, with `u64::MAX` for `None`. Relaxed: the value publishes nothing else,
/// and a call that races with the setter may use either value.
pub(crate) struct Timeout(AtomicU64);

impl Timeout {
    const NONE: u64 = u64::MAX;

    pub(crate) fn new() -> Self {
        Timeout(AtomicU64::new(Self::NONE))
    }

    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(Relaxed) {
            Self::NONE => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// Durations past `u64::MAX - 1` ns (about 584 years) are kept as that.
    pub(crate) fn set(&self, t: Option<Duration>) {
        let ns =
            t.map_or(Self::NONE, |d| u64::try_from(d.as_nanos()).unwrap_or(Self::NONE).min(Self::NONE - 1));
        self.0.store(ns, Relaxed);
    }
}

/// A mio source registered with the current runtime's reactor, with the timeouts its
/// reads (or accepts) and writes use.
pub(crate) struct Socket<S: Source> {
    io: S,
    reg: Registration,
    /// For reads, and for accepts on a listener.
    pub(crate) read_timeout: Timeout,
    pub(crate) write_timeout: Timeout,
}

impl<S: Source> Socket<S> {
    /// Registers `io` (already non-blocking) with the current runtime's reactor. Fails
    /// outside a runtime.
    pub(crate) fn new(mut io: S) -> io::Result<Self>
    where
        S: std::os::fd::AsRawFd,
    {
        let reg = Registration::new(&mut io)?;
        Ok(Socket { io, reg, read_timeout: Timeout::new(), write_timeout: Timeout::new() })
    }

    /// The mio source, for calls that never wait.
    pub(crate) fn io(&self) -> &S {
        &self.io
    }

    /// Runs `op` until it stops returning `WouldBlock`, parking for `dir` readiness in
    /// between as `wait` allows.
    pub(crate) fn wait<R>(
        &self,
        dir: u8,
        wait: Wait,
        mut op: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        match wait {
            Wait::Forever => self.reg.io(dir, None, || op(&self.io)),
            Wait::Until(deadline) => self.reg.io(dir, Some(deadline), || op(&self.io)),
            Wait::Never => loop {
                match op(&self.io) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    r => return r,
                }
            },
        }
    }

    /// Runs a read-side `op` (read, peek, accept) under the read timeout.
    pub(crate) fn read_with<R>(&self, op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.wait(READABLE, Wait::timeout(self.read_timeout.get()), op)
    }

    /// Runs a write-side `op` under the write timeout.
    pub(crate) fn write_with<R>(&self, op: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        self.wait(WRITABLE, Wait::timeout(self.write_timeout.get()), op)
    }

    /// Waits (under `wait`) for a non-blocking connect to finish. `state` reports the
    /// socket's pending error and peer address; a peer of `NotConnected` means the
    /// handshake is still under way.
    pub(crate) fn finish_connect<A>(
        &self,
        wait: Wait,
        state: impl Fn(&S) -> (io::Result<Option<io::Error>>, io::Result<A>),
    ) -> io::Result<()> {
        self.wait(WRITABLE, wait, |s| match state(s) {
            (Err(e), _) | (Ok(Some(e)), _) => Err(e),
            (Ok(None), Ok(_)) => Ok(()),
            (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            (Ok(None), Err(e)) => Err(e),
        })
    }
}

impl<S: Source + std::os::fd::AsRawFd> Socket<S>
where
    for<'a> &'a S: Read + Write,
{
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let len = buf.len();
        self.read_stream(len, |s| sys::recv(s.as_raw_fd(), buf))
    }

    pub(crate) fn read_vectored(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let len = bufs.iter().map(|b| b.len()).sum();
        self.read_stream(len, |mut s| s.read_vectored(bufs))
    }

    /// A read of up to `len` bytes under the read timeout; a short one lets the next read
    /// wait for readiness without a syscall first (`Registration::read`).
    fn read_stream(&self, len: usize, mut op: impl FnMut(&S) -> io::Result<usize>) -> io::Result<usize> {
        match Wait::timeout(self.read_timeout.get()) {
            Wait::Forever => self.reg.read(None, len, || op(&self.io)),
            Wait::Until(deadline) => self.reg.read(Some(deadline), len, || op(&self.io)),
            never @ Wait::Never => self.wait(READABLE, never, op),
        }
    }

    /// Waits, under the read timeout, until a read may find data (`Registration::readable`).
    pub(crate) fn readable(&self) -> io::Result<()> {
        match Wait::timeout(self.read_timeout.get()) {
            Wait::Forever => self.reg.readable(None),
            Wait::Until(deadline) => self.reg.readable(Some(deadline)),
            Wait::Never => Ok(()),
        }
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.write_with(|s| sys::send(s.as_raw_fd(), buf))
    }

    pub(crate) fn write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_with(|mut s| s.write_vectored(bufs))
    }
}

impl<S: Source> Drop for Socket<S> {
    fn drop(&mut self) {
        self.reg.deregister(&mut self.io);
    }
}

/// An endless iterator over the connections a listener accepts, from `incoming()`.
/// Each item is the result of one `accept()`; it never yields `None`.
#[must_use = "iterators are lazy and do nothing unless consumed"]
pub struct Incoming<'a, L> {
    pub(crate) listener: &'a L,
}

impl<L: fmt::Debug> fmt::Debug for Incoming<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming").field("listener", self.listener).finish()
    }
}

/// Formats a socket as `Name { addr, peer, fd }`, leaving out addresses it cannot get
/// (`peer` is `None` for listeners).
pub(crate) fn debug_socket<A: fmt::Debug, P: fmt::Debug>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    addr: io::Result<A>,
    peer: Option<io::Result<P>>,
    fd: RawFd,
) -> fmt::Result {
    let mut d = f.debug_struct(name);
    if let Ok(a) = addr {
        d.field("addr", &a);
    }
    if let Some(Ok(p)) = peer {
        d.field("peer", &p);
    }
    d.field("fd", &fd).finish()
}

/// What every kcoro stream type has, for a type `$t { inner: Socket<$mio> }` adopting
/// `$std` streams, with `$addr` addresses.
macro_rules! stream_impls {
    ($t:ident, $mio:ty, $std:ty, $addr:ty) => {
        impl $t {
            /// Adopts a connected std stream: makes it non-blocking and registers it with
            /// the current runtime's reactor.
            pub fn from_std(stream: $std) -> std::io::Result<Self> {
                stream.set_nonblocking(true)?;
                Self::from_mio(<$mio>::from_std(stream))
            }

            /// Wraps a connected (or accepted) mio stream.
            fn from_mio(stream: $mio) -> std::io::Result<Self> {
                Ok($t { inner: $crate::net::socket::Socket::new(stream)? })
            }

            /// The address of the remote end (for Unix sockets, often unnamed).
            pub fn peer_addr(&self) -> std::io::Result<$addr> {
                self.inner.io().peer_addr()
            }

            /// The address of the local end.
            pub fn local_addr(&self) -> std::io::Result<$addr> {
                self.inner.io().local_addr()
            }

            /// Sets the timeout of each read (and peek): `None` (the default) waits as
            /// long as it takes, zero never waits (`WouldBlock`), otherwise a read that
            /// has waited this long fails with `io::ErrorKind::TimedOut`. The coroutine
            /// parks while it waits; its worker runs others.
            pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> std::io::Result<()> {
                self.inner.read_timeout.set(timeout);
                Ok(())
            }

            /// The read timeout (see [`set_read_timeout`](Self::set_read_timeout)).
            pub fn read_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.inner.read_timeout.get())
            }

            /// Sets the timeout of each write, with the same rules as
            /// [`set_read_timeout`](Self::set_read_timeout).
            pub fn set_write_timeout(&self, timeout: Option<std::time::Duration>) -> std::io::Result<()> {
                self.inner.write_timeout.set(timeout);
                Ok(())
            }

            /// The write timeout (see [`set_write_timeout`](Self::set_write_timeout)).
            pub fn write_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.inner.write_timeout.get())
            }

            /// Shuts down the read half, the write half or both. After `Shutdown::Write`
            /// the peer reads end-of-file once it has drained what was sent.
            pub fn shutdown(&self, how: std::net::Shutdown) -> std::io::Result<()> {
                self.inner.io().shutdown(how)
            }

            /// Takes the socket's pending error (`SO_ERROR`), if any.
            pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
                self.inner.io().take_error()
            }

            /// Waits until a read may find something (data, end-of-file or an error)
            /// without reading: a connection that is mostly idle need not hold a buffer
            /// while it waits. Returns at once unless the last read emptied the socket
            /// (it returned less than asked), then parks, under the read timeout, until
            /// the next read edge; no syscall either way. The read that follows can
            /// still find nothing and wait (another reader took the data).
            pub fn readable(&self) -> std::io::Result<()> {
                self.inner.readable()
            }

            /// Runs `op`, a non-blocking syscall of the caller's on this socket's
            /// descriptor (`splice(2)` from it, say), until it stops failing with
            /// `WouldBlock`, parking for read readiness in between, under the read
            /// timeout. `op` must not block: the descriptor is non-blocking, and flags
            /// such as `SPLICE_F_NONBLOCK` cover the other end of the call.
            pub fn read_with<R>(&self, op: impl FnMut() -> std::io::Result<R>) -> std::io::Result<R> {
                let mut op = op;
                self.inner.read_with(|_| op())
            }

            /// As [`read_with`](Self::read_with), waiting for write readiness under the
            /// write timeout (`splice(2)` into the socket, say).
            pub fn write_with<R>(&self, op: impl FnMut() -> std::io::Result<R>) -> std::io::Result<R> {
                let mut op = op;
                self.inner.write_with(|_| op())
            }
        }

        impl std::io::Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                self.inner.read(buf)
            }

            fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
                self.inner.read_vectored(bufs)
            }
        }

        impl std::io::Write for &$t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.inner.write(buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                self.inner.write_vectored(bufs)
            }

            /// Sockets have no user-space buffer: a no-op.
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        impl std::io::Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                (&*self).read(buf)
            }

            fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl std::io::Write for $t {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                (&*self).write(buf)
            }

            fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
                (&*self).write_vectored(bufs)
            }

            fn flush(&mut self) -> std::io::Result<()> {
                (&*self).flush()
            }
        }

        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let fd = std::os::fd::AsRawFd::as_raw_fd(self);
                $crate::net::socket::debug_socket(
                    f,
                    stringify!($t),
                    self.local_addr(),
                    Some(self.peer_addr()),
                    fd,
                )
            }
        }

        $crate::net::socket::fd_impls!($t);
    };
}

/// What every kcoro listener type has, for `$l { inner: Socket<$mio> }` adopting `$std`
/// listeners and accepting `$s` streams (built by `$s::from_mio`) with `$addr` addresses.
macro_rules! listener_impls {
    ($l:ident, $mio:ty, $std:ty, $s:ident, $addr:ty) => {
        impl $l {
            /// Adopts a std listener: makes it non-blocking and registers it with the
            /// current runtime's reactor.
            pub fn from_std(listener: $std) -> std::io::Result<Self> {
                listener.set_nonblocking(true)?;
                Ok($l { inner: $crate::net::socket::Socket::new(<$mio>::from_std(listener))? })
            }

            /// The address this listener is bound to.
            pub fn local_addr(&self) -> std::io::Result<$addr> {
                self.inner.io().local_addr()
            }

            /// Accepts a connection, waiting as the accept timeout allows (by default as
            /// long as it takes; see [`set_accept_timeout`](Self::set_accept_timeout)).
            /// The coroutine parks while it waits.
            pub fn accept(&self) -> std::io::Result<($s, $addr)> {
                let (s, a) = self.inner.read_with(|l| l.accept())?;
                $crate::runtime::note_accepted();
                Ok(($s::from_mio(s)?, a))
            }

            /// Accepts a connection, waiting at most `timeout` (then `TimedOut`; zero
            /// never waits and fails with `WouldBlock`), whatever the accept timeout.
            pub fn accept_timeout(&self, timeout: std::time::Duration) -> std::io::Result<($s, $addr)> {
                let wait = $crate::net::socket::Wait::timeout(Some(timeout));
                let (s, a) = self.inner.wait($crate::net::registration::READABLE, wait, |l| l.accept())?;
                $crate::runtime::note_accepted();
                Ok(($s::from_mio(s)?, a))
            }

            /// Sets how long [`accept`](Self::accept) waits: `None` (the default) as long
            /// as it takes, zero not at all (`WouldBlock`), otherwise up to this long
            /// (then `io::ErrorKind::TimedOut`).
            pub fn set_accept_timeout(&self, timeout: Option<std::time::Duration>) -> std::io::Result<()> {
                self.inner.read_timeout.set(timeout);
                Ok(())
            }

            /// The accept timeout (see [`set_accept_timeout`](Self::set_accept_timeout)).
            pub fn get_accept_timeout(&self) -> std::io::Result<Option<std::time::Duration>> {
                Ok(self.inner.read_timeout.get())
            }

            /// An endless iterator of accepted connections (each `accept()`'s result,
            /// without the peer address).
            pub fn incoming(&self) -> $crate::net::Incoming<'_, $l> {
                $crate::net::Incoming { listener: self }
            }

            /// Takes the socket's pending error (`SO_ERROR`), if any.
            pub fn take_error(&self) -> std::io::Result<Option<std::io::Error>> {
                self.inner.io().take_error()
            }
        }

        impl<'a> Iterator for $crate::net::Incoming<'a, $l> {
            type Item = std::io::Result<$s>;

            fn next(&mut self) -> Option<Self::Item> {
                Some(self.listener.accept().map(|(s, _)| s))
            }
        }

        impl std::fmt::Debug for $l {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let fd = std::os::fd::AsRawFd::as_raw_fd(self);
                $crate::net::socket::debug_socket(
                    f,
                    stringify!($l),
                    self.local_addr(),
                    None::<std::io::Result<()>>,
                    fd,
                )
            }
        }

        $crate::net::socket::fd_impls!($l);
    };
}

/// `AsRawFd` and `AsFd` for `$t { inner: Socket<_> }`.
macro_rules! fd_impls {
    ($t:ident) => {
        impl std::os::fd::AsRawFd for $t {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                self.inner.io().as_raw_fd()
            }
        }

        impl std::os::fd::AsFd for $t {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.inner.io().as_fd()
            }
        }
    };
}

pub(crate) use {fd_impls, listener_impls, stream_impls};
