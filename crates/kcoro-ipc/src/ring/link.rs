//! A connection's rings with their bells: what a [`crate::wire::Stream`] reads and writes
//! once the handshake has moved it to shared memory.
//!
//! # The handshake (client side: [`Offer`]; server side: [`Link::accept`])
//! The client makes the ring memory and one Unix socket pair per ring, and sends HELLO with
//! `RING_BYTES = cap` and three descriptors: the memfd, and the server's ends of the two
//! pairs (ring 0's, then ring 1's). It then closes its copies of the server's ends, so that
//! the server's death closes them. A server that takes the rings answers HELLO with
//! `RING_BYTES` over the socket and writes everything after that reply into ring 1; the
//! client reads everything after that reply from ring 1 and writes into ring 0. A server
//! that does not (an older one, or one whose limits refuse) answers without `RING_BYTES`
//! and both sides stay on the socket.
//!
//! # Bells
//! Each ring's socket pair has a producer's end and a consumer's end. A side rings the other
//! by writing one byte to its end without waiting (a full socket already holds a wake-up),
//! and sleeps by reading its end, which parks the coroutine. End of file on it means the
//! other side closed the connection or died.
//!
//! # Descriptors over a link
//! Region descriptors (`REGION_SHARE`) still travel over the Unix socket: before the bytes
//! of the frame they belong to go into the ring, the sender writes that frame's ring position
//! (8 bytes, big-endian) to the socket with the descriptors attached, and counts the record
//! in the control page. The reader, after a ring read, looks at the socket only if that
//! count passed its own (so a link in flow makes no system call), takes what the socket
//! holds without waiting, and hands out the descriptors whose position that read covered;
//! earlier ones (a lying peer) are closed, later ones wait (at most [`MAX_WAITING_FDS`]).

use std::collections::VecDeque;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kcoro::net::UnixStream;

use super::mem::{RingMem, TO_CLIENT, TO_SERVER};
use super::{Bell, Consumer, Producer, ReadWait, Spin, Waited};
use crate::proto::HEADER_LEN;
use crate::wire::Hold;

/// Spin of a reader on an empty ring before it sleeps, unless configured otherwise.
pub(crate) const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Each ring's bytes, unless configured otherwise.
pub(crate) const DEFAULT_RING: u64 = 256 << 10;

/// Descriptors at most kept for later ring reads.
const MAX_WAITING_FDS: usize = 16;

/// Descriptors at most handed out for one ring read.
const MAX_HANDED_FDS: usize = 64;

/// One end of a ring's socket pair.
pub(crate) struct SockBell {
    sock: UnixStream,
}

impl SockBell {
    /// A socket pair: our end, registered with the current runtime, and the peer's, to pass.
    fn pair() -> io::Result<(SockBell, OwnedFd)> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        Ok((SockBell { sock: UnixStream::from_std(ours)? }, theirs.into()))
    }

    /// Adopts an end a peer passed, if it is a Unix stream socket.
    fn adopt(fd: OwnedFd) -> io::Result<SockBell> {
        let opt = |name| -> io::Result<libc::c_int> {
            let mut v: libc::c_int = 0;
            let mut len = size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: getsockopt writes one int into `v`; `len` says so.
            let r = unsafe {
                libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, name, (&raw mut v).cast(), &mut len)
            };
            if r == 0 { Ok(v) } else { Err(io::Error::last_os_error()) }
        };
        let (domain, kind) = (opt(libc::SO_DOMAIN), opt(libc::SO_TYPE));
        if domain.ok() != Some(libc::AF_UNIX) || kind.ok() != Some(libc::SOCK_STREAM) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a ring's bell is not a Unix stream socket",
            ));
        }
        Ok(SockBell { sock: UnixStream::from_std(std::os::unix::net::UnixStream::from(fd))? })
    }

    fn shutdown(&self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

impl Bell for SockBell {
    fn ring(&self) {
        // SAFETY: a one-byte send from a local on our socket; never waits, never raises
        // SIGPIPE. A full socket already holds a wake-up; a closed one has nobody to wake.
        unsafe {
            libc::send(
                self.sock.as_fd().as_raw_fd(),
                [1u8].as_ptr().cast(),
                1,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
    }

    fn wait(&self) -> io::Result<bool> {
        // More than one wake-up's worth: a peer that fills the socket costs one read per
        // kilobyte, not per 64 bytes.
        let mut drained = [0u8; 1024];
        match (&self.sock).read(&mut drained) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Descriptors that came over the socket, each with the ring position of its frame.
#[derive(Default)]
struct WaitingFds {
    /// Bytes of a position whose rest has not come yet.
    partial: Vec<u8>,
    /// Positions read, not yet paired with their descriptors.
    positions: VecDeque<u64>,
    /// Descriptors read, not yet paired with their positions.
    fds: VecDeque<OwnedFd>,
    /// Paired, for the ring read that covers the position.
    ready: VecDeque<(u64, OwnedFd)>,
    /// Records taken off the socket.
    records: u64,
}

/// The rings of a connection, as one side uses them.
pub(crate) struct Link {
    tx: Mutex<Producer<Arc<SockBell>>>,
    rx: Mutex<Consumer<Arc<SockBell>>>,
    /// Waits for bytes in `rx`'s ring without holding `rx` ([`Link::wait_readable`]).
    rx_wait: ReadWait<Arc<SockBell>>,
    /// The consumer's closed flag: set by [`Link::shutdown`], while a read may hold `rx`.
    rx_closed: Arc<std::sync::atomic::AtomicBool>,
    bells: [Arc<SockBell>; 2],
    waiting: Mutex<WaitingFds>,
    /// Values of reply frames written into our ring, with the ring position their frame
    /// ends at, until the peer has read that far (given back if it never does).
    unread: Mutex<VecDeque<(u64, Hold)>>,
    mem: Arc<RingMem>,
    /// The ring we write: its record count is ours to raise.
    out: usize,
}

impl Drop for Link {
    /// The connection is gone: what the peer read of our ring is its; the values of the
    /// frames it never read are given back (their holds drop armed).
    fn drop(&mut self) {
        let read = self.tx.get_mut().unwrap_or_else(|e| e.into_inner()).read_up_to();
        let_go_of_read(self.unread.get_mut().unwrap_or_else(|e| e.into_inner()), read);
    }
}

/// Disarms the holds of frames that end at or before ring position `read`: the peer has them.
fn let_go_of_read(unread: &mut VecDeque<(u64, Hold)>, read: u64) {
    while unread.front().is_some_and(|(at, _)| *at <= read) {
        if let Some((_, h)) = unread.pop_front() {
            h.disarm();
        }
    }
}

/// What a client sends with HELLO to move to rings, and its side of them.
pub(crate) struct Offer {
    /// The link, to install if the server accepts.
    pub(crate) link: Link,
    /// The memfd and the server's bell ends, to attach to HELLO (in this order).
    pub(crate) fds: Vec<OwnedFd>,
}

fn busy() -> io::Error {
    io::Error::other("a ring used by two readers or two writers at once")
}

impl Link {
    /// The client's side: new rings of `cap` bytes, read with `spin`.
    pub(crate) fn offer(cap: u64, spin: Duration) -> io::Result<Offer> {
        let mem = RingMem::create(cap)?;
        let (to_server, server_end0) = SockBell::pair()?;
        let (to_client, server_end1) = SockBell::pair()?;
        let fds = vec![mem.fd().try_clone_to_owned()?, server_end0, server_end1];
        Ok(Offer { link: Link::new(mem, TO_SERVER, to_server, to_client, spin), fds })
    }

    /// The server's side: the client's memfd of rings of `cap` bytes (at most `max_cap`)
    /// and the two bell ends, checked (see [`RingMem::import`]).
    pub(crate) fn accept(fds: [OwnedFd; 3], cap: u64, max_cap: u64, spin: Duration) -> io::Result<Link> {
        let [memfd, end0, end1] = fds;
        let mem = RingMem::import(memfd, cap, max_cap)?;
        let (to_server, to_client) = (SockBell::adopt(end0)?, SockBell::adopt(end1)?);
        Ok(Link::new(mem, TO_CLIENT, to_client, to_server, spin))
    }

    /// A link writing ring `out` (ringing and waiting on `out_bell`) and reading the other
    /// (on `in_bell`).
    fn new(mem: Arc<RingMem>, out: usize, out_bell: SockBell, in_bell: SockBell, spin: Duration) -> Link {
        let (out_bell, in_bell) = (Arc::new(out_bell), Arc::new(in_bell));
        let rx = Consumer::new(mem.ring(1 - out), Arc::clone(&in_bell), spin);
        Link {
            tx: Mutex::new(Producer::new(mem.ring(out), Arc::clone(&out_bell))),
            rx_closed: rx.closed_flag(),
            rx_wait: rx.waiter(),
            rx: Mutex::new(rx),
            bells: [out_bell, in_bell],
            waiting: Mutex::new(WaitingFds::default()),
            unread: Mutex::new(VecDeque::new()),
            mem,
            out,
        }
    }

    /// Bytes mapped for the rings.
    pub(crate) fn mapped(&self) -> usize {
        self.mem.len()
    }

    /// Each ring's capacity.
    pub(crate) fn cap(&self) -> u64 {
        self.mem.cap()
    }

    /// Reads what the ring holds into `buf`, waiting for something; 0 at the end. The
    /// descriptors `control` holds for frames this read covers go to `fds`.
    pub(crate) fn read(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        control: &UnixStream,
    ) -> io::Result<usize> {
        let mut rx = self.rx.try_lock().map_err(|_| busy())?;
        let from = rx.position();
        let n = rx.read(buf)?;
        let to = rx.position();
        drop(rx);
        self.hand_out_fds(from, to, fds, control);
        Ok(n)
    }

    /// Takes what the ring holds now into `buf`, without waiting: `None` when it is empty
    /// or another reader is taking, `Some(0)` once our side closed. Descriptors as for
    /// [`Link::read`].
    pub(crate) fn try_read(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        control: &UnixStream,
    ) -> io::Result<Option<usize>> {
        let mut rx = match self.rx.try_lock() {
            Ok(rx) => rx,
            Err(std::sync::TryLockError::WouldBlock) => return Ok(None),
            Err(std::sync::TryLockError::Poisoned(_)) => return Err(busy()),
        };
        let from = rx.position();
        let n = rx.try_read(buf)?;
        let to = rx.position();
        drop(rx);
        if n.is_some_and(|n| n > 0) {
            self.hand_out_fds(from, to, fds, control);
        }
        Ok(n)
    }

    /// A fresh spin of the reading ring's budget, for [`Link::wait_readable`].
    pub(crate) fn read_spin(&self) -> Spin {
        self.rx_wait.spin()
    }

    /// Waits, spending `spin`, until the ring we read may hold bytes ([`ReadWait::wait`]),
    /// holding nothing a [`Link::try_read`] needs.
    pub(crate) fn wait_readable(&self, spin: &mut Spin) -> io::Result<Waited> {
        self.rx_wait.wait(spin)
    }

    /// Writes `bytes` into the ring, after sending `attach` (if any) over `control` with
    /// the ring position where `bytes` start; adds to `written` the bytes that went into
    /// the ring (also when it fails).
    pub(crate) fn write_all(
        &self,
        bytes: &[u8],
        attach: &[BorrowedFd<'_>],
        control: &UnixStream,
        written: &mut usize,
    ) -> io::Result<()> {
        let mut tx = self.tx.try_lock().map_err(|_| busy())?;
        if !attach.is_empty() {
            let at = tx.position().to_be_bytes();
            let mut sent = control.send_with_fds(&at, attach)?;
            while sent < at.len() {
                sent += control.send_with_fds(&at[sent..], &[])?;
            }
            self.mem.records(self.out).fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        let start = tx.position();
        let r = tx.write_all(bytes);
        *written += (tx.position() - start) as usize;
        r
    }

    /// Ring position of the next byte written.
    pub(crate) fn write_position(&self) -> u64 {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).position()
    }

    /// Keeps `hold` until the peer has read our ring up to `end`; lets go of those it has.
    pub(crate) fn keep_until_read(&self, end: u64, hold: Hold) {
        let mut unread = self.unread.lock().unwrap_or_else(|e| e.into_inner());
        let read = self.tx.lock().unwrap_or_else(|e| e.into_inner()).read_up_to();
        let_go_of_read(&mut unread, read);
        if end <= read {
            hold.disarm();
        } else {
            unread.push_back((end, hold));
        }
    }

    /// Wakes both of our sleepers with the end of the stream, and the peer's too. Nothing
    /// more is read from the peer's ring: what it wrote after this stays unread, as the
    /// peer sees in our tail.
    pub(crate) fn shutdown(&self) {
        self.rx_closed.store(true, std::sync::atomic::Ordering::Release);
        for b in &self.bells {
            b.shutdown();
        }
    }

    /// Takes what `control` holds now and hands out the descriptors for ring positions in
    /// `[from, to)`; closes those before `from`.
    ///
    /// Bounded by what the ring read covered, since the record count and the socket are
    /// the peer's: a frame is at least [`HEADER_LEN`] bytes and has at most one record, so
    /// at most `(to - from) / HEADER_LEN` records (eight per socket read) can belong to
    /// this read, and at most [`MAX_HANDED_FDS`] descriptors are handed out. A peer that
    /// claims records without end or floods the socket cannot hold this coroutine in the
    /// loop, nor make it keep what it sends.
    fn hand_out_fds(&self, from: u64, to: u64, out: &mut Vec<OwnedFd>, control: &UnixStream) {
        let mut w = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let sent = self.mem.records(1 - self.out).load(std::sync::atomic::Ordering::Acquire);
        if sent == w.records && w.ready.is_empty() {
            return; // nothing on the socket: no system call
        }
        let frames = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX) / HEADER_LEN;
        let mut handed = 0;
        let mut give = |p: u64, fd: OwnedFd, keep: &mut VecDeque<(u64, OwnedFd)>| {
            if p >= to {
                if keep.len() < MAX_WAITING_FDS {
                    keep.push_back((p, fd));
                }
            } else if p >= from && handed < MAX_HANDED_FDS {
                out.push(fd);
                handed += 1;
            } // else: a frame already read, or past the bound: closed here
        };
        let mut keep = VecDeque::new();
        while let Some((p, fd)) = w.ready.pop_front() {
            give(p, fd, &mut keep);
        }
        let mut buf = [0u8; 64];
        for _ in 0..frames.div_ceil(8).max(1) {
            if w.records >= sent {
                break;
            }
            let mut got = Vec::new();
            let read = control.recv_with_fds(&mut buf, &mut got);
            w.fds.extend(got);
            let n = match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            w.partial.extend_from_slice(&buf[..n]);
            while w.partial.len() >= 8 {
                let mut be = [0u8; 8];
                be.copy_from_slice(&w.partial[..8]);
                w.partial.drain(..8);
                w.positions.push_back(u64::from_be_bytes(be));
                w.records += 1;
            }
            while !w.positions.is_empty() && !w.fds.is_empty() {
                if let (Some(p), Some(fd)) = (w.positions.pop_front(), w.fds.pop_front()) {
                    give(p, fd, &mut keep);
                }
            }
            // A lying peer's extra descriptors or positions: never kept past the bound.
            while w.fds.len() > MAX_WAITING_FDS {
                w.fds.pop_front();
            }
            while w.positions.len() > MAX_WAITING_FDS {
                w.positions.pop_front();
            }
        }
        w.ready = keep;
    }
}
