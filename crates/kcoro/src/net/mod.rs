//! Coroutine-aware sockets over the runtime's single reactor.
//!
//! [`TcpListener`], [`TcpStream`], [`UnixListener`] and [`UnixStream`] mirror `std::net`
//! and `std::os::unix::net`: blocking-style calls (`accept`, `connect`, `read`, `write`)
//! and `std::io::Read`/`Write`. A call that would block parks the calling coroutine until
//! the reactor reports readiness (or the timeout passes), so the worker thread runs other
//! coroutines meanwhile and never waits in a syscall. Host names are resolved on the
//! blocking pool ([`ToSocketAddrs`]).
//!
//! Sockets are created inside a kcoro runtime (in a coroutine; elsewhere creation fails
//! with a clear error) and belong to that runtime's reactor: use them while it runs (once
//! it has shut down, nothing reports readiness any more). They are `Send + Sync`: move
//! one to another coroutine of the same runtime, or share it in an `Arc` and read from
//! one coroutine while another writes (`Read`/`Write` are implemented for `&TcpStream`).
//! A plain thread may use them too; it blocks as with std.
//!
//! Timeouts follow kcoro's rule: `None` waits as long as it takes, zero means *try*
//! (fail with `WouldBlock` instead of waiting), and a positive duration fails the call
//! with `io::ErrorKind::TimedOut` once it has waited that long.
//!
//! ```
//! use std::io::{Read, Write};
//! use kcoro::net::{TcpListener, TcpStream};
//!
//! kcoro::run(|| -> std::io::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:0")?;
//!     let addr = listener.local_addr()?;
//!     let server = kcoro::spawn(move || -> std::io::Result<()> {
//!         let (mut conn, _peer) = listener.accept()?;
//!         let mut buf = [0u8; 5];
//!         conn.read_exact(&mut buf)?;
//!         conn.write_all(&buf)
//!     });
//!     let mut client = TcpStream::connect(addr)?;
//!     client.write_all(b"hello")?;
//!     let mut back = [0u8; 5];
//!     client.read_exact(&mut back)?;
//!     assert_eq!(&back, b"hello");
//!     server.join().expect("server coroutine")
//! })
//! .expect("echo");
//! ```

mod addr;
mod ancillary;
mod descriptors;
mod registration;
mod socket;
mod sys;
mod tcp;
mod unix;

pub use addr::ToSocketAddrs;
pub use ancillary::MAX_FDS;
pub use descriptors::{raise_descriptor_limit, reserve_descriptors};
pub use socket::Incoming;
pub use tcp::{TcpListener, TcpStream};
pub use unix::{UnixListener, UnixStream};

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn sockets_are_send_sync() {
        assert_send_sync::<TcpListener>();
        assert_send_sync::<TcpStream>();
        assert_send_sync::<UnixListener>();
        assert_send_sync::<UnixStream>();
    }

    #[test]
    fn creating_outside_a_runtime_fails_clearly() {
        let e = TcpListener::bind("127.0.0.1:0").unwrap_err();
        assert!(e.to_string().contains("inside a kcoro runtime"), "{e}");
    }
}
