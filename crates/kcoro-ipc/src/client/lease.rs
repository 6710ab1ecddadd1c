//! Large elements written in place: a block of the connection's shared region that the
//! program fills (reads a file into, builds a message in) and sends without a copy. The
//! server reads the element where it is, as it reads any shared element.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use kcoro::chan::ChanError;
use kcoro::sync::CancelToken;
use kcoro::zcopy::ZBuf;

use super::remote::{Placed, RemoteSender, lease_for};
use super::window::Share;
use crate::Element;

/// A block of `len` bytes in a connection's shared region, for one element of `sender`'s
/// channel written in place: dereference it as `&mut [u8]`, write the element's encoding
/// (for `Vec<u8>`, `Box<[u8]>` and `bytes::Bytes` elements, the bytes themselves), then
/// [`send`](Self::send) it. Dropping it unsent gives the block back.
pub struct Lease<T> {
    sender: RemoteSender<T>,
    buf: ZBuf,
}

impl<T: Element> RemoteSender<T> {
    /// A block of `len` bytes of this connection's shared region to write one element's
    /// encoding into, then send with no copy ([`Lease::send`]). `None` where a value of
    /// that size would not go through shared memory: below the connection's threshold
    /// (64 KiB by default), over TCP, with `ConnectOptions::no_shared_memory`, or with the
    /// region full. Send a value then.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let path = std::env::temp_dir().join(format!("kcoro-ipc-doc-lease-{}.sock", std::process::id()));
    /// # let addr = format!("unix:{}", path.display());
    /// let (tx, rx) = kcoro::chan::buffered::<bytes::Bytes>(4);
    /// let _server = kcoro_ipc::Server::bind(&addr)?.serve_channel("frames", tx, rx.clone()).start()?;
    /// let frames = kcoro_ipc::connect(&addr)?.sender::<bytes::Bytes>("frames")?;
    /// let mut frame = frames.lease(1 << 20).expect("1 MiB goes through shared memory");
    /// frame.fill(7); // or read a file into it: `file.read_exact(&mut frame)`
    /// frame.send()?;
    /// assert_eq!(rx.recv()?.len(), 1 << 20);
    /// # Ok(()) }
    /// ```
    pub fn lease(&self, len: usize) -> Option<Lease<T>> {
        lease_for(&self.conn, len).map(|buf| Lease { sender: self.clone(), buf })
    }
}

impl<T: Element> Lease<T> {
    /// Sends the element, waiting as [`RemoteSender::send`] does. A send that fails before
    /// the element left this process (the channel closed here, no credit before the
    /// deadline, canceled) hands the lease back in the error, written as it was:
    /// [`LeaseSendError::into_lease`]. Once the element left (a rendezvous send the server
    /// answered with a timeout, a connection that died under it) its block stays the
    /// server's until the server releases it, and the error holds no lease.
    pub fn send(self) -> Result<(), LeaseSendError<T>> {
        self.send_with(None, None)
    }

    /// [`send`](Self::send), waiting at most `timeout`.
    pub fn send_timeout(self, timeout: Duration) -> Result<(), LeaseSendError<T>> {
        self.send_with(Instant::now().checked_add(timeout), None)
    }

    /// [`send`](Self::send) with an optional deadline and cancel token.
    pub fn send_with(
        self,
        deadline: Option<Instant>,
        token: Option<&CancelToken>,
    ) -> Result<(), LeaseSendError<T>> {
        if self.sender.is_closed() {
            return Err(LeaseSendError { kind: ChanError::Closed, lease: Some(self) });
        }
        let sent = match self.sender.window() {
            Some(window) => {
                let share = Share { bytes: self.buf.len() as u64, shared: true };
                if let Err(kind) = window.take(share, deadline, false, token) {
                    return Err(LeaseSendError { kind, lease: Some(self) });
                }
                let Lease { sender, buf } = self;
                sender.queue_placed(Placed::Shared(buf.desc()), Some(buf), share)
            }
            None => {
                let Lease { sender, buf } = self;
                sender.round_trip_placed(Placed::Shared(buf.desc()), Some(buf), deadline, false, token)
            }
        };
        sent.map_err(|kind| LeaseSendError { kind, lease: None })
    }

    /// The element's length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Never true: a lease has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

impl<T> Deref for Lease<T> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl<T> DerefMut for Lease<T> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

/// A [`Lease`] send that failed: why, and the lease itself when the element never left this
/// process (see [`Lease::send`]), to send again without writing it anew.
pub struct LeaseSendError<T> {
    kind: ChanError,
    lease: Option<Lease<T>>,
}

impl<T> LeaseSendError<T> {
    /// Why the send failed.
    pub fn kind(&self) -> ChanError {
        self.kind
    }

    /// The lease, as written, when the element never left this process; `None` when the
    /// server may still read its block.
    pub fn into_lease(self) -> Option<Lease<T>> {
        self.lease
    }
}

impl<T> std::fmt::Debug for LeaseSendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseSendError").field("kind", &self.kind).field("lease", &self.lease).finish()
    }
}

impl<T> std::fmt::Display for LeaseSendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.lease {
            Some(_) => write!(f, "{} (the lease is handed back)", self.kind),
            None => std::fmt::Display::fmt(&self.kind, f),
        }
    }
}

impl<T> std::error::Error for LeaseSendError<T> {}

impl<T> From<LeaseSendError<T>> for ChanError {
    fn from(e: LeaseSendError<T>) -> Self {
        e.kind
    }
}

impl<T> std::fmt::Debug for Lease<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("len", &self.buf.len()).field("desc", &self.buf.desc()).finish()
    }
}
