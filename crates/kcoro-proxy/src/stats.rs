//! Counters: kept as atomics where the work happens, read as plain snapshots
//! ([`Stats`]) by callers and by the `/metrics` renderer.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a connection ended badly (or never started). Counted per listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A backend refused the connect (the next one was tried).
    ConnectRefused,
    /// A backend connect took longer than `connect_timeout` (the next one was tried).
    ConnectTimeout,
    /// A backend connect failed otherwise (the next one was tried).
    ConnectFailed,
    /// No backend was up, or every one failed to connect: the client was closed.
    NoBackend,
    /// The client reset the connection or a write to it failed.
    ClientReset,
    /// The backend reset the connection or a write to it failed.
    BackendReset,
    /// Nothing moved either way for `idle_timeout`.
    IdleTimeout,
    /// Over `max_connections`: accepted and closed at once.
    Limit,
    /// No coroutine could be started for the connection (out of stacks).
    Spawn,
}

impl ErrorKind {
    /// Every kind, in the order counters are kept and printed.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::ConnectRefused,
        ErrorKind::ConnectTimeout,
        ErrorKind::ConnectFailed,
        ErrorKind::NoBackend,
        ErrorKind::ClientReset,
        ErrorKind::BackendReset,
        ErrorKind::IdleTimeout,
        ErrorKind::Limit,
        ErrorKind::Spawn,
    ];

    /// The label value `/metrics` uses.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::ConnectFailed => "connect_failed",
            ErrorKind::NoBackend => "no_backend",
            ErrorKind::ClientReset => "client_reset",
            ErrorKind::BackendReset => "backend_reset",
            ErrorKind::IdleTimeout => "idle_timeout",
            ErrorKind::Limit => "limit",
            ErrorKind::Spawn => "spawn",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A listener's counters.
#[derive(Debug, Default)]
pub(crate) struct ListenerCounters {
    pub(crate) accepted: AtomicU64,
    pub(crate) closed: AtomicU64,
    /// Bytes read from clients (and written to backends).
    pub(crate) bytes_in: AtomicU64,
    /// Bytes read from backends (and written to clients).
    pub(crate) bytes_out: AtomicU64,
    errors: [AtomicU64; ErrorKind::ALL.len()],
}

impl ListenerCounters {
    pub(crate) fn error(&self, kind: ErrorKind) {
        self.errors[kind.index()].fetch_add(1, Relaxed);
    }

    pub(crate) fn errors(&self) -> ErrorCounts {
        ErrorCounts(std::array::from_fn(|i| self.errors[i].load(Relaxed)))
    }
}

/// Errors by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts([u64; ErrorKind::ALL.len()]);

impl ErrorCounts {
    /// How many of `kind`.
    pub fn get(&self, kind: ErrorKind) -> u64 {
        self.0[kind.index()]
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    fn add(&mut self, other: &ErrorCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine += theirs;
        }
    }
}

/// Everything a proxy counts, at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Per listener, in configuration order.
    pub listeners: Vec<ListenerStats>,
    /// Per pool, in configuration order.
    pub pools: Vec<PoolStats>,
}

/// One listener's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct ListenerStats {
    /// Its name.
    pub name: String,
    /// The address it is bound to.
    pub addr: SocketAddr,
    /// The pool it forwards to.
    pub pool: String,
    /// Connections accepted (including those then refused).
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Connections that have ended.
    pub closed: u64,
    /// Bytes from clients to backends.
    pub bytes_in: u64,
    /// Bytes from backends to clients.
    pub bytes_out: u64,
    /// Errors by kind.
    pub errors: ErrorCounts,
}

impl ListenerStats {
    /// Adds `other`'s counts to these (a removed listener's, under a name still in use).
    pub(crate) fn absorb(&mut self, other: &ListenerStats) {
        self.accepted += other.accepted;
        self.active += other.active;
        self.closed += other.closed;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.errors.add(&other.errors);
    }
}

/// One pool's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolStats {
    /// Its name.
    pub name: String,
    /// Connections waiting for a backend connect now.
    pub pending: u64,
    /// Connections closed because no backend could take them.
    pub no_backend: u64,
    /// Per backend, in configuration order.
    pub backends: Vec<BackendStats>,
}

/// One backend's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendStats {
    /// Its address.
    pub addr: SocketAddr,
    /// Whether it takes new connections.
    pub up: bool,
    /// Connections open to it now.
    pub active: u64,
    /// Connections forwarded to it, ever.
    pub connections: u64,
    /// Connects to it that failed.
    pub connect_errors: u64,
    /// Health checks of it that failed.
    pub checks_failed: u64,
    /// Times its health check took it out.
    pub downs: u64,
}

impl Stats {
    /// The listener named `name`.
    pub fn listener(&self, name: &str) -> Option<&ListenerStats> {
        self.listeners.iter().find(|l| l.name == name)
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolStats> {
        self.pools.iter().find(|p| p.name == name)
    }
}
