//! The memory of a connection's two rings: one memfd, sealed against resizing, mapped
//! shared and writable by both processes (layout in the module docs of [`super`]).
//!
//! The client makes it ([`RingMem::create`]) and passes its descriptor with HELLO; the
//! server maps it ([`RingMem::import`]) only after checking what a peer could use against
//! it: the seal against shrinking, the exact size, the magic and the capacity.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::Arc;

use super::{HEADER_LEN, Header, Ring};

/// Bytes before the rings' bytes: magic, capacity, and the two headers.
pub(crate) const CONTROL_LEN: usize = 4096;
/// Where ring `i`'s header starts.
const HEADER_AT: [usize; 2] = [512, 512 + HEADER_LEN];
/// Where the count of descriptor records sent with ring `i`'s bytes is (a line each).
const RECORDS_AT: [usize; 2] = [128, 256];
const MAGIC: u64 = u64::from_be_bytes(*b"kcoring1");

/// Smallest ring: a page.
pub(crate) const MIN_RING: u64 = 4096;
/// Largest ring a side accepts at all (a server's `Limits::max_ring_bytes` is lower).
pub(crate) const MAX_RING: u64 = 1 << 30;

/// Ring 0 carries the client's bytes to the server; ring 1 the server's to the client.
pub(crate) const TO_SERVER: usize = 0;
/// See [`TO_SERVER`].
pub(crate) const TO_CLIENT: usize = 1;

const _: () = assert!(HEADER_AT[1] + HEADER_LEN <= CONTROL_LEN && HEADER_AT[0] % 128 == 0);

/// Bytes of a memfd holding two rings of `cap` bytes.
pub(crate) fn layout_len(cap: u64) -> usize {
    CONTROL_LEN + 2 * cap as usize
}

/// The two rings' memory, mapped here.
pub(crate) struct RingMem {
    base: NonNull<u8>,
    len: usize,
    cap: u64,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain shared memory: the headers are atomics and the ring bytes
// are copied only by the side the ring protocol gives them to.
unsafe impl Send for RingMem {}
// SAFETY: as above.
unsafe impl Sync for RingMem {}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn check_cap(cap: u64, max: u64) -> io::Result<()> {
    if !cap.is_power_of_two() || cap < MIN_RING || cap > max.min(MAX_RING) {
        return Err(invalid(format!(
            "a ring of {cap} bytes: rings are a power of two from {MIN_RING} to {} bytes",
            max.min(MAX_RING)
        )));
    }
    Ok(())
}

impl RingMem {
    /// A new memfd for two rings of `cap` bytes, sealed and mapped.
    pub(crate) fn create(cap: u64) -> io::Result<Arc<RingMem>> {
        check_cap(cap, MAX_RING)?;
        let len = layout_len(cap);
        // SAFETY: a NUL-terminated name and valid flags; the result is checked.
        let raw = unsafe {
            libc::memfd_create(c"kcoro-ipc-rings".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len).map_err(|_| invalid(format!("{len} bytes")))?;
        // SAFETY: plain calls on the descriptor we own.
        unsafe {
            if libc::ftruncate(fd.as_raw_fd(), size) != 0 {
                return Err(io::Error::last_os_error());
            }
            let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
            if libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let mem = RingMem::map(fd, len, cap)?;
        mem.word(0).store(MAGIC, std::sync::atomic::Ordering::Relaxed);
        mem.word(8).store(cap, std::sync::atomic::Ordering::Relaxed);
        Ok(Arc::new(mem))
    }

    /// Maps a peer's memfd of two rings of `cap` bytes, `cap` at most `max_cap`, after
    /// checking that it is sealed against shrinking, has exactly the layout's size, and
    /// says it holds rings of `cap` bytes. The descriptor is closed whatever happens.
    pub(crate) fn import(fd: OwnedFd, cap: u64, max_cap: u64) -> io::Result<Arc<RingMem>> {
        check_cap(cap, max_cap)?;
        let len = layout_len(cap);
        // SAFETY: F_GET_SEALS reads the seals; it fails on anything but a memfd.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
            return Err(invalid("the ring memory is not a memfd sealed against shrinking".into()));
        }
        let size = std::fs::File::from(fd.try_clone()?).metadata()?.len();
        if size != len as u64 {
            return Err(invalid(format!("the ring memory has {size} bytes; two rings of {cap} need {len}")));
        }
        let mem = RingMem::map(fd, len, cap)?;
        let (magic, said) = (
            mem.word(0).load(std::sync::atomic::Ordering::Relaxed),
            mem.word(8).load(std::sync::atomic::Ordering::Relaxed),
        );
        if magic != MAGIC || said != cap {
            return Err(invalid("the ring memory does not hold kcoro rings of that size".into()));
        }
        Ok(Arc::new(mem))
    }

    fn map(fd: OwnedFd, len: usize, cap: u64) -> io::Result<RingMem> {
        // SAFETY: a fresh shared mapping of a descriptor we hold, whose size was set or
        // checked to be `len` and sealed against shrinking; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(p.cast::<u8>()).ok_or_else(|| invalid("mmap returned null".into()))?;
        Ok(RingMem { base, len, cap, fd })
    }

    /// The control page's 64-bit word at byte `at`.
    fn word(&self, at: usize) -> &std::sync::atomic::AtomicU64 {
        debug_assert!(at + 8 <= CONTROL_LEN && at % 8 == 0);
        // SAFETY: inside the mapped control page, 8-aligned (the mapping is page-aligned);
        // an atomic may alias memory the peer writes.
        unsafe { &*self.base.as_ptr().add(at).cast::<std::sync::atomic::AtomicU64>() }
    }

    /// How many descriptor records the writer of ring `which` has sent over the socket (see
    /// [`super::link`]): a reader looks at the socket only when this passed its own count.
    pub(crate) fn records(&self, which: usize) -> &std::sync::atomic::AtomicU64 {
        self.word(RECORDS_AT[which])
    }

    /// The descriptor, to pass to the peer.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Each ring's capacity.
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes mapped.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Ring `which` ([`TO_SERVER`] or [`TO_CLIENT`]), keeping the mapping alive.
    pub(crate) fn ring(self: &Arc<Self>, which: usize) -> Ring {
        let base = self.base.as_ptr();
        // SAFETY: the header spans lie in the control page and are 128-aligned; ring
        // `which`'s bytes are `cap` bytes inside the mapping (`layout_len`); all of it
        // stays mapped while the `Arc` in the ring lives.
        unsafe {
            let header = base.add(HEADER_AT[which]).cast::<Header>();
            let data = base.add(CONTROL_LEN + which * self.cap as usize);
            Ring::new(header, data, self.cap, Arc::clone(self) as Arc<dyn Send + Sync>)
        }
    }
}

impl Drop for RingMem {
    fn drop(&mut self) {
        // SAFETY: our own mapping of `len` bytes, no longer referenced (every ring holds
        // the `Arc` this is the last of).
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Two mappings of one memfd are one ring: what one side writes the other reads.
    #[test]
    fn a_created_and_an_imported_mapping_share_the_rings() {
        let ours = RingMem::create(4096).unwrap();
        let theirs = RingMem::import(ours.fd().try_clone_to_owned().unwrap(), 4096, 1 << 20).unwrap();
        struct Nobody;
        impl super::super::Bell for Nobody {
            fn ring(&self) {}
            fn wait(&self) -> io::Result<bool> {
                Ok(false)
            }
        }
        let mut tx = super::super::Producer::new(ours.ring(TO_SERVER), Nobody);
        let mut rx = super::super::Consumer::new(theirs.ring(TO_SERVER), Nobody, Duration::ZERO);
        let msg: Vec<u8> = (0..3000).map(|i| (i % 251) as u8).collect();
        for _ in 0..5 {
            tx.write_all(&msg).unwrap();
            let mut got = vec![0u8; msg.len()];
            let mut at = 0;
            while at < got.len() {
                at += rx.read(&mut got[at..]).unwrap();
            }
            assert_eq!(got, msg);
        }
        // The other ring is untouched.
        let mut other = super::super::Consumer::new(theirs.ring(TO_CLIENT), Nobody, Duration::ZERO);
        assert_eq!(other.read(&mut [0u8; 8]).unwrap(), 0);
    }

    /// What a peer could hand over instead is refused before it is used: a memfd that can
    /// shrink, one of another size, one without the rings' magic, sizes that are not a
    /// power of two or past the limit, a file that is not a memfd.
    #[test]
    fn a_peers_memory_is_checked_before_it_is_mapped() {
        let good = RingMem::create(8192).unwrap();
        let dup = || good.fd().try_clone_to_owned().unwrap();
        assert!(RingMem::import(dup(), 4096, 1 << 20).is_err(), "wrong size for the capacity");
        assert!(RingMem::import(dup(), 8192, 4096).is_err(), "over the limit");
        assert!(RingMem::import(dup(), 6000, 1 << 20).is_err(), "not a power of two");
        assert!(RingMem::import(dup(), 8192, 1 << 20).is_ok());

        // SAFETY: a fresh memfd, unsealed.
        let raw = unsafe { libc::memfd_create(c"unsealed".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0);
        // SAFETY: nothing else owns it.
        let unsealed = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: our descriptor.
        assert_eq!(unsafe { libc::ftruncate(raw, layout_len(4096) as libc::off_t) }, 0);
        let e = RingMem::import(unsealed, 4096, 1 << 20).err().unwrap();
        assert!(e.to_string().contains("sealed"), "{e}");

        let file = std::fs::File::open("/proc/self/exe").unwrap();
        assert!(RingMem::import(file.into(), 4096, 1 << 20).is_err(), "not a memfd");

        // Sealed and of the right size, but zeros: no magic.
        let blank = {
            // SAFETY: a fresh memfd that allows sealing.
            let raw =
                unsafe { libc::memfd_create(c"blank".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
            // SAFETY: ours.
            unsafe {
                assert_eq!(libc::ftruncate(raw, layout_len(4096) as libc::off_t), 0);
                assert_eq!(libc::fcntl(raw, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK), 0);
                OwnedFd::from_raw_fd(raw)
            }
        };
        let e = RingMem::import(blank, 4096, 1 << 20).err().unwrap();
        assert!(e.to_string().contains("does not hold"), "{e}");
    }
}
