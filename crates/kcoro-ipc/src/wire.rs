//! The transport: one stream socket (Unix or TCP) shared by a reader and a writer
//! coroutine, a frame reader over it, and an outbox that batches frames into one write.
//!
//! # The outbox
//! Producers (requests, replies) append whole frames to one buffer under a mutex, and ring
//! a conflated doorbell only when the buffer was empty. The writer swaps the buffer for its
//! spare and writes everything in one call per swap, so frames queued while a write is in
//! progress go out together in the next: batching without reordering. A descriptor to pass
//! (`SCM_RIGHTS`) is queued with the offset of the frame it belongs to and sent with that
//! frame's first byte. A caller about to wait for an answer may write what is queued itself
//! (`flush_now`) when nobody is writing, instead of waiting for the writer to be scheduled:
//! one hand-off fewer on a round trip.
//!
//! # Invariants
//! - `OutBuf::fds` offsets are ascending and inside `OutBuf::bytes`.
//! - `closed` ⇒ nothing more is accepted; the writer exits once the buffer is written.
//! - At most one party writes to the socket at a time: the one that set `writing`. Whoever
//!   clears it with frames still queued makes sure the writer is rung.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};

use kcoro::chan::{self, Receiver, Sender};
use kcoro::net::{TcpStream, UnixStream};

use crate::IpcError;
use crate::proto::{FrameRef, HEADER_LEN, Limits, ProtoError, split_frame};

/// A connected stream socket.
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    pub(crate) fn is_unix(&self) -> bool {
        matches!(self, Stream::Unix(_))
    }

    /// Reads what is there into `buf`; descriptors that came with it go to `fds`.
    fn read(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.recv_with_fds(buf, fds),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }

    fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = match self {
                Stream::Unix(s) => (&*s).write(bytes)?,
                Stream::Tcp(s) => (&*s).write(bytes)?,
            };
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Writes `bytes` with `fd` attached to the first byte (Unix only).
    fn write_all_with_fd(&self, bytes: &[u8], fd: &OwnedFd) -> io::Result<()> {
        let Stream::Unix(s) = self else {
            return Err(io::Error::new(io::ErrorKind::Unsupported, "descriptors need a Unix socket"));
        };
        let n = s.send_with_fds(bytes, &[fd.as_fd()])?;
        self.write_all(&bytes[n..])
    }

    /// Ends both directions: the peer's reader sees end of stream, ours wakes with it.
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
        };
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

/// Most descriptors kept waiting for the frames of their reads (an honest peer sends one per
/// `REGION_SHARE`); more are closed as they come.
const MAX_PENDING_FDS: usize = 16;

/// Bytes read per call at least (the buffer grows for larger frames).
const READ_CHUNK: usize = 64 << 10;

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
                    }
                    return Ok(Some(r));
                }
                None => self.wanted(),
            };
            // Make room: move the partial frame to the front, grow for a large one.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            if self.buf.len() < need.max(self.end + READ_CHUNK / 4) {
                self.buf.resize(need.max(self.end + READ_CHUNK), 0);
            }
            let mut fds = Vec::new();
            let n = stream.read(&mut self.buf[self.end..], &mut fds).map_err(IpcError::Io)?;
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
                    Ok(None)
                } else {
                    Err(ProtoError::Truncated("frame at end of stream").into())
                };
            }
            self.end += n;
        }
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

struct OutBuf {
    bytes: Vec<u8>,
    fds: Vec<(usize, OwnedFd)>,
    closed: bool,
    /// Someone (the writer, or a caller of `flush_now`) is writing: nobody else may.
    writing: bool,
    /// The buffer `flush_now` swaps in, kept for its capacity.
    spare: Vec<u8>,
}

/// Frames waiting to be written, and the doorbell of the writer coroutine.
pub(crate) struct Outbox {
    buf: Mutex<OutBuf>,
    bell: Sender<()>,
    max_frame: u32,
}

impl Outbox {
    /// An outbox and the receiving end of its doorbell, for [`Outbox::run_writer`].
    pub(crate) fn new(max_frame: u32) -> (Arc<Outbox>, Receiver<()>) {
        let (bell, rings) = chan::conflated();
        let buf = OutBuf {
            bytes: Vec::with_capacity(64 << 10),
            fds: Vec::new(),
            closed: false,
            writing: false,
            spare: Vec::new(),
        };
        (Arc::new(Outbox { buf: Mutex::new(buf), bell, max_frame }), rings)
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
        self.push_with_fd(None, f)
    }

    /// As [`push`](Self::push), with a descriptor sent alongside the frame.
    pub(crate) fn push_with_fd(
        &self,
        fd: Option<OwnedFd>,
        f: impl FnOnce(&mut Vec<u8>, u32) -> Result<(), ProtoError>,
    ) -> Result<(), IpcError> {
        let mut b = self.lock();
        if b.closed {
            return Err(IpcError::Closed(None));
        }
        let at = b.bytes.len();
        if let Err(e) = f(&mut b.bytes, self.max_frame) {
            b.bytes.truncate(at);
            return Err(e.into());
        }
        if let Some(fd) = fd {
            b.fds.push((at, fd));
        }
        drop(b);
        if at == 0 {
            // Conflated: never waits; a ring already pending is enough.
            let _ = self.bell.try_send(());
        }
        Ok(())
    }

    /// Stops accepting frames; the writer finishes what is queued, then exits.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        let _ = self.bell.try_send(());
    }

    /// The writer: writes batches until the outbox is closed and empty, or the socket
    /// fails (then the outbox is closed, and the error returned).
    pub(crate) fn run_writer(&self, stream: &Stream, rings: &Receiver<()>) -> Result<(), IpcError> {
        let mut spare = Vec::with_capacity(64 << 10);
        let mut fds = Vec::new();
        loop {
            let (closed, other) = {
                let mut b = self.lock();
                if !b.writing {
                    std::mem::swap(&mut b.bytes, &mut spare);
                    std::mem::swap(&mut b.fds, &mut fds);
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
            let mut pos = 0;
            let result = (|| {
                for (at, fd) in fds.drain(..) {
                    stream.write_all(&spare[pos..at])?;
                    let next = fds_next_or(&spare, at);
                    stream.write_all_with_fd(&spare[at..next], &fd)?;
                    pos = next;
                }
                stream.write_all(&spare[pos..])
            })();
            spare.clear();
            self.lock().writing = false;
            if let Err(e) = result {
                self.close();
                return Err(IpcError::Io(e));
            }
        }
    }

    /// Writes what is queued now from the calling coroutine or thread, unless the writer
    /// (or another caller) is writing or a descriptor is queued (then the writer does, as
    /// usual). For a caller about to wait for an answer: its frame goes out without waiting
    /// for the writer coroutine to be scheduled. A failed write closes the outbox; the
    /// reader then sees the broken stream.
    pub(crate) fn flush_now(&self, stream: &Stream) {
        let mut out = {
            let mut b = self.lock();
            if b.writing || b.closed || b.bytes.is_empty() || !b.fds.is_empty() {
                return;
            }
            b.writing = true;
            let spare = std::mem::take(&mut b.spare);
            std::mem::replace(&mut b.bytes, spare)
        };
        let result = stream.write_all(&out);
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
        if more {
            // Frames that came while we wrote rang nobody (the buffer was not empty for
            // them, or the writer found us writing): hand them to the writer.
            let _ = self.bell.try_send(());
        }
    }
}

/// End of the frame starting at `at` (its header gives the length).
fn fds_next_or(bytes: &[u8], at: usize) -> usize {
    bytes[at..].first_chunk::<{ crate::proto::HEADER_LEN }>().map_or(bytes.len(), |h| {
        (at + crate::proto::HEADER_LEN + crate::proto::decode_header(h).len as usize).min(bytes.len())
    })
}
