//! Address resolution that never blocks a worker.
//!
//! [`ToSocketAddrs`] is implemented for the same types as `std::net::ToSocketAddrs`, so
//! `TcpStream::connect("127.0.0.1:80")` and `TcpListener::bind(("localhost", 0))` read
//! as they do with std. The difference is where a host name is looked up: `getaddrinfo`
//! can wait for the network, so inside a coroutine the lookup runs on the runtime's
//! blocking pool while the coroutine parks. Literal addresses (`"10.0.0.1:80"`,
//! `("::1", 80)`, `SocketAddr`) are parsed in place without a syscall.
//!
//! The trait is sealed: its one method is an implementation detail.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use crate::runtime::Handle;

/// Something that names one or more socket addresses: the types std's
/// `std::net::ToSocketAddrs` accepts, resolved without blocking the worker (host names
/// are looked up on the runtime's blocking pool). Sealed.
pub trait ToSocketAddrs: sealed::Resolve {}

mod sealed {
    use std::io;
    use std::net::SocketAddr;

    /// The hidden half of [`super::ToSocketAddrs`].
    pub trait Resolve {
        /// The addresses, in the order to try them.
        fn resolve(&self) -> io::Result<Vec<SocketAddr>>;
    }
}

use sealed::Resolve;

/// Calls `f` on each address `addr` resolves to, in order; returns the first success or
/// the last error (`InvalidInput` if there were no addresses).
pub(crate) fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addr.resolve()? {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "could not resolve to any addresses")))
}

/// Runs `f`, a call that may block in the kernel, on the blocking pool when called inside
/// a runtime (the caller parks until it is done); on a plain thread, runs it in place.
pub(crate) fn offload<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match Handle::try_current() {
        Some(h) => h.spawn_blocking(f).join().map_err(|e| io::Error::other(e.to_string()))?,
        None => f(),
    }
}

/// Looks up a host name with the system resolver, off the worker.
fn lookup(query: impl std::net::ToSocketAddrs + Send + 'static) -> io::Result<Vec<SocketAddr>> {
    offload(move || Ok(query.to_socket_addrs()?.collect()))
}

/// Addresses that are already resolved.
macro_rules! resolved {
    ($($t:ty),* $(,)?) => {$(
        impl ToSocketAddrs for $t {}
        impl Resolve for $t {
            fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
                Ok(std::net::ToSocketAddrs::to_socket_addrs(self)?.collect())
            }
        }
    )*};
}

resolved!(SocketAddr, SocketAddrV4, SocketAddrV6, (IpAddr, u16), (Ipv4Addr, u16), (Ipv6Addr, u16));

impl ToSocketAddrs for str {}
impl Resolve for str {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        match self.parse::<SocketAddr>() {
            Ok(a) => Ok(vec![a]),
            Err(_) => lookup(self.to_owned()),
        }
    }
}

impl ToSocketAddrs for String {}
impl Resolve for String {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        self.as_str().resolve()
    }
}

impl ToSocketAddrs for (&str, u16) {}
impl Resolve for (&str, u16) {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let (host, port) = *self;
        match host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![SocketAddr::new(ip, port)]),
            Err(_) => lookup((host.to_owned(), port)),
        }
    }
}

impl ToSocketAddrs for (String, u16) {}
impl Resolve for (String, u16) {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        (self.0.as_str(), self.1).resolve()
    }
}

impl ToSocketAddrs for [SocketAddr] {}
impl Resolve for [SocketAddr] {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(self.to_vec())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {}
impl<T: Resolve + ?Sized> Resolve for &T {
    fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).resolve()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn literals_resolve_in_place() {
        // No runtime here: a host-name lookup would run inline, literals never look up.
        let a: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert_eq!("127.0.0.1:80".resolve().unwrap(), vec![a]);
        assert_eq!(("127.0.0.1", 80).resolve().unwrap(), vec![a]);
        assert_eq!((String::from("::1"), 9).resolve().unwrap(), vec!["[::1]:9".parse().unwrap()]);
        assert_eq!([a, a][..].resolve().unwrap().len(), 2);
        let by_ref: &SocketAddr = &a;
        assert_eq!(each_addr(by_ref, Ok).unwrap(), a);
    }

    #[test]
    fn empty_list_is_invalid_input() {
        let none: &[SocketAddr] = &[];
        let e = each_addr(none, |_| Ok(())).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
