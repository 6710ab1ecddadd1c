//! The ring memory of docs/IPC_PROTOCOL.md ("Shared-memory rings"), made by hand, for
//! tests that play a client the kcoro client never would be: the control page (magic,
//! capacity, the two headers at 512 and 1024 with their words 128 bytes apart), then
//! ring 0's bytes (to the server) and ring 1's (to the client), and the two bells.
#![allow(dead_code)]

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::{Duration, Instant};

use kcoro_ipc::proto::{HEADER_LEN, Header, decode_header};

pub struct Rings {
    base: *mut u8,
    len: usize,
    /// The capacity of each ring; also what HELLO offers (a test may lie with it).
    pub cap: u64,
    pub memfd: OwnedFd,
    /// Our ends of ring 0's and ring 1's bells.
    pub bells: [UnixStream; 2],
    /// The server's ends, until sent.
    pub theirs: Vec<OwnedFd>,
    /// What we read of ring 1.
    pub tail1: u64,
}

// SAFETY: the mapping is plain shared memory, used through atomics and byte copies.
unsafe impl Send for Rings {}

impl Rings {
    /// Offsets of a ring header's words.
    pub const HEAD: usize = 0;
    pub const TAIL: usize = 128;
    /// How long `read_frame` waits for a frame.
    const PATIENCE: Duration = Duration::from_secs(10);

    /// Rings of `cap` bytes each, in memory sealed against resizing if `seal` (a server
    /// must refuse memory that can shrink).
    pub fn new(cap: u64, seal: bool) -> Rings {
        let len = 4096 + 2 * cap as usize;
        // SAFETY: a fresh memfd, sized, sealed if asked, mapped shared; results checked.
        let (memfd, base) = unsafe {
            let raw = libc::memfd_create(c"test-rings".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING);
            assert!(raw >= 0);
            let memfd = OwnedFd::from_raw_fd(raw);
            assert_eq!(libc::ftruncate(raw, len as libc::off_t), 0);
            if seal {
                assert_eq!(libc::fcntl(raw, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW), 0);
            }
            let p = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                raw,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            (memfd, p.cast::<u8>())
        };
        let (b0, t0) = UnixStream::pair().unwrap();
        let (b1, t1) = UnixStream::pair().unwrap();
        let r =
            Rings { base, len, cap, memfd, bells: [b0, b1], theirs: vec![t0.into(), t1.into()], tail1: 0 };
        r.word(0).store(u64::from_be_bytes(*b"kcoring1"), Relaxed);
        r.word(8).store(cap, Relaxed);
        r
    }

    /// What an honest HELLO attaches: the memfd, then the server's ends of the two bells.
    pub fn offered(&self) -> Vec<BorrowedFd<'_>> {
        [self.memfd.as_fd()].into_iter().chain(self.theirs.iter().map(|f| f.as_fd())).collect()
    }

    /// After HELLO: the server has its own copies now; ours would keep the bells open.
    pub fn handed_over(&mut self) {
        self.theirs.clear();
    }

    pub fn word(&self, at: usize) -> &AtomicU64 {
        // SAFETY: inside our mapping, 8-aligned.
        unsafe { &*self.base.add(at).cast::<AtomicU64>() }
    }

    /// Where ring `ring`'s header lies in the control page.
    pub fn header(ring: usize) -> usize {
        512 + ring * 512
    }

    fn data(&self, ring: usize) -> *mut u8 {
        // SAFETY: ring `ring`'s bytes lie inside the mapping.
        unsafe { self.base.add(4096 + ring * self.cap as usize) }
    }

    /// The bytes ring 0 has room for now.
    pub fn room(&self) -> u64 {
        let h = Self::header(0);
        self.cap - (self.word(h + Self::HEAD).load(Relaxed) - self.word(h + Self::TAIL).load(Acquire))
    }

    /// Writes as much of `bytes` into ring 0 as it has room for; returns how much. The
    /// server's bell is the caller's to ring.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let h = Self::header(0);
        let head = self.word(h + Self::HEAD).load(Relaxed);
        let n = (self.room() as usize).min(bytes.len());
        for (i, b) in bytes[..n].iter().enumerate() {
            // SAFETY: inside ring 0's bytes (position modulo the capacity).
            unsafe { *self.data(0).add(((head + i as u64) % self.cap) as usize) = *b };
        }
        self.word(h + Self::HEAD).store(head + n as u64, Release);
        n
    }

    /// Rings the server's bell (ring 0's).
    pub fn ring(&self) {
        let _ = (&self.bells[0]).write(&[1]);
    }

    /// The next frame of ring 1, waiting up to 10 s; `None` if `server_gone`, asked while
    /// no frame is complete, says the server ended the connection first.
    pub fn read_frame(&mut self, mut server_gone: impl FnMut(&Rings) -> bool) -> Option<(Header, Vec<u8>)> {
        let h = Self::header(1);
        let deadline = Instant::now() + Self::PATIENCE;
        let (mut need, mut got) = (HEADER_LEN, Vec::new());
        loop {
            let head = self.word(h + Self::HEAD).load(Acquire);
            while self.tail1 < head && got.len() < need {
                // SAFETY: inside ring 1's bytes (position modulo the capacity).
                got.push(unsafe { *self.data(1).add((self.tail1 % self.cap) as usize) });
                self.tail1 += 1;
                if got.len() == HEADER_LEN {
                    need += decode_header(got[..HEADER_LEN].try_into().unwrap()).len as usize;
                }
            }
            self.word(h + Self::TAIL).store(self.tail1, Release);
            if got.len() == need {
                return Some((
                    decode_header(got[..HEADER_LEN].try_into().unwrap()),
                    got[HEADER_LEN..].to_vec(),
                ));
            }
            if server_gone(self) {
                return None;
            }
            assert!(Instant::now() < deadline, "no frame from the server's ring");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        // SAFETY: our mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}
