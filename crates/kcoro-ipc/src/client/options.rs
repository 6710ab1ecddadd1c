//! How to connect ([`ConnectOptions`]), and what a connection says about itself.

use std::time::Duration;

use crate::proto::Limits;
use crate::shm::ShmConfig;

/// How to connect.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub(super) secret: Option<Vec<u8>>,
    pub(super) limits: Limits,
    pub(super) shm: Option<ShmConfig>,
    pub(super) no_shm: bool,
    pub(super) connect_timeout: Option<Duration>,
    pub(super) request_timeout: Option<Duration>,
    pub(super) ring_bytes: Option<u64>,
    pub(super) ring_spin: Option<Duration>,
    pub(super) shared_window: Option<u64>,
}

/// Bytes of shared-memory elements one channel's sends may have in flight, by default.
pub(super) const DEFAULT_SHARED_WINDOW: u64 = 4 << 20;

impl ConnectOptions {
    /// Defaults: no secret, default limits, shared memory for elements ≥ 64 KiB on Unix.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared secret, for a server that requires the handshake.
    pub fn secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// Limits on what this side accepts (frames, attributes, and the size of the regions
    /// the server may share: `max_regions`, `max_region_bytes`).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Elements of at least `threshold` bytes go through a shared region of
    /// `region_len` bytes (Unix sockets only).
    pub fn shared_memory(mut self, threshold: usize, region_len: usize) -> Self {
        self.shm = Some(ShmConfig { threshold: threshold.max(1), region_len });
        self.no_shm = false;
        self
    }

    /// Most bytes of shared-memory elements one channel's credited sends may have in flight
    /// from this connection (4 MiB by default; an element larger goes alone): what keeps
    /// the region's blocks few and warm, where more would only fault in fresh pages. The
    /// server's window bounds inline bytes apart from these (servers of protocol minor 8
    /// on; with an older one both count in its window).
    pub fn shared_window(mut self, bytes: u64) -> Self {
        self.shared_window = Some(bytes.max(1));
        self
    }

    /// Every element inline, whatever its size, both ways: this side sends none through
    /// shared memory, and its HELLO asks the server for none (`NO_SHM`), so an element of
    /// a receive reply comes inline, within this side's frame limit.
    pub fn no_shared_memory(mut self) -> Self {
        self.no_shm = true;
        self
    }

    /// For `shm:` addresses: each ring's size (a power of two from 4 KiB; 256 KiB by
    /// default). A frame larger than the ring still goes, through it in pieces.
    pub fn ring_bytes(mut self, bytes: u64) -> Self {
        self.ring_bytes = Some(bytes);
        self
    }

    /// For `shm:` addresses: how long the reader spins on an empty ring before it sleeps
    /// (50 µs by default; zero sleeps at once). While messages come faster than this,
    /// nobody sleeps and nothing is paid for a wake-up; the price is that much CPU per
    /// pause in the traffic.
    pub fn ring_spin(mut self, spin: Duration) -> Self {
        self.ring_spin = Some(spin);
        self
    }

    /// Give up connecting after `t`: the socket's connect and the handshake together (a
    /// stopped server's kernel still accepts; its answer to HELLO never comes), failing
    /// with [`IpcError::Stalled`] when the answer is what did not come in time.
    ///
    /// [`IpcError::Stalled`]: crate::IpcError::Stalled
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = Some(t);
        self
    }

    /// Take the server as stalled when a request (the handshake included) has no answer
    /// after `t`: that request fails with [`IpcError::Stalled`] and the connection closes,
    /// failing every other request on it. For a peer that may be stopped or wedged (a
    /// monitor watching a process): without it a request waits as long as the socket
    /// stays open. A receive or send that waits for a value is a request too, so set `t`
    /// above the longest wait such a call asks for.
    ///
    /// [`IpcError::Stalled`]: crate::IpcError::Stalled
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = Some(t);
        self
    }
}

/// What carries a connection's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// A TCP socket.
    Tcp,
    /// A Unix socket.
    Unix,
    /// Shared-memory rings between two processes of one host, with a Unix socket beside
    /// them for descriptors and as the fallback (`shm:` addresses).
    Shm,
}

/// What the server says about itself (GET_INFO).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// Its name.
    pub name: String,
    /// Protocol version it speaks.
    pub version: (u32, u32),
    /// The largest frame it accepts.
    pub max_frame: u32,
    /// Connections it has open now (this one included).
    pub connections: u32,
}
