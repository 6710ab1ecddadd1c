//! The transport: one stream socket (Unix or TCP), or on one host the shared-memory rings
//! the handshake may move a Unix connection to (`ring`), shared by a reader and a writer
//! coroutine; a frame reader over it, and an outbox that batches frames into one write.
//!
//! # The outbox
//! Producers (requests, replies) append whole frames to one buffer under a mutex, and ring
//! a conflated doorbell only when the buffer was empty. The writer swaps the buffer for its
//! spare and writes everything in one call per swap, so frames queued while a write is in
//! progress go out together in the next: batching without reordering. Descriptors to pass
//! (`SCM_RIGHTS`) are queued with the offset of the frame they belong to and sent with that
//! frame's first byte; the move of writes to the rings is queued the same way, at the end
//! of the handshake reply that announces it. A caller about to wait for an answer may write what is queued itself
//! (`flush_now`, or a push with [`Now`], which then leaves the writer unrung) when nobody
//! is writing, instead of waiting for the writer to be scheduled: one hand-off fewer on a
//! round trip.
//!
//! # Invariants
//! - `OutBuf::marks` offsets are ascending and inside `OutBuf::bytes` (or at its end).
//! - `closed` ⇒ nothing more is accepted; the writer exits once the buffer is written.
//! - At most one party writes to the socket at a time: the one that set `writing`. Whoever
//!   clears it with frames still queued makes sure the writer is rung.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, OnceLock};

use kcoro::chan::{self, Receiver, Sender};
use kcoro::net::{TcpStream, UnixStream};

use crate::IpcError;
use crate::proto::{FrameRef, HEADER_LEN, Limits, ProtoError, split_frame};
use crate::ring::link::Link;
use crate::server::served::Encode;

/// A connected stream socket.
pub(crate) enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// A connection's transport: its socket, and on the same host possibly the shared-memory
/// rings (`shm:`) the handshake moved it to. Reads and writes switch to the rings
/// separately, each at the byte the handshake says (`ring::link`).
pub(crate) struct Stream {
    sock: Sock,
    link: OnceLock<Link>,
    reads_on_link: AtomicBool,
    writes_on_link: AtomicBool,
}

impl Stream {
    pub(crate) fn new(sock: Sock) -> Stream {
        Stream {
            sock,
            link: OnceLock::new(),
            reads_on_link: AtomicBool::new(false),
            writes_on_link: AtomicBool::new(false),
        }
    }

    pub(crate) fn is_unix(&self) -> bool {
        matches!(self.sock, Sock::Unix(_))
    }

    /// Whether the connection runs over shared-memory rings.
    pub(crate) fn on_rings(&self) -> bool {
        self.reads_on_link.load(Acquire)
    }

    /// Installs the rings this connection may move to; false (and the rings dropped) if
    /// it has some already or is not a Unix socket.
    pub(crate) fn attach(&self, link: Link) -> bool {
        self.is_unix() && self.link.set(link).is_ok()
    }

    /// The rings attached, if any.
    pub(crate) fn link(&self) -> Option<&Link> {
        self.link.get()
    }

    /// From now on, reads come from the rings: the socket carries only descriptors, taken
    /// without waiting.
    pub(crate) fn start_ring_reads(&self) {
        if let (Some(_), Sock::Unix(s)) = (self.link.get(), &self.sock) {
            let _ = s.set_read_timeout(Some(std::time::Duration::ZERO));
            self.reads_on_link.store(true, Release);
        }
    }

    /// The rings' position of the next byte written, if writes go into the rings.
    fn ring_position(&self) -> Option<u64> {
        self.link.get().filter(|_| self.writes_on_link.load(Acquire)).map(Link::write_position)
    }

    /// Ends the holds of a write that gave the peer the first `written` bytes, starting at
    /// ring position `ring_start` (`None`: on the socket). A value whose frame was not
    /// written whole is given back. One written to the socket is the peer's; one written
    /// into a ring is the peer's once the peer has read it, so the link keeps it until then
    /// (the peer may be gone and never read it).
    fn settle(&self, holds: &mut Vec<(usize, Hold)>, ring_start: Option<u64>, written: usize) {
        for (end, hold) in holds.drain(..) {
            if end > written {
                continue; // dropped: given back
            }
            match (ring_start, self.link.get()) {
                (Some(at), Some(link)) => link.keep_until_read(at + end as u64, hold),
                _ => hold.disarm(),
            }
        }
    }

    /// From now on, writes go into the rings.
    pub(crate) fn start_ring_writes(&self) {
        if self.link.get().is_some() {
            self.writes_on_link.store(true, Release);
        }
    }

    /// Reads what is there into `buf`; descriptors that came with it go to `fds`.
    fn read(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        match (&self.sock, self.link.get()) {
            (Sock::Unix(s), Some(link)) if self.reads_on_link.load(Acquire) => link.read(buf, fds, s),
            (Sock::Unix(s), _) => s.recv_with_fds(buf, fds),
            (Sock::Tcp(s), _) => (&*s).read(buf),
        }
    }

    /// Over the rings, takes what is there without waiting (see [`Link::try_read`]);
    /// `None` also on a socket, which is read only by waiting.
    fn try_read(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<Option<usize>> {
        match (&self.sock, self.link.get()) {
            (Sock::Unix(s), Some(link)) if self.reads_on_link.load(Acquire) => link.try_read(buf, fds, s),
            _ => Ok(None),
        }
    }

    /// Writes `bytes`, adding to `written` what the peer was given (also when it fails).
    fn write_all(&self, bytes: &[u8], written: &mut usize) -> io::Result<()> {
        self.write_all_with_fds(bytes, &[], written)
    }

    /// Writes `bytes` with `fds` attached to the first byte (Unix only), adding to
    /// `written` what the peer was given (also when it fails).
    fn write_all_with_fds(
        &self,
        mut bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        written: &mut usize,
    ) -> io::Result<()> {
        match (&self.sock, self.link.get()) {
            (Sock::Unix(s), Some(link)) if self.writes_on_link.load(Acquire) => {
                return link.write_all(bytes, fds, s, written);
            }
            (Sock::Unix(s), _) if !fds.is_empty() => {
                let n = s.send_with_fds(bytes, fds)?;
                *written += n;
                bytes = &bytes[n..];
            }
            (Sock::Tcp(_), _) if !fds.is_empty() => {
                return Err(io::Error::new(io::ErrorKind::Unsupported, "descriptors need a Unix socket"));
            }
            _ => {}
        }
        while !bytes.is_empty() {
            let n = match &self.sock {
                Sock::Unix(s) => (&*s).write(bytes)?,
                Sock::Tcp(s) => (&*s).write(bytes)?,
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            *written += n;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Sets the socket's timeout of each read (before any rings: a refused or new
    /// connection's).
    pub(crate) fn set_read_timeout(&self, timeout: Option<std::time::Duration>) {
        let _ = match &self.sock {
            Sock::Unix(s) => s.set_read_timeout(timeout),
            Sock::Tcp(s) => s.set_read_timeout(timeout),
        };
    }

    /// Ends our direction only: the peer reads end of stream after what was written.
    pub(crate) fn finish_writes(&self) {
        self.shutdown_sock(std::net::Shutdown::Write);
    }

    fn shutdown_sock(&self, how: std::net::Shutdown) {
        let _ = match &self.sock {
            Sock::Unix(s) => s.shutdown(how),
            Sock::Tcp(s) => s.shutdown(how),
        };
    }

    /// Ends both directions: the peer's reader sees end of stream, ours wakes with it.
    pub(crate) fn shutdown(&self) {
        self.shutdown_sock(std::net::Shutdown::Both);
        if let Some(link) = self.link.get() {
            link.shutdown();
        }
    }
}

/// Reads frames off a stream into a growable buffer.
///
/// # Descriptors
/// A sender attaches descriptors (`SCM_RIGHTS`) to the first byte of the frame that
/// claims them (a `REGION_SHARE`). On a Unix stream socket they come out of the read that
/// returns the message they rode with, and that read ends with that message (the kernel
/// stops a read after a message carrying descriptors), possibly after bytes of earlier
/// messages: so the claiming frame starts somewhere in that read's bytes. Each descriptor
/// is kept with the stream range `[start, end)` of its read. A frame that starts in that
/// range is handed it; a frame that does not take it passes it on to the next frame only
/// if that one may still start in the range, else it is closed. So every descriptor is
/// claimed by a frame of its own read, or closed as soon as no such frame is left: a peer
/// cannot pile them up.
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `buf[start]`.
    offset: u64,
    /// Descriptors received, each with the stream range of the read it came with.
    fds: VecDeque<(u64, u64, OwnedFd)>,
    limits: Limits,
}

/// What [`FrameReader::next_ready`] found.
pub(crate) enum Step<R> {
    /// A whole frame, and what its handler returned.
    Frame(R),
    /// The peer closed the stream between frames.
    End,
    /// No whole frame without waiting.
    NotYet,
}

/// Most descriptors kept waiting for the frames of their reads (an honest peer sends one per
/// `REGION_SHARE`); more are closed as they come.
const MAX_PENDING_FDS: usize = 16;

/// Bytes read per call at least (the buffer grows for larger frames).
const READ_CHUNK: usize = 64 << 10;

/// Largest read buffer kept once it is empty; a larger one is given back. Above 1 MiB, so
/// a stream of 1 MiB elements does not regrow it for every frame.
const KEPT_BUFFER: usize = 2 << 20;

impl FrameReader {
    pub(crate) fn new(limits: Limits) -> Self {
        FrameReader { buf: vec![0; READ_CHUNK], start: 0, end: 0, offset: 0, fds: VecDeque::new(), limits }
    }

    /// Waits for the next whole frame and hands it to `f`, with the descriptors that came
    /// with it (closed after `f` unless it takes them). `Ok(None)`: the peer closed the
    /// stream between frames. A malformed or oversize frame is an error: the connection
    /// cannot be resynchronised.
    pub(crate) fn next<R>(
        &mut self,
        stream: &Stream,
        f: impl FnOnce(FrameRef<'_>, &mut VecDeque<OwnedFd>) -> R,
    ) -> Result<Option<R>, IpcError> {
        match self.step(stream, true, f)? {
            Step::Frame(r) => Ok(Some(r)),
            Step::End | Step::NotYet => Ok(None),
        }
    }

    /// [`next`](Self::next) without waiting: over the rings, the next whole frame if the
    /// bytes for it are there now, else [`Step::NotYet`] (and whatever did come is kept
    /// for the next call). Several parties may take turns (one at a time: a `Mutex`).
    pub(crate) fn next_ready<R>(
        &mut self,
        stream: &Stream,
        f: impl FnOnce(FrameRef<'_>, &mut VecDeque<OwnedFd>) -> R,
    ) -> Result<Step<R>, IpcError> {
        self.step(stream, false, f)
    }

    fn step<R>(
        &mut self,
        stream: &Stream,
        wait: bool,
        f: impl FnOnce(FrameRef<'_>, &mut VecDeque<OwnedFd>) -> R,
    ) -> Result<Step<R>, IpcError> {
        loop {
            let need = match split_frame(&self.buf[self.start..self.end], &self.limits)? {
                Some((frame, used)) => {
                    let (frame_start, frame_end) = (self.offset, self.offset + used as u64);
                    // Reads that ended before this frame: no frame of theirs is left.
                    while self.fds.front().is_some_and(|(_, end, _)| *end <= frame_start) {
                        self.fds.pop_front();
                    }
                    // This frame starts in the read they came with: its to claim.
                    let mut mine = VecDeque::new();
                    let mut ranges = Vec::new();
                    while self.fds.front().is_some_and(|(start, _, _)| *start <= frame_start) {
                        if let Some((start, end, fd)) = self.fds.pop_front() {
                            mine.push_back(fd);
                            ranges.push((start, end));
                        }
                    }
                    let r = f(frame, &mut mine);
                    // Unclaimed ones: a later frame of the same read may still claim them
                    // (the handler takes from the front); others close here.
                    let kept = ranges.len() - mine.len();
                    for ((start, end), fd) in ranges.into_iter().skip(kept).zip(mine).rev() {
                        if end > frame_end {
                            self.fds.push_front((start, end, fd));
                        }
                    }
                    self.offset = frame_end;
                    self.start += used;
                    if self.start == self.end {
                        (self.start, self.end) = (0, 0);
                        // A large frame's room goes with it: an idle connection keeps a
                        // read chunk, not the largest frame it ever read.
                        if self.buf.len() > KEPT_BUFFER {
                            self.buf = vec![0; READ_CHUNK];
                        }
                    }
                    return Ok(Step::Frame(r));
                }
                None => self.wanted(),
            };
            // Make room: move the partial frame to the front, grow for a large one.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            if self.buf.len() - self.end < READ_CHUNK / 4 {
                // Grown with what arrives (doubling, once the bytes that came fill it), not
                // to what the header announces: a peer that announces large frames and
                // sends little holds little of ours, however often a reader looks without
                // waiting (`next_ready`).
                let doubled = self.buf.len().saturating_mul(2);
                self.buf.resize(need.min(doubled).max(self.end + READ_CHUNK), 0);
            }
            let mut fds = Vec::new();
            let n = if wait {
                stream.read(&mut self.buf[self.end..], &mut fds).map_err(IpcError::Io)?
            } else {
                match stream.try_read(&mut self.buf[self.end..], &mut fds).map_err(IpcError::Io)? {
                    Some(n) => n,
                    None => return Ok(Step::NotYet),
                }
            };
            let at = self.offset + (self.end - self.start) as u64;
            let (read_end, partial_end) = (at + n as u64, self.offset + need as u64);
            // Bytes inside the frame being read, past its start: no frame starts there, so
            // descriptors that came with them have no frame to go to. Nor does a peer get
            // to have more than MAX_PENDING_FDS waiting.
            let mid_frame =
                at > self.offset && read_end <= partial_end && self.end - self.start >= HEADER_LEN;
            for fd in fds {
                if !mid_frame && self.fds.len() < MAX_PENDING_FDS {
                    self.fds.push_back((at, read_end, fd));
                }
            }
            if n == 0 {
                return if self.end == 0 {
                    Ok(Step::End)
                } else {
                    Err(ProtoError::Truncated("frame at end of stream").into())
                };
            }
            self.end += n;
        }
    }

    /// Changes the largest frame taken from here on (the server raises it once a
    /// connection's handshake is done).
    pub(crate) fn set_max_frame(&mut self, max: u32) {
        self.limits.max_frame = max;
    }

    /// Whether a whole frame is buffered: the next [`next`](Self::next) will not read.
    pub(crate) fn has_frame(&self) -> bool {
        self.end - self.start >= self.wanted()
    }

    /// Bytes the current partial frame needs in all (header known), else a header's worth.
    fn wanted(&self) -> usize {
        let avail = &self.buf[self.start..self.end];
        match avail.first_chunk::<{ crate::proto::HEADER_LEN }>() {
            Some(h) => crate::proto::HEADER_LEN + crate::proto::decode_header(h).len as usize,
            None => crate::proto::HEADER_LEN,
        }
    }
}

/// Something the writer does at a byte of the outbox, besides writing it.
enum Mark {
    /// Send these descriptors with the frame that starts here.
    Fds(Vec<OwnedFd>),
    /// From here on, write into the rings (the handshake reply that moves the connection
    /// ends here).
    RingWrites,
}

/// A value taken out of a channel for a reply frame: given back (to `give_back`) when it
/// is dropped before the peer has that frame whole, so a value whose reply never reached
/// the peer (the connection broke first) is not lost.
pub(crate) struct Hold {
    value: Option<Box<dyn Encode>>,
    give_back: Option<GiveBack>,
}

type GiveBack = Box<dyn FnOnce(Box<dyn Encode>) + Send>;

impl Hold {
    pub(crate) fn new(
        value: Box<dyn Encode>,
        give_back: impl FnOnce(Box<dyn Encode>) + Send + 'static,
    ) -> Hold {
        Hold { value: Some(value), give_back: Some(Box::new(give_back)) }
    }

    /// The value is the peer's: nothing to give back.
    pub(crate) fn disarm(mut self) {
        self.give_back = None;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let (Some(v), Some(give_back)) = (self.value.take(), self.give_back.take()) {
            give_back(v);
        }
    }
}

struct OutBuf {
    bytes: Vec<u8>,
    marks: Vec<(usize, Mark)>,
    /// Values of reply frames, with the byte their frame ends at.
    holds: Vec<(usize, Hold)>,
    closed: bool,
    /// Someone (the writer, or a caller of `flush_now`) is writing: nobody else may.
    writing: bool,
    /// The buffer `flush_now` swaps in, kept for its capacity.
    spare: Vec<u8>,
}

/// Whether a push also writes what is queued, from the calling coroutine, on this stream:
/// for a caller that would [`Outbox::flush_now`] right after (a reply or a request its
/// sender waits for; anything over the rings, where a write is a copy and not a system
/// call). It writes unless someone is writing (they take the frame with what they find
/// when done) or something marked is queued (the writer is rung for it), and the writer
/// coroutine is not rung for a frame that is about to be written: a wake-up of another
/// worker, per frame, that would find nothing left to write.
pub(crate) type Now<'a> = Option<&'a Stream>;

/// Frames waiting to be written, and the doorbell of the writer coroutine.
pub(crate) struct Outbox {
    buf: Mutex<OutBuf>,
    bell: Sender<()>,
    /// Rung when a write finished or the outbox closed: for [`wait_below`](Self::wait_below).
    written: (Sender<()>, Receiver<()>),
    max_frame: u32,
}

impl Outbox {
    /// An outbox and the receiving end of its doorbell, for [`Outbox::run_writer`].
    pub(crate) fn new(max_frame: u32) -> (Arc<Outbox>, Receiver<()>) {
        let (bell, rings) = chan::conflated();
        let buf = OutBuf {
            bytes: Vec::with_capacity(64 << 10),
            marks: Vec::new(),
            holds: Vec::new(),
            closed: false,
            writing: false,
            spare: Vec::new(),
        };
        (Arc::new(Outbox { buf: Mutex::new(buf), bell, written: chan::conflated(), max_frame }), rings)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OutBuf> {
        self.buf.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the frames `f` writes (it calls `FrameBuf::begin` and `finish`). Fails once
    /// the connection is closed, or with `f`'s error (the partial frame is removed).
    pub(crate) fn push(
        &self,
        f: impl FnOnce(&mut Vec<u8>, u32) -> Result<(), ProtoError>,
    ) -> Result<(), IpcError> {
        self.push_marked(None, None, None, None, |_, out, max| f(out, max))
    }

    /// As [`push`](Self::push), then written at once from the calling coroutine (see
    /// [`Now`]).
    pub(crate) fn push_and_flush(
        &self,
        stream: &Stream,
        f: impl FnOnce(&mut Vec<u8>, u32) -> Result<(), ProtoError>,
    ) -> Result<(), IpcError> {
        self.push_marked(None, None, None, Some(stream), |_, out, max| f(out, max))
    }

    /// As [`push`](Self::push), for a reply carrying the value `hold` holds (`f` gets it to
    /// encode): given back unless the peer gets the frame whole (at once if the push fails).
    /// With `now`, written at once (see [`Now`]).
    pub(crate) fn push_holding(
        &self,
        hold: Hold,
        now: Now<'_>,
        f: impl FnOnce(&dyn Encode, &mut Vec<u8>, u32) -> Result<(), ProtoError>,
    ) -> Result<(), IpcError> {
        self.push_marked(None, None, Some(hold), now, |value, out, max| match value {
            Some(v) => f(v, out, max),
            None => Ok(()), // a hold always has its value until it is dropped
        })
    }

    /// As [`push`](Self::push), with descriptors sent alongside the frame. With `now`,
    /// written at once (see [`Now`]) unless there are descriptors (the writer sends those).
    pub(crate) fn push_with_fds(
        &self,
        fds: Vec<OwnedFd>,
        now: Now<'_>,
        f: impl FnOnce(&mut Vec<u8>, u32) -> Result<(), ProtoError>,
    ) -> Result<(), IpcError> {
        let mark = (!fds.is_empty()).then_some(Mark::Fds(fds));
        self.push_marked(mark, None, None, now, |_, out, max| f(out, max))
    }

    /// As [`push`](Self::push); the bytes after this frame go into the rings.
    pub(crate) fn push_then_rings(
        &self,
        f: impl FnOnce(&mut Vec<u8>, u32) -> Result<(), ProtoError>,
    ) -> Result<(), IpcError> {
        self.push_marked(None, Some(Mark::RingWrites), None, None, |_, out, max| f(out, max))
    }

    /// Appends the frame `f` writes (given `hold`'s value to encode, if any), with the marks
    /// before and after it and the hold ending where it ends. A hold whose push fails drops
    /// here: its value is given back. With `now`, writes what is queued if it can (see
    /// [`Now`]); otherwise rings the writer if the buffer was empty.
    fn push_marked(
        &self,
        before: Option<Mark>,
        after: Option<Mark>,
        hold: Option<Hold>,
        now: Now<'_>,
        f: impl FnOnce(Option<&dyn Encode>, &mut Vec<u8>, u32) -> Result<(), ProtoError>,
    ) -> Result<(), IpcError> {
        let mut b = self.lock();
        if b.closed {
            return Err(IpcError::Closed(None));
        }
        let at = b.bytes.len();
        let value = hold.as_ref().and_then(|h| h.value.as_deref());
        if let Err(e) = f(value, &mut b.bytes, self.max_frame) {
            b.bytes.truncate(at);
            return Err(e.into());
        }
        let end = b.bytes.len();
        if let Some(m) = before {
            b.marks.push((at, m));
        }
        if let Some(m) = after {
            b.marks.push((end, m));
        }
        if let Some(h) = hold {
            b.holds.push((end, h));
        }
        if let Some(stream) = now {
            if b.writing {
                return Ok(()); // whoever is writing takes it with what they find when done
            }
            if b.marks.is_empty() {
                let taken = Self::take_for_writing(&mut b);
                drop(b);
                self.write_taken(stream, taken);
                return Ok(());
            }
        }
        drop(b);
        if at == 0 || now.is_some() {
            // Conflated: never waits; a ring already pending is enough.
            let _ = self.bell.try_send(());
        }
        Ok(())
    }

    /// The stream broke: the values of replies still queued go back now, not when the
    /// connection is dropped.
    fn give_back_queued(&self) {
        let holds = std::mem::take(&mut self.lock().holds);
        drop(holds);
    }

    /// Stops accepting frames; the writer finishes what is queued, then exits.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        let _ = self.bell.try_send(());
        let _ = self.written.0.try_send(());
    }

    /// Waits while more than `limit` bytes are queued and not being written, and the
    /// outbox is open: for a reader that must stop taking requests from a peer that does
    /// not read its replies (each request queues one; nothing else bounds them).
    pub(crate) fn wait_below(&self, limit: usize) {
        loop {
            {
                let b = self.lock();
                if b.closed || b.bytes.len() <= limit {
                    return;
                }
            }
            // Conflated: a write that finished since the look above left its ring here.
            if self.written.1.recv().is_err() {
                return;
            }
        }
    }

    /// The writer: writes batches until the outbox is closed and empty, or the socket
    /// fails (then the outbox is closed, and the error returned).
    pub(crate) fn run_writer(&self, stream: &Stream, rings: &Receiver<()>) -> Result<(), IpcError> {
        let mut spare = Vec::with_capacity(64 << 10);
        let mut marks = Vec::new();
        let mut holds = Vec::new();
        loop {
            let (closed, other) = {
                let mut b = self.lock();
                if !b.writing {
                    std::mem::swap(&mut b.bytes, &mut spare);
                    std::mem::swap(&mut b.marks, &mut marks);
                    std::mem::swap(&mut b.holds, &mut holds);
                    b.writing = !spare.is_empty();
                }
                (b.closed, b.writing && spare.is_empty())
            };
            if spare.is_empty() {
                // Nothing to write, or a `flush_now` is writing (it rings when it is done
                // and more is queued).
                if closed && !other {
                    return Ok(());
                }
                if rings.recv().is_err() {
                    return Ok(());
                }
                continue;
            }
            let (ring_start, mut written) = (stream.ring_position(), 0);
            let result = write_marked(stream, &spare, &mut marks, &mut written);
            stream.settle(&mut holds, ring_start, written);
            spare.clear();
            self.lock().writing = false;
            let _ = self.written.0.try_send(());
            if let Err(e) = result {
                self.close();
                self.give_back_queued();
                return Err(IpcError::Io(e));
            }
        }
    }

    /// Writes what is queued now from the calling coroutine or thread, unless the writer
    /// (or another caller) is writing or something is marked (then the writer does, as
    /// usual). For a caller about to wait for an answer: its frame goes out without waiting
    /// for the writer coroutine to be scheduled. A failed write closes the outbox; the
    /// reader then sees the broken stream.
    pub(crate) fn flush_now(&self, stream: &Stream) {
        let taken = {
            let mut b = self.lock();
            if b.writing || b.closed || b.bytes.is_empty() || !b.marks.is_empty() {
                return;
            }
            Self::take_for_writing(&mut b)
        };
        self.write_taken(stream, taken);
    }

    /// Takes what is queued (nothing marked, nobody writing) for the caller to write.
    fn take_for_writing(b: &mut OutBuf) -> (Vec<u8>, Vec<(usize, Hold)>) {
        b.writing = true;
        let spare = std::mem::take(&mut b.spare);
        (std::mem::replace(&mut b.bytes, spare), std::mem::take(&mut b.holds))
    }

    /// Writes what [`take_for_writing`](Self::take_for_writing) took; then lets others
    /// write, ringing the writer for what came meanwhile.
    fn write_taken(&self, stream: &Stream, (mut out, mut holds): (Vec<u8>, Vec<(usize, Hold)>)) {
        let (ring_start, mut written) = (stream.ring_position(), 0);
        let result = stream.write_all(&out, &mut written);
        stream.settle(&mut holds, ring_start, written);
        out.clear();
        let more = {
            let mut b = self.lock();
            b.writing = false;
            b.spare = out;
            if result.is_err() {
                b.closed = true;
            }
            !b.bytes.is_empty() || b.closed
        };
        if result.is_err() {
            self.give_back_queued();
        }
        if more {
            // Frames that came while we wrote rang nobody (the buffer was not empty for
            // them, or the writer found us writing): hand them to the writer.
            let _ = self.bell.try_send(());
            let _ = self.written.0.try_send(());
        }
    }
}

/// Writes `bytes`, doing each mark at its byte: descriptors with their frame's bytes, the
/// move to the rings before the bytes after it.
/// `written` counts the bytes the peer was given, also when it fails.
fn write_marked(
    stream: &Stream,
    bytes: &[u8],
    marks: &mut Vec<(usize, Mark)>,
    written: &mut usize,
) -> io::Result<()> {
    let mut pos = 0;
    for (at, mark) in marks.drain(..) {
        stream.write_all(&bytes[pos..at], written)?;
        pos = at;
        match mark {
            Mark::RingWrites => stream.start_ring_writes(),
            Mark::Fds(fds) => {
                let next = fds_next_or(bytes, at);
                let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                stream.write_all_with_fds(&bytes[at..next], &borrowed, written)?;
                pos = next;
            }
        }
    }
    stream.write_all(&bytes[pos..], written)
}

/// End of the frame starting at `at` (its header gives the length).
fn fds_next_or(bytes: &[u8], at: usize) -> usize {
    bytes[at..].first_chunk::<{ crate::proto::HEADER_LEN }>().map_or(bytes.len(), |h| {
        (at + crate::proto::HEADER_LEN + crate::proto::decode_header(h).len as usize).min(bytes.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Attr, Cmd, FrameBuf};

    /// A header announcing `len` payload bytes.
    fn header(len: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..2].copy_from_slice(&Cmd::GET_INFO.0.to_be_bytes());
        h[4..].copy_from_slice(&len.to_be_bytes());
        h
    }

    /// Reads frames from `bytes` (then the end of the stream) until it ends; the reader's
    /// buffer size at the end, and the frames read.
    fn read_all(bytes: Vec<u8>) -> (usize, usize) {
        kcoro::run(move || {
            let (ours, mut theirs) = UnixStream::pair().unwrap();
            // Whatever the reader makes of them: it may stop reading early.
            let writer = kcoro::spawn(move || drop(theirs.write_all(&bytes)));
            let stream = Stream::new(Sock::Unix(ours));
            let mut frames = FrameReader::new(Limits::default());
            let mut n = 0;
            while let Ok(Some(())) = frames.next(&stream, |_, _| ()) {
                n += 1;
            }
            drop(stream);
            writer.join().unwrap();
            (frames.buf.len(), n)
        })
    }

    #[test]
    fn an_announced_frame_costs_what_arrives_not_what_it_announces() {
        // 15 MiB announced, 1 KiB sent, then the end: the reader holds about a read's worth.
        let mut bytes = header(15 << 20).to_vec();
        bytes.extend_from_slice(&[0; 1024]);
        let (buffered, frames) = read_all(bytes);
        assert_eq!(frames, 0);
        assert!(buffered <= 2 * READ_CHUNK, "a 15 MiB header made the reader hold {buffered} bytes");
    }

    #[test]
    fn looking_without_waiting_never_grows_the_buffer_for_bytes_that_did_not_come() {
        kcoro::run(|| {
            let (ours, _theirs) = UnixStream::pair().unwrap();
            let stream = Stream::new(Sock::Unix(ours));
            let mut frames = FrameReader::new(Limits::default());
            // 15 MiB announced, 1 KiB of it here; then a thousand looks find nothing more.
            let mut bytes = header(15 << 20).to_vec();
            bytes.extend_from_slice(&[0; 1024]);
            frames.buf[..bytes.len()].copy_from_slice(&bytes);
            frames.end = bytes.len();
            for _ in 0..1000 {
                assert!(matches!(frames.next_ready(&stream, |_, _| ()), Ok(Step::NotYet)));
            }
            let held = frames.buf.len();
            assert!(held <= 2 * READ_CHUNK, "a 15 MiB header made a looking reader hold {held} bytes");
        });
    }

    #[test]
    fn a_large_frames_room_is_given_back_once_it_is_read() {
        let mut bytes = Vec::new();
        for len in [5 << 20, 100, 3 << 20, 10] {
            let mut f = FrameBuf::begin(&mut bytes, Cmd::GET_INFO, 0);
            f.bytes(Attr::ELEMENT, &vec![7; len]);
            f.finish(u32::MAX).unwrap();
        }
        let (buffered, frames) = read_all(bytes);
        assert_eq!(frames, 4, "every frame read whole");
        assert!(buffered <= KEPT_BUFFER, "an idle reader kept {buffered} bytes");
    }
}
