//! One proxied connection: pick and connect a backend, then copy both ways on two
//! coroutines (the way back spawned) until both ends are done, idle, or one fails.
//!
//! # Invariants
//! - A direction that ends with end-of-file half-closes the other side's write and lets
//!   the other direction run on; any error, or the idle timeout, shuts down both sockets
//!   so the other direction's wait ends too.
//! - A direction holds a buffer only while data is moving: it waits for the socket with
//!   [`TcpStream::readable`] and gives its buffer back after a read that emptied the
//!   socket, so an idle connection holds none (buffers are reused per thread).
//! - Reads and writes wait without a deadline: a timer per wait would cost a timer-wheel
//!   insert and cancel per message. Each read that moves bytes bumps the connection's
//!   activity count instead, and the registry's sweeper closes a connection whose count
//!   has not moved for its idle timeout (`Registry::sweep`).

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use kcoro::net::TcpStream;

use crate::listener::Settings;
use crate::pool::{Backend, Pool};
use crate::proxy_protocol;
use crate::registry::Registry;
use crate::splice::{Failed, Pipe};
use crate::stats::{ErrorKind, ListenerCounters};

/// Bytes one read may move.
const BUF_SIZE: usize = 16 << 10;
/// Free buffers a thread keeps.
const BUFS_KEPT: usize = 256;
/// Reads between two additions to the listener's shared byte counters.
const FLUSH_EVERY: u32 = 64;

thread_local! {
    static FREE_BUFS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buf() -> Box<[u8]> {
    FREE_BUFS.with(|f| f.borrow_mut().pop()).unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

fn give_buf(buf: Box<[u8]>) {
    FREE_BUFS.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < BUFS_KEPT {
            f.push(buf);
        }
    });
}

/// The two sockets of a proxied connection and how much has moved.
pub(crate) struct Conn {
    pub(crate) client: TcpStream,
    pub(crate) upstream: TcpStream,
    /// Nothing moving for this long closes it.
    pub(crate) idle: Duration,
    /// Reads that moved bytes, either way (the sweeper compares it between sweeps).
    pub(crate) activity: AtomicU64,
    /// Set by [`close`](Self::close): what the other direction then sees is its
    /// consequence, not a fault of its own.
    closing: AtomicBool,
    /// Set when the sweeper closed it for idling.
    idled: AtomicBool,
}

impl Conn {
    fn touch(&self) {
        self.activity.fetch_add(1, Relaxed);
    }

    /// Bytes written to its two sockets that their peers have not taken yet.
    pub(crate) fn unsent(&self) -> u64 {
        unsent(&self.client) + unsent(&self.upstream)
    }

    /// Closes it for having been idle too long (the sweeper's verdict).
    pub(crate) fn idle_out(&self) {
        self.idled.store(true, Relaxed);
        self.close();
    }

    /// A direction ended with `why`: closes both unless the other direction already did,
    /// in which case `why` was caused by that close and is not counted.
    fn fail(&self, why: End) -> End {
        if self.closing.load(Relaxed) {
            return End::Eof;
        }
        self.close();
        why
    }

    /// Ends both directions: their waits return (end-of-file or an error).
    pub(crate) fn close(&self) {
        self.closing.store(true, Relaxed);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

/// Bytes of `s`'s send queue its peer has not acknowledged (`SIOCOUTQ`); 0 if unknown.
fn unsent(s: &TcpStream) -> u64 {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ on Linux) writes one int through the pointer given, which
    // points at `n`; on a descriptor that is not a TCP socket it fails and `n` stays 0.
    let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    if r == 0 { u64::try_from(n).unwrap_or(0) } else { 0 }
}

/// How one direction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The source sent end-of-file (or was shut down by the other direction).
    Eof,
    /// Reading the source failed.
    ReadFailed,
    /// Writing the destination failed.
    WriteFailed,
}

/// Serves one accepted client connection until both directions are done. Counts into
/// `counters`; `registry` keeps the connection reachable for a forced shutdown and the
/// idle sweep while it forwards.
pub(crate) fn serve(
    client: TcpStream,
    peer: SocketAddr,
    settings: &Settings,
    counters: &Arc<ListenerCounters>,
    registry: &Registry,
) {
    let pool = &settings.pool;
    pool.pending.fetch_add(1, Relaxed);
    let connected = connect(pool, counters);
    pool.pending.fetch_sub(1, Relaxed);
    let Some((backend, upstream)) = connected else {
        pool.no_backend.fetch_add(1, Relaxed);
        counters.error(ErrorKind::NoBackend);
        return;
    };
    backend.connections.fetch_add(1, Relaxed);
    backend.active.fetch_add(1, Relaxed);
    let _open = Open(&backend);

    for s in [&client, &upstream] {
        let _ = s.set_nodelay(true);
    }
    if let Some(version) = settings.config.proxy_protocol {
        let local = client.local_addr().unwrap_or(settings.bound);
        if (&upstream).write_all(&proxy_protocol::header(version, peer, local)).is_err() {
            counters.error(ErrorKind::BackendReset);
            return;
        }
    }
    let conn = Arc::new(Conn {
        client,
        upstream,
        idle: settings.config.idle_timeout,
        activity: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        idled: AtomicBool::new(false),
    });
    let id = registry.track(&conn);
    let splice = settings.config.splice;
    let back = {
        let (conn, counters) = (Arc::clone(&conn), Arc::clone(counters));
        kcoro::try_spawn(move || pipe(&conn, &conn.upstream, &conn.client, &counters.bytes_out, splice))
    };
    let Ok(back) = back else {
        counters.error(ErrorKind::Spawn);
        registry.untrack(id);
        return;
    };
    let there = pipe(&conn, &conn.client, &conn.upstream, &counters.bytes_in, splice);
    let home = back.join().unwrap_or(End::ReadFailed);
    registry.untrack(id);
    count_end(counters, there, ErrorKind::ClientReset, ErrorKind::BackendReset);
    count_end(counters, home, ErrorKind::BackendReset, ErrorKind::ClientReset);
    if conn.idled.load(Relaxed) {
        counters.error(ErrorKind::IdleTimeout);
    }
}

fn count_end(counters: &ListenerCounters, end: End, read_side: ErrorKind, write_side: ErrorKind) {
    match end {
        End::Eof => {}
        End::ReadFailed => counters.error(read_side),
        End::WriteFailed => counters.error(write_side),
    }
}

/// Decrements the backend's open count when the connection ends, however it ends.
struct Open<'a>(&'a Backend);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Relaxed);
    }
}

/// Connects to the backend the pool picks, then to the next one while connects fail.
fn connect(pool: &Pool, counters: &ListenerCounters) -> Option<(Arc<Backend>, TcpStream)> {
    let mut tried = vec![false; pool.backends.len()];
    let mut last = None;
    while let Some(i) = pool.pick(&tried, last) {
        (tried[i], last) = (true, Some(i));
        let backend = &pool.backends[i];
        match TcpStream::connect_timeout(&backend.addr, pool.config.connect_timeout) {
            Ok(s) => return Some((Arc::clone(backend), s)),
            Err(e) => {
                backend.connect_errors.fetch_add(1, Relaxed);
                counters.error(match e.kind() {
                    io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
                    io::ErrorKind::TimedOut => ErrorKind::ConnectTimeout,
                    _ => ErrorKind::ConnectFailed,
                });
            }
        }
    }
    None
}

/// Copies `from` to `to` until `from` ends (then half-closes `to`) or fails (an idle
/// connection's sockets are shut down by the sweeper: that ends it as end-of-file). With `splice`, a read that fills a whole buffer (a large
/// transfer) moves the rest of this direction to [`splice_rest`].
fn pipe(conn: &Conn, from: &TcpStream, to: &TcpStream, bytes: &AtomicU64, splice: bool) -> End {
    let mut buf: Option<Box<[u8]>> = None;
    let mut moved = 0u64;
    let mut reads = 0u32;
    let end = loop {
        let waited = match from.readable() {
            Ok(()) => {
                let b = buf.get_or_insert_with(take_buf);
                (&*from).read(b)
            }
            Err(e) => Err(e),
        };
        match waited {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                break End::Eof;
            }
            Ok(n) => {
                conn.touch();
                let Some(b) = buf.as_deref() else { unreachable!("read into a taken buffer") };
                if write_touching(conn, to, &b[..n]).is_err() {
                    break conn.fail(End::WriteFailed);
                }
                moved += n as u64;
                reads += 1;
                if reads == FLUSH_EVERY {
                    bytes.fetch_add(std::mem::take(&mut moved), Relaxed);
                    reads = 0;
                }
                if n < BUF_SIZE
                    && let Some(b) = buf.take()
                {
                    give_buf(b); // the socket is empty: wait without a buffer
                } else if n == BUF_SIZE
                    && splice
                    && let Ok(pipe) = Pipe::new()
                {
                    if let Some(b) = buf.take() {
                        give_buf(b);
                    }
                    bytes.fetch_add(std::mem::take(&mut moved), Relaxed);
                    return splice_rest(conn, &pipe, from, to, bytes);
                }
            }
            Err(_) => break conn.fail(End::ReadFailed),
        }
    };
    if let Some(b) = buf {
        give_buf(b);
    }
    bytes.fetch_add(moved, Relaxed);
    end
}

/// Writes all of `bytes`, touching `conn` after every write that moved some: a receiver
/// that reads slowly but steadily keeps its connection open (the idle timeout is for
/// nothing moving; a write waiting on a full socket is not that).
fn write_touching(conn: &Conn, mut to: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match to.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                conn.touch();
                bytes = &bytes[n..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// [`pipe`]'s loop through a kernel pipe (`splice(2)`), with the same endings.
fn splice_rest(conn: &Conn, pipe: &Pipe, from: &TcpStream, to: &TcpStream, bytes: &AtomicU64) -> End {
    let mut moved = 0u64;
    let mut chunks = 0u32;
    let end = loop {
        match pipe.forward(from, to, || conn.touch()) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                break End::Eof;
            }
            Ok(n) => {
                conn.touch();
                moved += n as u64;
                chunks += 1;
                if chunks == FLUSH_EVERY {
                    bytes.fetch_add(std::mem::take(&mut moved), Relaxed);
                    chunks = 0;
                }
            }
            Err(Failed::Read) => break conn.fail(End::ReadFailed),
            Err(Failed::Write) => break conn.fail(End::WriteFailed),
        }
    };
    bytes.fetch_add(moved, Relaxed);
    end
}
