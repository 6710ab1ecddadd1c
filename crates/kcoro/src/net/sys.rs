//! A stream socket's `recv` and `send` as plain system calls.
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
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
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
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

#[cfg(test)]
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

    #[test]
    fn a_bad_descriptor_is_an_error() {
        let mut buf = [0u8; 1];
        assert_eq!(recv(-1, &mut buf).unwrap_err().raw_os_error(), Some(libc::EBADF));
        assert_eq!(send(-1, b"x").unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
}
