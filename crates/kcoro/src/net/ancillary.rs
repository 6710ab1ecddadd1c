//! File descriptors over Unix sockets (`SCM_RIGHTS`): `sendmsg`/`recvmsg` with one control
//! message, for [`UnixStream::send_with_fds`](super::UnixStream::send_with_fds) and
//! [`UnixStream::recv_with_fds`](super::UnixStream::recv_with_fds).
//!
//! The kernel delivers descriptors with the first byte of the data they were sent with, and
//! a stream `recvmsg` never reads past a message that carries them, so a reader that queues
//! descriptors as they arrive and consumes them in the order of the bytes sees each one
//! with (or before) the bytes it belongs to.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Most descriptors one call passes.
pub const MAX_FDS: usize = 16;

/// Control buffer for `MAX_FDS` descriptors, aligned for `cmsghdr`.
#[repr(C, align(8))]
struct Control([u8; 128]);

const _: () =
    assert!(size_of::<Control>() >= (size_of::<libc::cmsghdr>() + MAX_FDS * size_of::<RawFd>()) + 8);

/// One `sendmsg` of `bytes` with `fds` attached; returns the bytes written (a partial
/// write sent the descriptors). Non-blocking: `WouldBlock` when the socket is full.
pub(crate) fn send(fd: RawFd, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "at most 16 descriptors per call"));
    }
    let mut iov = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
    let mut control = Control([0; 128]);
    // SAFETY: a zeroed msghdr is valid; every pointer set below points at live locals.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let payload = (fds.len() * size_of::<RawFd>()) as u32;
        // SAFETY: CMSG_SPACE is a pure size computation.
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(payload) } as _;
        msg.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: the control buffer is large and aligned enough for one cmsghdr carrying
        // MAX_FDS descriptors (asserted above), and msg points at it.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as _;
            let data = libc::CMSG_DATA(c).cast::<RawFd>();
            for (i, f) in fds.iter().enumerate() {
                data.add(i).write_unaligned(f.as_raw_fd());
            }
        }
    }
    // SAFETY: msg describes live locals (iov over `bytes`, `control`); a dead peer is
    // EPIPE, not SIGPIPE.
    unsafe { super::sys::sendmsg(fd, &msg, libc::MSG_DONTWAIT) }
}

/// One `recvmsg` into `buf`; descriptors that came with the bytes are appended to `fds`
/// (close-on-exec). Non-blocking. Descriptors beyond `MAX_FDS` in one message are
/// closed by the kernel (`MSG_CTRUNC`), which is reported as an error.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let mut control = Control([0; 128]);
    // SAFETY: as in `send`.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.0.as_mut_ptr().cast();
    msg.msg_controllen = control.0.len() as _;
    // SAFETY: msg describes live, writable locals (iov over `buf`, `control`).
    let n = unsafe { super::sys::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT)? };
    // SAFETY: the kernel filled the control buffer; CMSG_* walk it within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / size_of::<RawFd>();
                for i in 0..count {
                    // Each received descriptor is new in this process and ours to own.
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "too many descriptors in one message"));
    }
    Ok(n)
}
