//! Addresses: `unix:PATH`, `shm:PATH` or `tcp:HOST:PORT`.

use std::fmt;
use std::path::PathBuf;

use crate::IpcError;

/// Where a server listens or a client connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A Unix-domain socket file.
    Unix(PathBuf),
    /// A Unix-domain socket file, through which a client moves its connection to
    /// shared-memory rings (same host only); a server binds it as `unix:`, and serves
    /// both.
    Shm(PathBuf),
    /// A TCP host and port (`HOST:PORT`, the host a name or an address).
    Tcp(String),
}

impl Addr {
    /// Parses `unix:PATH`, `shm:PATH` or `tcp:HOST:PORT`.
    pub fn parse(s: &str) -> Result<Addr, IpcError> {
        match s.split_once(':') {
            Some(("unix", path)) if !path.is_empty() => Ok(Addr::Unix(PathBuf::from(path))),
            Some(("shm", path)) if !path.is_empty() => Ok(Addr::Shm(PathBuf::from(path))),
            Some(("tcp", hp))
                if hp.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) =>
            {
                Ok(Addr::Tcp(hp.to_string()))
            }
            _ => Err(IpcError::BadAddr(s.to_string())),
        }
    }

    /// The socket file of a `unix:` or `shm:` address.
    pub fn socket_path(&self) -> Option<&std::path::Path> {
        match self {
            Addr::Unix(p) | Addr::Shm(p) => Some(p),
            Addr::Tcp(_) => None,
        }
    }

    /// Whether a TCP address names this host only (127.0.0.0/8, ::1, localhost).
    pub fn is_loopback(&self) -> bool {
        match self {
            Addr::Unix(_) | Addr::Shm(_) => true,
            Addr::Tcp(hp) => {
                let host = hp.rsplit_once(':').map_or(hp.as_str(), |(h, _)| h).trim_matches(['[', ']']);
                host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
            Addr::Shm(p) => write!(f, "shm:{}", p.display()),
            Addr::Tcp(hp) => write!(f, "tcp:{hp}"),
        }
    }
}

impl std::str::FromStr for Addr {
    type Err = IpcError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Addr::parse(s)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_refuses_the_rest() {
        assert_eq!(Addr::parse("unix:/run/k.sock").unwrap(), Addr::Unix("/run/k.sock".into()));
        assert_eq!(Addr::parse("shm:/run/k.sock").unwrap(), Addr::Shm("/run/k.sock".into()));
        assert_eq!(Addr::parse("shm:/run/k.sock").unwrap().to_string(), "shm:/run/k.sock");
        assert!(Addr::parse("shm:/run/k.sock").unwrap().is_loopback());
        assert_eq!(Addr::parse("tcp:127.0.0.1:7070").unwrap(), Addr::Tcp("127.0.0.1:7070".into()));
        assert_eq!(Addr::parse("tcp:[::1]:7070").unwrap().to_string(), "tcp:[::1]:7070");
        for bad in ["", "unix:", "shm:", "tcp:host", "tcp:host:99999", "http://x", "tcp::80"] {
            assert!(Addr::parse(bad).is_err(), "{bad}");
        }
        assert!(Addr::parse("tcp:127.0.0.1:1").unwrap().is_loopback());
        assert!(Addr::parse("tcp:localhost:1").unwrap().is_loopback());
        assert!(Addr::parse("tcp:[::1]:1").unwrap().is_loopback());
        assert!(!Addr::parse("tcp:0.0.0.0:1").unwrap().is_loopback());
        assert!(!Addr::parse("tcp:10.1.2.3:1").unwrap().is_loopback());
    }
}
