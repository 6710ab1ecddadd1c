//! TCP: [`TcpListener`] and [`TcpStream`], shaped like `std::net`'s, whose waiting calls
//! park the coroutine instead of blocking its worker.
//!
//! # Protocol of `connect`
//! 1. Resolve the address (host names on the blocking pool, see `addr.rs`).
//! 2. For each address in turn: open a non-blocking socket and start the handshake (mio),
//!    register it with the reactor.
//! 3. Until the socket is writable and the handshake is over: a pending `SO_ERROR` is the
//!    answer (refused, unreachable); a peer address means connected; `NotConnected`
//!    means still in progress, so park for the next writable edge.
//! 4. The first address that connects wins; otherwise the last error is returned.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::net::addr::{ToSocketAddrs, each_addr};
use crate::net::socket::{Socket, Wait, listener_impls, stream_impls};

/// The listen backlog of [`TcpListener::bind`] (the kernel caps it at
/// `net.core.somaxconn`). std and mio use 128; a burst of connects beyond the backlog
/// overflows into SYN cookies and, on Linux, can end in resets, so kcoro servers get room
/// for bursts of a thousand, as tokio's do.
const BACKLOG: libc::c_int = 1024;

/// A TCP socket server, listening for connections. Created inside a kcoro coroutine;
/// usable from any coroutine of the same runtime (or a thread). Waiting in
/// [`accept`](Self::accept) parks the coroutine.
pub struct TcpListener {
    inner: Socket<mio::net::TcpListener>,
}

/// A TCP connection. `Read` and `Write` are implemented for `TcpStream` and
/// `&TcpStream`, so one coroutine can read while another writes (share it in an `Arc`).
/// Waiting parks the coroutine; its worker runs others meanwhile.
pub struct TcpStream {
    inner: Socket<mio::net::TcpStream>,
}

impl TcpListener {
    /// Binds to `addr` (the first resolved address that binds), with `SO_REUSEADDR` set,
    /// and listens with a backlog of 1024. Port 0 asks the OS for a free port; see
    /// [`local_addr`](Self::local_addr).
    ///
    /// Must be called inside a kcoro runtime.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        each_addr(addr, |a| {
            let listener = mio::net::TcpListener::bind(a)?;
            // SAFETY: a plain syscall on the descriptor `listener` owns and keeps open;
            // `listen` on a listening socket only changes its backlog.
            if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(TcpListener { inner: Socket::new(listener)? })
        })
    }
}

listener_impls!(TcpListener, mio::net::TcpListener, std::net::TcpListener, TcpStream, SocketAddr);

impl TcpStream {
    /// Connects to `addr`, trying each resolved address in turn, and returns the first
    /// connection made or the last error. The coroutine parks during the handshake.
    ///
    /// Must be called inside a kcoro runtime.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        each_addr(addr, |a| Self::connect_one(a, Wait::Forever))
    }

    /// Connects to one address, failing with `TimedOut` if the handshake takes longer
    /// than `timeout` (zero fails unless the connection is made at once).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<Self> {
        Self::connect_one(*addr, Wait::deadline_after(timeout))
    }

    fn connect_one(addr: SocketAddr, wait: Wait) -> io::Result<Self> {
        let inner = Socket::new(mio::net::TcpStream::connect(addr)?)?;
        inner.finish_connect(wait, |s| (s.take_error(), s.peer_addr()))?;
        Ok(TcpStream { inner })
    }

    /// Reads without removing the data from the queue, waiting as a read does (under
    /// the read timeout).
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read_with(|s| s.peek(buf))
    }

    /// Sets `TCP_NODELAY` (disables Nagle's algorithm when `true`).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.io().set_nodelay(nodelay)
    }

    /// The `TCP_NODELAY` value.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.io().nodelay()
    }

    /// Sets `IP_TTL` for outgoing packets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.io().set_ttl(ttl)
    }

    /// The `IP_TTL` value.
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.io().ttl()
    }
}

stream_impls!(TcpStream, mio::net::TcpStream, std::net::TcpStream, SocketAddr);
