//! The client against a server that lies over the shared-memory rings: a fake server takes
//! the client's rings at HELLO, then answers a request with a reply for an id the client
//! never used, garbage, a ring head past the ring, or nothing at all before it dies. The
//! client must never hand a forged reply to a request, and every failure must end the
//! waiting request with `Closed`, not leave it to its timeout (over the rings a waiting
//! request reads the ring itself, so it meets the lie before the connection's reader
//! does).

mod common;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use kcoro_ipc::proto::{Attr, Cmd, FLAG_REPLY, FrameBuf, FrameRef, HEADER_LEN, Header, decode_header};
use kcoro_ipc::{ConnectOptions, Connection, IpcError, Transport};

use common::sock;

const CAP: u64 = 4096;

/// The server's side of the client's rings: ring 0 is read, ring 1 written.
struct Mapped {
    base: *mut u8,
    len: usize,
    /// Our ends of ring 0's bell (the client rings it) and ring 1's (we ring the client).
    bells: Vec<UnixStream>,
    tail0: u64,
}

impl Mapped {
    fn word(&self, at: usize) -> &AtomicU64 {
        // SAFETY: inside the mapping, 8-aligned.
        unsafe { &*self.base.add(at).cast::<AtomicU64>() }
    }

    fn header(ring: usize) -> usize {
        512 + ring * 512
    }

    fn data(&self, ring: usize) -> *mut u8 {
        // SAFETY: ring `ring`'s bytes lie inside the mapping.
        unsafe { self.base.add(4096 + ring * CAP as usize) }
    }

    /// The next frame the client wrote into ring 0.
    fn read_frame(&mut self) -> (Header, Vec<u8>) {
        let h = Self::header(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let (mut need, mut got) = (HEADER_LEN, Vec::new());
        loop {
            let head = self.word(h).load(Acquire);
            while self.tail0 < head && got.len() < need {
                // SAFETY: inside ring 0's bytes.
                got.push(unsafe { *self.data(0).add((self.tail0 % CAP) as usize) });
                self.tail0 += 1;
                if got.len() == HEADER_LEN {
                    need += decode_header(got[..HEADER_LEN].try_into().unwrap()).len as usize;
                }
            }
            self.word(h + 128).store(self.tail0, Release);
            if got.len() == need {
                return (decode_header(got[..HEADER_LEN].try_into().unwrap()), got[HEADER_LEN..].to_vec());
            }
            assert!(Instant::now() < deadline, "no request from the client");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Writes `bytes` into ring 1 and rings the client.
    fn write(&self, bytes: &[u8]) {
        let h = Self::header(1);
        let head = self.word(h).load(Relaxed);
        assert!(bytes.len() as u64 <= CAP - (head - self.word(h + 128).load(Acquire)));
        for (i, b) in bytes.iter().enumerate() {
            // SAFETY: inside ring 1's bytes.
            unsafe { *self.data(1).add(((head + i as u64) % CAP) as usize) = *b };
        }
        self.word(h).store(head + bytes.len() as u64, Release);
        self.ring();
    }

    fn ring(&self) {
        let _ = (&self.bells[1]).write(&[1]);
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: our mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Reads one frame from the socket with the descriptors that came with it.
fn recv_frame_with_fds(s: &UnixStream) -> (Header, Vec<u8>, Vec<OwnedFd>) {
    let mut buf = vec![0u8; 64 << 10];
    let mut cmsg = [0u64; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: a zeroed msghdr pointing at our buffers, which outlive the call.
    let (n, fds) = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cmsg);
        let n = libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        assert!(n > 0, "HELLO expected");
        let mut fds = Vec::new();
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(*data.add(i)));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        (n as usize, fds)
    };
    let h = decode_header(buf[..HEADER_LEN].try_into().unwrap());
    assert_eq!(n, HEADER_LEN + h.len as usize, "one whole HELLO in one read");
    (h, buf[HEADER_LEN..n].to_vec(), fds)
}

fn req_id(h: Header, payload: &[u8]) -> u64 {
    FrameRef::parse(h, payload, 1000).unwrap().req_id().unwrap()
}

fn reply(cmd: Cmd, req: u64, build: impl FnOnce(&mut FrameBuf<'_>)) -> Vec<u8> {
    let mut out = Vec::new();
    let mut f = FrameBuf::begin(&mut out, cmd, FLAG_REPLY);
    f.u64(Attr::REQ_ID, req).i32(Attr::RESULT, 0);
    build(&mut f);
    f.finish(u32::MAX).unwrap();
    out
}

/// Accepts one client, takes its rings at HELLO, and hands the mapped rings and the
/// socket to `then`.
fn fake_server(
    path: &str,
    then: impl FnOnce(Mapped, UnixStream) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    let listener = UnixListener::bind(path.strip_prefix("unix:").unwrap()).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let (h, payload, fds) = recv_frame_with_fds(&s);
        assert_eq!(h.cmd, Cmd::HELLO);
        let hello = FrameRef::parse(h, &payload, 1000).unwrap();
        assert_eq!(hello.u64(Attr::RING_BYTES).unwrap(), Some(CAP), "the client offers rings");
        let [memfd, end0, end1]: [OwnedFd; 3] = fds.try_into().expect("memfd and two bell ends");
        let len = 4096 + 2 * CAP as usize;
        // SAFETY: the client's sealed memfd of exactly this size, mapped shared.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                memfd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        let rings = Mapped { base: base.cast(), len, bells: vec![end0.into(), end1.into()], tail0: 0 };
        let answer = reply(Cmd::HELLO, req_id(h, &payload), |f| {
            f.u32(Attr::ABI_MAJOR, 1)
                .u32(Attr::ABI_MINOR, 9)
                .u32(Attr::MAX_FRAME, 1 << 20)
                .u64(Attr::RING_BYTES, CAP);
        });
        s.write_all(&answer).unwrap();
        then(rings, s);
    })
}

/// A client over the fake's rings, and what `info()` came to, with how long it took.
fn info_against(
    name: &str,
    lie: impl FnOnce(&mut Mapped, u64) + Send + 'static,
) -> (Result<kcoro_ipc::ServerInfo, IpcError>, Connection) {
    let path = sock(name);
    let fake = fake_server(&path, move |mut rings, mut s| {
        let (h, payload) = rings.read_frame();
        assert_eq!(h.cmd, Cmd::GET_INFO);
        lie(&mut rings, req_id(h, &payload));
        // Stay until the client has gone (its socket ends), longer than its patience, so
        // that what ends the client's wait is the lie, not our leaving.
        let mut rest = [0u8; 64];
        s.set_read_timeout(Some(PATIENCE * 6)).unwrap();
        while matches!(s.read(&mut rest), Ok(n) if n > 0) {}
        drop(rings);
    });
    let conn = client(&path);
    let got = conn.info();
    let c = conn.clone();
    std::thread::spawn(move || {
        drop(c);
        fake.join().unwrap();
    });
    (got, conn)
}

/// How long a request waits for its answer: a request the lie does not end fails with
/// `Stalled` after it, and so fails the test's `Closed`.
const PATIENCE: Duration = Duration::from_secs(10);

/// A client over the fake's rings.
fn client(path: &str) -> Connection {
    let opts = ConnectOptions::new().ring_bytes(CAP).request_timeout(PATIENCE);
    let conn = Connection::connect(&path.replacen("unix:", "shm:", 1), opts).unwrap();
    assert_eq!(conn.transport(), Transport::Shm, "{:?}", conn.ring_refused());
    conn
}

/// The lie ended the request, with `Closed` (not its patience, `Stalled`; never an answer),
/// and the connection with it.
fn ended_by_the_lie(got: Result<kcoro_ipc::ServerInfo, IpcError>, conn: &Connection, what: &str) {
    let e = got.expect_err(&format!("{what} must not answer a request"));
    assert!(matches!(e, IpcError::Closed(_)), "{what}: {e}");
    assert!(conn.is_closed(), "{what}: the connection stayed open");
}

/// A reply under an id the client never used is dropped; the request's own reply, after
/// it, is the one the request gets.
#[test]
fn a_reply_for_an_unknown_id_never_reaches_a_request() {
    let (got, conn) = info_against("shm-lie-id.sock", |rings, req| {
        let mut both = reply(Cmd::GET_INFO, req + 1000, |f| {
            f.str(Attr::SERVER, "forged");
        });
        both.extend(reply(Cmd::GET_INFO, req, |f| {
            f.str(Attr::SERVER, "honest");
        }));
        rings.write(&both);
    });
    assert_eq!(got.unwrap().name, "honest");
    assert!(!conn.is_closed());
}

/// Garbage where a frame should be, a forged reply first: the request ends with an error
/// (the connection closes), never with the forged reply.
#[test]
fn garbage_in_the_ring_ends_the_waiting_request() {
    let (got, conn) = info_against("shm-lie-garbage.sock", |rings, req| {
        let mut bytes = reply(Cmd::GET_INFO, req + 7, |f| {
            f.str(Attr::SERVER, "forged");
        });
        bytes.extend_from_slice(&[0xff; 64]);
        rings.write(&bytes);
    });
    ended_by_the_lie(got, &conn, "a garbage frame");
}

/// A ring head past what the ring holds: an error.
#[test]
fn a_head_past_the_ring_ends_the_waiting_request() {
    let (got, conn) = info_against("shm-lie-head.sock", |rings, _| {
        rings.word(Mapped::header(1)).store(CAP + 1, Release);
        rings.ring();
    });
    ended_by_the_lie(got, &conn, "a broken ring");
}

/// Half a reply, then the server dies (its ends of the bells and its socket close): an
/// error, not a wait for the rest.
#[test]
fn a_server_dying_mid_reply_ends_the_waiting_request() {
    let path = sock("shm-lie-die.sock");
    let fake = fake_server(&path, |mut rings, s| {
        let (h, payload) = rings.read_frame();
        let answer = reply(Cmd::GET_INFO, req_id(h, &payload), |f| {
            f.str(Attr::SERVER, "cut short");
        });
        rings.write(&answer[..answer.len() / 2]);
        drop((rings, s));
    });
    let conn = client(&path);
    ended_by_the_lie(conn.info(), &conn, "half a reply");
    fake.join().unwrap();
}
