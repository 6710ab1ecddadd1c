//! Unix-domain stream sockets: [`UnixListener`] and [`UnixStream`], shaped like
//! `std::os::unix::net`'s, whose waiting calls park the coroutine instead of blocking
//! its worker.
//!
//! # Protocol of `connect`
//! 1. Open a non-blocking socket and connect (mio). On Linux this finishes at once when
//!    the listener's backlog has room.
//! 2. If the backlog is full (`EAGAIN`), readiness cannot tell us when it has room (an
//!    unconnected Unix socket polls as writable), so the connect is redone as a blocking
//!    `connect` on the runtime's blocking pool while the coroutine parks.
//! 3. Otherwise wait, as for TCP, until `SO_ERROR` or a peer address settles it (on
//!    systems where a Unix connect can be in progress).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::SocketAddr;
use std::path::Path;

use crate::net::addr::offload;
use crate::net::socket::{Socket, Wait, listener_impls, stream_impls};

/// A Unix-domain socket server, listening for connections. Created inside a kcoro
/// coroutine; usable from any coroutine of the same runtime (or a thread). Waiting in
/// [`accept`](Self::accept) parks the coroutine.
pub struct UnixListener {
    inner: Socket<mio::net::UnixListener>,
}

/// A Unix-domain stream connection. `Read` and `Write` are implemented for `UnixStream`
/// and `&UnixStream`. Waiting parks the coroutine; its worker runs others meanwhile.
pub struct UnixStream {
    inner: Socket<mio::net::UnixStream>,
}

impl UnixListener {
    /// Binds to the file-system `path` and listens. Fails if `path` exists (remove a
    /// stale socket file first); the file is not removed when the listener drops.
    ///
    /// Must be called inside a kcoro runtime.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(UnixListener { inner: Socket::new(mio::net::UnixListener::bind(path)?)? })
    }

    /// Binds to `addr` (a path or, on Linux, an abstract name) and listens.
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<Self> {
        Ok(UnixListener { inner: Socket::new(mio::net::UnixListener::bind_addr(addr)?)? })
    }
}

listener_impls!(
    UnixListener,
    mio::net::UnixListener,
    std::os::unix::net::UnixListener,
    UnixStream,
    SocketAddr
);

impl UnixStream {
    /// Connects to the socket at `path`. The coroutine parks while it waits (see the
    /// module docs for a full backlog).
    ///
    /// Must be called inside a kcoro runtime.
    pub fn connect(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref();
        let stream = match mio::net::UnixStream::connect(path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let owned = path.to_owned();
                return Self::from_std(offload(move || std::os::unix::net::UnixStream::connect(owned))?);
            }
            Err(e) => return Err(e),
        };
        let stream = Self::from_mio(stream)?;
        stream.inner.finish_connect(Wait::Forever, |s| (s.take_error(), s.peer_addr()))?;
        Ok(stream)
    }

    /// Sends `bytes` with the descriptors `fds` attached (`SCM_RIGHTS`, at most
    /// [`MAX_FDS`](super::MAX_FDS)); returns how many bytes went out (the descriptors go
    /// with the first). Parks while the socket is full, under the write timeout.
    pub fn send_with_fds(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
        self.inner.write_with(|s| super::ancillary::send(s.as_raw_fd(), bytes, fds))
    }

    /// Receives into `buf`, appending any descriptors that arrive with the bytes to `fds`
    /// (each close-on-exec, owned by the caller). Parks while nothing is there, under the
    /// read timeout. Returns 0 at end of stream.
    pub fn recv_with_fds(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        self.inner.read_with(|s| super::ancillary::recv(s.as_raw_fd(), buf, fds))
    }

    /// A connected pair of anonymous sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = mio::net::UnixStream::pair()?;
        Ok((Self::from_mio(a)?, Self::from_mio(b)?))
    }
}

stream_impls!(UnixStream, mio::net::UnixStream, std::os::unix::net::UnixStream, SocketAddr);
