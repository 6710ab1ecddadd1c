//! Moving bytes socket → pipe → socket with `splice(2)`: the kernel hands the data from
//! one socket to the other without copying it through the proxy's memory. Worth it for
//! large transfers only (two syscalls per chunk, as read and write, plus a pipe per
//! direction), so a direction switches to it after a read has filled a whole buffer.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use kcoro::net::TcpStream;

/// Bytes asked of one splice, and the pipe's capacity asked for. Measured on 1 MiB
/// answers (docs/BENCHMARKS.md): a 64 KiB pipe (the default) costs the proxy about as
/// much CPU as copying; 256 KiB about a third less; 1 MiB no less than 256 KiB.
const CHUNK: usize = 256 << 10;

/// A non-blocking pipe, the kernel-side buffer between the two sockets. Empty between
/// two [`Pipe::forward`] calls, whatever they returned.
pub(crate) struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    pub(crate) fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both descriptors are open and owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // A refusal (above the system's pipe-max-size) leaves the default 64 KiB: each
        // splice then moves less, nothing else changes.
        // SAFETY: fcntl on a pipe descriptor we own.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, CHUNK as libc::c_int) };
        Ok(Pipe { read, write })
    }

    /// Moves what `from` has (at most [`CHUNK`]) into `to`, waiting as `from`'s reads
    /// and `to`'s writes do (their timeouts), calling `moved` after each write that moved
    /// some (a slow receiver's progress). `Ok(0)`: `from` is at end-of-file. An
    /// error from `to` is [`Failed::Write`] (which error does not matter to a proxy: the
    /// connection ends either way); the pipe is left empty only on success, so
    /// after an error the pipe is dropped with the connection.
    pub(crate) fn forward(
        &self,
        from: &TcpStream,
        to: &TcpStream,
        moved: impl Fn(),
    ) -> Result<usize, Failed> {
        let n = from
            .read_with(|| splice(from.as_raw_fd(), self.write.as_raw_fd(), CHUNK))
            .map_err(|_| Failed::Read)?;
        let mut left = n;
        while left > 0 {
            let m = to
                .write_with(|| splice(self.read.as_raw_fd(), to.as_raw_fd(), left))
                .map_err(|_| Failed::Write)?;
            if m == 0 {
                return Err(Failed::Write);
            }
            moved();
            left -= m;
        }
        Ok(n)
    }
}

/// Which side of a [`Pipe::forward`] failed.
#[derive(Debug)]
pub(crate) enum Failed {
    Read,
    Write,
}

/// One non-blocking `splice(2)` of up to `len` bytes from `from` to `to`.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain descriptors the callers own for the duration of the call; null
    // offsets (sockets and pipes have none); the flags make it non-blocking on the pipe
    // side too, and the sockets are non-blocking.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::Shutdown;

    use kcoro::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (a, l.accept().unwrap().0)
    }

    /// A megabyte spliced from one connection into another arrives whole and in order,
    /// and the end of the source is reported as 0.
    #[test]
    fn a_spliced_megabyte_arrives_whole_and_the_end_is_seen() {
        kcoro::Runtime::builder().workers(2).build().unwrap().block_on(|| {
            let (src_far, src) = pair();
            let (dst, dst_far) = pair();
            let data: Vec<u8> = (0..1 << 20).map(|i: u32| (i * 31 % 251) as u8).collect();
            let writer = {
                let data = data.clone();
                kcoro::spawn(move || {
                    (&src_far).write_all(&data).unwrap();
                    src_far.shutdown(Shutdown::Write).unwrap();
                    src_far
                })
            };
            let reader = kcoro::spawn(move || {
                let mut got = Vec::new();
                (&dst_far).read_to_end(&mut got).unwrap();
                got
            });
            let pipe = Pipe::new().unwrap();
            let mut moved = 0;
            loop {
                match pipe.forward(&src, &dst, || ()) {
                    Ok(0) => break,
                    Ok(n) => moved += n,
                    Err(e) => panic!("{e:?}"),
                }
            }
            dst.shutdown(Shutdown::Write).unwrap();
            assert_eq!(moved, data.len());
            assert_eq!(reader.join().unwrap(), data);
            drop(writer.join().unwrap());
        });
    }

    #[test]
    fn a_closed_destination_is_a_write_failure() {
        kcoro::Runtime::builder().workers(1).build().unwrap().block_on(|| {
            let (src_far, src) = pair();
            let (dst, dst_far) = pair();
            drop(dst_far);
            let pipe = Pipe::new().unwrap();
            let big = vec![7u8; 4 << 20];
            let writer = kcoro::spawn(move || {
                let _ = (&src_far).write_all(&big);
                src_far
            });
            let failed = loop {
                match pipe.forward(&src, &dst, || ()) {
                    Ok(0) => panic!("the source did not end"),
                    Ok(_) => {}
                    Err(e) => break e,
                }
            };
            assert!(matches!(failed, Failed::Write), "{failed:?}");
            drop(src);
            drop(writer.join().unwrap());
        });
    }
}
