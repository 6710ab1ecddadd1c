//! A stream socket's `recv`, `send`, `recvmsg` and `sendmsg` as plain system calls.
//!
//! glibc's `recv` and `send` are thread-cancellation points: in a process with more than
//! one thread (every kcoro runtime) each call switches asynchronous cancellation on and
//! off around the system call. `kcoro proxy` at 100 connections spent 1.5% of its time in
//! those two switches, about as much as in the two wrappers themselves; HAProxy and nginx,
//! single-threaded, skip them. kcoro never cancels threads, so its sockets call the kernel
//! through `syscall(2)`, which is not a cancellation point. Elsewhere than Linux, the
//! libc functions.

use std::io;
use std::os::fd::RawFd;

/// `recv(fd, buf, 0)`: the bytes read, 0 at end of file.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the call; null source
    // address and length pointers ask for no address (recvfrom(2)).
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd,
            buf.as_mut_ptr(),
            buf.len(),
            0,
            std::ptr::null_mut::<libc::sockaddr>(),
            std::ptr::null_mut::<libc::socklen_t>(),
        )
    };
    #[cfg(not(target_os = "linux"))]
    // SAFETY: as above.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) } as i64;
    count(n)
}

/// `send(fd, buf, MSG_NOSIGNAL)`: the bytes written. A peer that has gone is `EPIPE`, never
/// a SIGPIPE (a C program linking libkcoro may not ignore it).
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the call; a null destination
    // address sends on the connected socket (sendto(2)).
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd,
            buf.as_ptr(),
            buf.len(),
            libc::MSG_NOSIGNAL,
            std::ptr::null::<libc::sockaddr>(),
            0 as libc::socklen_t,
        )
    };
    #[cfg(not(target_os = "linux"))]
    // SAFETY: as above.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) } as i64;
    count(n)
}

/// `recvmsg(fd, msg, flags)`: the bytes read, 0 at end of file; the kernel fills `msg`'s
/// control buffer and flags.
///
/// # Safety
///
/// Every buffer `msg` points at (its iovecs and control buffer) must be valid for writes of
/// the lengths it gives, for the duration of the call.
pub(crate) unsafe fn recvmsg(fd: RawFd, msg: &mut libc::msghdr, flags: libc::c_int) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    // SAFETY: the caller's `msg` describes buffers valid for writes for the call.
    let n = unsafe { libc::syscall(libc::SYS_recvmsg, fd, msg as *mut libc::msghdr, flags) };
    #[cfg(not(target_os = "linux"))]
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(fd, msg, flags) } as i64;
    count(n)
}

/// `sendmsg(fd, msg, flags | MSG_NOSIGNAL)`: the bytes written; a gone peer is `EPIPE`.
///
/// # Safety
///
/// Every buffer `msg` points at (its iovecs and control buffer) must be valid for reads of
/// the lengths it gives, for the duration of the call.
pub(crate) unsafe fn sendmsg(fd: RawFd, msg: &libc::msghdr, flags: libc::c_int) -> io::Result<usize> {
    let flags = flags | libc::MSG_NOSIGNAL;
    #[cfg(target_os = "linux")]
    // SAFETY: the caller's `msg` describes buffers valid for reads for the call.
    let n = unsafe { libc::syscall(libc::SYS_sendmsg, fd, msg as *const libc::msghdr, flags) };
    #[cfg(not(target_os = "linux"))]
    // SAFETY: as above.
    let n = unsafe { libc::sendmsg(fd, msg, flags) } as i64;
    count(n)
}

/// A system call's result: the byte count it returned, or, when it returned -1, the error
/// it left in `errno` (read at once, before anything else can overwrite it).
#[inline(always)]
fn count<N: TryInto<usize>>(n: N) -> io::Result<usize> {
    n.try_into().map_err(|_| io::Error::last_os_error())
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn bytes_go_through_and_an_empty_socket_would_block() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let e = recv(b.as_raw_fd(), &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(send(a.as_raw_fd(), b"hello").unwrap(), 5);
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        drop(a);
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 0, "end of file");
    }

    #[test]
    fn sending_to_a_gone_peer_is_an_error_not_a_signal() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let fd = a.as_raw_fd();
        // In a child with SIGPIPE at its default (the test process ignores it, as every
        // Rust program does), which that signal would kill. The child only makes system
        // calls and exits.
        // SAFETY: fork in a test process: the child calls only async-signal-safe
        // functions (signal, the send system call, _exit) before it exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: in the forked child, see above.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                let code = match send(fd, b"x") {
                    Err(e) if e.raw_os_error() == Some(libc::EPIPE) => 0,
                    _ => 1,
                };
                libc::_exit(code);
            }
        }
        let mut status = 0;
        // SAFETY: waits for the child just forked.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "the child died of signal {}", libc::WTERMSIG(status));
        assert_eq!(libc::WEXITSTATUS(status), 0, "send to a gone peer did not fail with EPIPE");
    }

    /// A message header over one buffer, without a control buffer.
    fn header(iov: &mut libc::iovec) -> libc::msghdr {
        // SAFETY: a zeroed msghdr is valid (no name, no control buffer).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov;
        msg.msg_iovlen = 1;
        msg
    }

    #[test]
    fn messages_go_through_and_a_gone_peer_is_epipe() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut out = *b"hello";
        let mut iov = libc::iovec { iov_base: out.as_mut_ptr().cast(), iov_len: out.len() };
        let msg = header(&mut iov);
        // SAFETY: msg points at `out`, live for the call.
        assert_eq!(unsafe { sendmsg(a.as_raw_fd(), &msg, libc::MSG_DONTWAIT) }.unwrap(), 5);
        let mut buf = [0u8; 16];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut msg = header(&mut iov);
        // SAFETY: msg points at `buf`, live and writable for the call.
        assert_eq!(unsafe { recvmsg(b.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) }.unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        // SAFETY: as above.
        let e = unsafe { recvmsg(b.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) }.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        drop(b);
        let mut iov = libc::iovec { iov_base: out.as_mut_ptr().cast(), iov_len: 1 };
        let msg = header(&mut iov);
        // SAFETY: as above; the test process ignores SIGPIPE, but MSG_NOSIGNAL is what makes
        // this EPIPE without one (`sending_to_a_gone_peer_is_an_error_not_a_signal`).
        let e = unsafe { sendmsg(a.as_raw_fd(), &msg, 0) }.unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    }

    #[test]
    fn a_bad_descriptor_is_an_error() {
        let mut buf = [0u8; 1];
        assert_eq!(recv(-1, &mut buf).unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(send(-1, b"x").unwrap_err().raw_os_error(), Some(libc::EBADF));
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: 1 };
        let mut msg = header(&mut iov);
        // SAFETY: msg points at `buf`, live for the call.
        assert_eq!(unsafe { recvmsg(-1, &mut msg, 0) }.unwrap_err().raw_os_error(), Some(libc::EBADF));
        // SAFETY: as above.
        assert_eq!(unsafe { sendmsg(-1, &msg, 0) }.unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
