//! kcoro-ipc: kcoro channels served by one process and used by others, over Unix and TCP
//! sockets.
//!
//! ```no_run
//! use std::time::Duration;
//! use kcoro::chan::{self, Kind};
//!
//! # fn main() -> Result<(), kcoro_ipc::IpcError> {
//! // The serving process publishes local channels by name.
//! let (jobs_tx, jobs_rx) = chan::buffered::<Vec<u8>>(1024);
//! let server = kcoro_ipc::Server::bind("unix:/tmp/kcoro-demo.sock")?
//!     .serve_channel("jobs", jobs_tx, jobs_rx)
//!     .start()?;
//!
//! // Another process (here the same one) uses them with the local channel API.
//! let conn = kcoro_ipc::connect("unix:/tmp/kcoro-demo.sock")?;
//! let jobs = conn.sender::<Vec<u8>>("jobs")?;
//! jobs.send_timeout(b"resize".to_vec(), Duration::from_millis(50)).map_err(|e| e.kind())?;
//! let rx = conn.receiver::<Vec<u8>>("jobs")?;
//! assert_eq!(rx.recv()?, b"resize");
//! let (tx, rx) = conn.make::<String>("scratch", Kind::Unlimited, 0)?; // a new channel there
//! # drop((tx, rx, server)); Ok(()) }
//! ```
//!
//! See `docs/IPC.md` for how to use it and `docs/IPC_PROTOCOL.md` for the wire format.

/// The examples of `docs/IPC.md` run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/IPC.md")]
struct IpcDocDoctests;

/// The examples of `docs/CHANMON.md` (making a program attachable, `on_deadlock`) compile as doctests.
#[cfg(all(doctest, feature = "server"))]
#[doc = include_str!("../../../docs/CHANMON.md")]
struct ChanmonDocDoctests;

mod addr;
mod auth;
mod client;
#[cfg(feature = "server")]
pub mod coros;
pub mod element;
mod ids;
pub mod metrics;
pub mod monitor;
pub mod proto;
mod ring;
#[cfg(not(loom))]
#[doc(hidden)]
pub use ring::fuzz_rings;
#[cfg(feature = "server")]
mod server;
mod shm;
pub mod stats;
mod wire;

pub use addr::Addr;
pub use client::{
    ConnectOptions, Connection, Lease, LeaseSendError, RemoteReceiver, RemoteSender, ServerInfo, Transport,
    connect,
};
pub use coros::{CoroutineInfo, CoroutineReport};
pub use element::{DecodeError, Element, Postcard, SharedView};
#[cfg(feature = "server")]
pub use server::{Server, ServerBuilder};
pub use stats::{ChannelStats, SchedStats};

use kcoro::chan::ChanError;

/// What can go wrong setting up or using a connection (channel operations themselves fail
/// with the local channels' [`ChanError`] and [`SendError`](kcoro::chan::SendError)).
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// Not `unix:PATH`, `shm:PATH` or `tcp:HOST:PORT`.
    #[error("bad address {0:?} (expected unix:PATH, shm:PATH or tcp:HOST:PORT)")]
    BadAddr(String),
    /// A socket call failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer sent a frame that cannot be decoded; the connection is closed.
    #[error("protocol error: {0}")]
    Proto(#[from] proto::ProtoError),
    /// The peer speaks another major protocol version.
    #[error("protocol version mismatch: we speak {ours}, the peer {theirs}")]
    Version {
        /// Our major version.
        ours: u32,
        /// The peer's.
        theirs: u32,
    },
    /// The shared-secret handshake failed or is impossible.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The server answered the request with an error.
    #[error("server refused {cmd}: {message} ({code})")]
    Refused {
        /// The request's command.
        cmd: &'static str,
        /// The negative errno.
        code: i32,
        /// The server's explanation.
        message: String,
    },
    /// A channel operation failed the way a local one fails.
    #[error(transparent)]
    Chan(#[from] ChanError),
    /// The connection is closed (the peer died or closed it, or it was shut down).
    #[error("connection closed{}", .0.as_ref().map(|w| format!(": {w}")).unwrap_or_default())]
    Closed(Option<String>),
    /// A request had no answer within
    /// [`ConnectOptions::request_timeout`](crate::ConnectOptions::request_timeout) (or the
    /// handshake none within what was left of
    /// [`ConnectOptions::connect_timeout`](crate::ConnectOptions::connect_timeout)): the
    /// peer is taken as stalled and the connection is closed.
    #[error("no answer within {0:?}: the peer is stalled or stopped; the connection was closed")]
    Stalled(std::time::Duration),
    /// A bad configuration (refused at start, before anything is bound).
    #[error("invalid configuration: {0}")]
    Config(String),
}

impl IpcError {
    /// The kcoro code: channel codes as local channels report them, `-EPIPE` for a closed
    /// connection, the server's code for a refusal, `-EPROTO` for protocol errors.
    pub fn code(&self) -> i32 {
        match self {
            IpcError::Chan(e) => e.code(),
            IpcError::Closed(_) => -libc::EPIPE,
            IpcError::Stalled(_) => -libc::ETIME,
            IpcError::Refused { code, .. } => *code,
            IpcError::Proto(_) | IpcError::Version { .. } => -libc::EPROTO,
            IpcError::Auth(_) => -libc::EACCES,
            IpcError::BadAddr(_) | IpcError::Config(_) => -libc::EINVAL,
            IpcError::Io(e) => e.raw_os_error().map_or(-libc::EIO, |n| -n),
        }
    }
}

/// The I/O runtime of connections and servers started outside any kcoro runtime: shared by
/// all of them, started on first use, two workers.
pub(crate) fn io_handle() -> Result<kcoro::Handle, IpcError> {
    if let Some(h) = kcoro::Handle::try_current() {
        return Ok(h);
    }
    static RT: std::sync::OnceLock<Result<kcoro::Runtime, String>> = std::sync::OnceLock::new();
    match RT.get_or_init(|| {
        kcoro::Runtime::builder().workers(2).name("kcoro-ipc").build().map_err(|e| e.to_string())
    }) {
        Ok(rt) => Ok(rt.handle()),
        Err(e) => Err(IpcError::Config(format!("cannot start the I/O runtime: {e}"))),
    }
}

/// Runs `f` as a coroutine of `h` and waits for it (from a coroutine or a thread).
pub(crate) fn on<T: Send + 'static>(
    h: &kcoro::Handle,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, IpcError> {
    h.spawn(f).join().map_err(|e| IpcError::Config(format!("I/O coroutine failed: {e}")))
}
