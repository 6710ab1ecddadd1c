//! A client that writes frames by hand and reads replies: to play a peer that does what
//! the kcoro client never would (another connection's ids, flags, descriptors it never
//! claims), over a Unix socket or TCP.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;

use kcoro_ipc::proto::{
    Attr, Cmd, FLAG_REPLY, FrameBuf, FrameRef, HEADER_LEN, Header, VERSION_MAJOR, decode_header,
};

use super::{ServerProc, WATCHDOG};

/// One frame as it came.
pub struct Got {
    pub cmd: Cmd,
    pub flags: u16,
    pub payload: Vec<u8>,
}

impl Got {
    pub fn frame(&self) -> FrameRef<'_> {
        let h = Header { cmd: self.cmd, flags: self.flags, len: self.payload.len() as u32 };
        FrameRef::parse(h, &self.payload, 1000).unwrap()
    }
    pub fn result(&self) -> i32 {
        self.frame().result().unwrap()
    }
    pub fn error(&self) -> String {
        self.frame().str(Attr::ERROR).unwrap().unwrap_or("").to_string()
    }
}

enum Sock {
    Unix(UnixStream),
    Tcp(TcpStream),
}

pub struct Raw {
    s: Sock,
    next: u64,
    /// Replies `reply_to` read past while looking for another: replies to requests sent
    /// together may come in any order, and the one skipped is the next one asked for.
    skipped: Vec<Got>,
}

impl Raw {
    /// Connects to the server's address (`unix:` or `tcp:`).
    pub fn connect(s: &ServerProc) -> Raw {
        Raw::connect_to(&s.addr)
    }

    pub fn connect_to(addr: &str) -> Raw {
        let s = match (addr.strip_prefix("unix:"), addr.strip_prefix("tcp:")) {
            (Some(path), _) => {
                let s = UnixStream::connect(path).unwrap();
                s.set_read_timeout(Some(WATCHDOG)).unwrap();
                Sock::Unix(s)
            }
            (_, Some(hp)) => {
                let s = TcpStream::connect(hp).unwrap();
                s.set_read_timeout(Some(WATCHDOG)).unwrap();
                Sock::Tcp(s)
            }
            _ => panic!("not an address: {addr}"),
        };
        Raw { s, next: 1, skipped: Vec::new() }
    }

    fn write(&mut self, bytes: &[u8]) {
        match &mut self.s {
            Sock::Unix(s) => s.write_all(bytes).unwrap(),
            Sock::Tcp(s) => s.write_all(bytes).unwrap(),
        }
    }

    /// A frame with the next REQ_ID and what `build` adds; returns the REQ_ID.
    pub fn frame(&mut self, cmd: Cmd, flags: u16, build: impl FnOnce(&mut FrameBuf<'_>)) -> (u64, Vec<u8>) {
        let req = self.next;
        self.next += 1;
        let mut out = Vec::new();
        let mut f = FrameBuf::begin(&mut out, cmd, flags);
        f.u64(Attr::REQ_ID, req);
        build(&mut f);
        f.finish(u32::MAX).unwrap();
        (req, out)
    }

    pub fn send(&mut self, cmd: Cmd, build: impl FnOnce(&mut FrameBuf<'_>)) -> u64 {
        let (req, out) = self.frame(cmd, 0, build);
        self.write(&out);
        req
    }

    /// Sends a frame with `fds` attached to its first byte (`SCM_RIGHTS`, Unix only).
    pub fn send_with_fds(
        &mut self,
        cmd: Cmd,
        fds: &[BorrowedFd<'_>],
        build: impl FnOnce(&mut FrameBuf<'_>),
    ) -> u64 {
        let (req, out) = self.frame(cmd, 0, build);
        let Sock::Unix(s) = &self.s else { panic!("descriptors need a Unix socket") };
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let n = send_fds(s.as_raw_fd(), &out, &raw);
        self.write(&out[n..]);
        req
    }

    pub fn bytes(&mut self, raw: &[u8]) {
        self.write(raw);
    }

    /// Writes `raw`; an error if the server has closed the connection.
    pub fn try_bytes(&mut self, raw: &[u8]) -> std::io::Result<()> {
        match &mut self.s {
            Sock::Unix(s) => s.write_all(raw),
            Sock::Tcp(s) => s.write_all(raw),
        }
    }

    /// The next frame, `Ok(None)` at the end of the stream, an error if neither came
    /// (the read timed out).
    pub fn next_or_end(&mut self) -> std::io::Result<Option<Got>> {
        match self.read() {
            Some(g) => Ok(Some(g)),
            None => {
                let mut probe = [0u8; 1];
                let n = match &mut self.s {
                    Sock::Unix(s) => s.read(&mut probe)?,
                    Sock::Tcp(s) => s.read(&mut probe)?,
                };
                assert_eq!(n, 0, "a frame cut short");
                Ok(None)
            }
        }
    }

    /// The next frame, or `None` at end of stream.
    pub fn read(&mut self) -> Option<Got> {
        let mut h = [0u8; HEADER_LEN];
        let r = match &mut self.s {
            Sock::Unix(s) => s.read_exact(&mut h),
            Sock::Tcp(s) => s.read_exact(&mut h),
        };
        r.ok()?;
        let h = decode_header(&h);
        let mut payload = vec![0; h.len as usize];
        match &mut self.s {
            Sock::Unix(s) => s.read_exact(&mut payload).ok()?,
            Sock::Tcp(s) => s.read_exact(&mut payload).ok()?,
        }
        Some(Got { cmd: h.cmd, flags: h.flags, payload })
    }

    /// The reply to `req` (skipping the server's own requests and events; other replies
    /// are kept for their own `reply_to`).
    pub fn reply_to(&mut self, req: u64) -> Got {
        if let Some(i) = self.skipped.iter().position(|g| g.frame().req_id().unwrap() == req) {
            return self.skipped.remove(i);
        }
        loop {
            let g = self.read().expect("a reply");
            if g.flags & FLAG_REPLY == 0 {
                continue;
            }
            if g.frame().req_id().unwrap() == req {
                return g;
            }
            self.skipped.push(g);
        }
    }

    pub fn call(&mut self, cmd: Cmd, build: impl FnOnce(&mut FrameBuf<'_>)) -> Got {
        let req = self.send(cmd, build);
        self.reply_to(req)
    }

    pub fn hello(&mut self) -> Got {
        let req = self.send_hello();
        self.reply_to(req)
    }

    /// Sends HELLO without waiting for the answer; returns its REQ_ID.
    pub fn send_hello(&mut self) -> u64 {
        self.send(Cmd::HELLO, |f| {
            f.u32(Attr::ABI_MAJOR, VERSION_MAJOR).u32(Attr::ABI_MINOR, 0);
        })
    }

    /// Whether the server closed this connection: the stream ends (or is reset) after
    /// whatever frames were still coming. False if it stays open past the read timeout.
    pub fn closed(&mut self) -> bool {
        loop {
            match self.next_or_end() {
                Ok(Some(_)) => continue,
                Ok(None) => return true,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }
}

/// `sendmsg` of `bytes` with `fds` as `SCM_RIGHTS`; returns the bytes sent.
pub fn send_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> usize {
    let n = try_send_fds(sock, bytes, fds, 0).unwrap_or_else(|e| panic!("sendmsg: {e}"));
    assert!(n > 0, "sendmsg sent nothing");
    n
}

/// `sendmsg` of `bytes` with `fds` as `SCM_RIGHTS` and `flags`: the bytes sent, or why not.
pub fn try_send_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd], flags: libc::c_int) -> std::io::Result<usize> {
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)]; // u64: aligned for cmsghdr
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut _, iov_len: bytes.len() };
    // SAFETY: a zeroed msghdr is valid; the pointers set below outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `control` holds CMSG_SPACE(payload) bytes, so the first header and its data
    // (CMSG_DATA, `payload` bytes) lie inside it.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(c), payload);
    }
    // SAFETY: `msg` describes live buffers (above); `sock` is a connected Unix socket.
    let n = unsafe { libc::sendmsg(sock, &msg, flags) };
    if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// A `ZDESC` value as the protocol document gives it: region id, offset and length, each a
/// big-endian u64.
pub fn zdesc(id: u64, offset: u64, len: u64) -> [u8; 24] {
    let mut z = [0u8; 24];
    z[..8].copy_from_slice(&id.to_be_bytes());
    z[8..16].copy_from_slice(&offset.to_be_bytes());
    z[16..].copy_from_slice(&len.to_be_bytes());
    z
}
