//! The crate's one error type, and the failed send that hands its value back.
//!
//! Channel-shaped failures (would block, timeout, closed, canceled) are kcoro's own
//! [`ChanError`], so code written against local channels matches on the same reasons;
//! everything NATS-specific carries the client's or the server's own words.

use std::fmt;

use kcoro::chan::ChanError;

/// What can go wrong connecting, declaring a channel, or moving a value.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// A channel operation failed the way a local one fails: `WouldBlock` (a try-send to a
    /// full stream, a rendezvous nobody waits on), `Timeout`, `Closed` (an end marker was
    /// seen, or this end was closed), `Canceled`.
    #[error(transparent)]
    Chan(#[from] ChanError),
    /// The first connection to the server failed (the client reconnects by itself later).
    #[error("cannot connect to {url}: {cause}")]
    Connect {
        /// The URL given.
        url: String,
        /// The client's explanation.
        cause: String,
    },
    /// A channel name or subject NATS does not accept (empty, whitespace, wildcards where
    /// none may be, characters a stream or bucket name cannot hold).
    #[error("bad {what} {name:?}: {why}")]
    BadName {
        /// "subject", "stream name" or "bucket name".
        what: &'static str,
        /// The name given.
        name: String,
        /// Which rule it breaks.
        why: &'static str,
    },
    /// The encoded value is larger than the server accepts (its `max_payload`).
    #[error("payload of {size} bytes exceeds the server's max_payload of {max} bytes")]
    PayloadTooLarge {
        /// Encoded size.
        size: usize,
        /// The server's limit.
        max: usize,
    },
    /// A value could not be encoded, or a received message could not be decoded.
    #[error("codec: {0}")]
    Codec(String),
    /// The server or the client refused or failed an operation.
    #[error("{op}: {cause}")]
    Nats {
        /// What was being done ("publish", "create stream", ...).
        op: &'static str,
        /// The client's or the server's explanation.
        cause: String,
    },
    /// A work queue's durable consumer or its stream is gone from the server (deleted, or
    /// a server with memory storage restarted) and stayed gone for
    /// [`GONE_AFTER`](crate::GONE_AFTER): its receivers and senders fail with this.
    #[error("the work queue's {what} {name:?} is gone from the server")]
    Gone {
        /// "consumer" or "stream".
        what: &'static str,
        /// The queue's name.
        name: String,
    },
    /// The bridge's executor thread is gone (the connection was dropped or could not start).
    #[error("the NATS bridge is shut down")]
    Shutdown,
    /// A local server could not be started (see [`crate::server`]).
    #[error("nats-server: {0}")]
    Server(String),
}

impl NatsError {
    pub(crate) fn nats(op: &'static str, cause: impl fmt::Display) -> Self {
        NatsError::Nats { op, cause: cause.to_string() }
    }

    /// The channel reason, if this is one (what a local channel would have reported).
    pub fn chan(&self) -> Option<ChanError> {
        match self {
            NatsError::Chan(e) => Some(*e),
            _ => None,
        }
    }

    /// The kcoro code: channel reasons as local channels report them, `-EPIPE` for a
    /// shut-down bridge, `-EINVAL` for bad names, `-EMSGSIZE` for oversize payloads,
    /// `-EBADMSG` for codec failures, `-ECONNREFUSED` for a failed connect, `-ENOENT` for a
    /// queue that is gone, `-EIO` for the rest.
    pub fn code(&self) -> i32 {
        const EINVAL: i32 = 22;
        const EMSGSIZE: i32 = 90;
        const EBADMSG: i32 = 74;
        const ECONNREFUSED: i32 = 111;
        const EPIPE: i32 = 32;
        const EIO: i32 = 5;
        const ENOENT: i32 = 2;
        match self {
            NatsError::Chan(e) => e.code(),
            NatsError::Connect { .. } => -ECONNREFUSED,
            NatsError::BadName { .. } => -EINVAL,
            NatsError::PayloadTooLarge { .. } => -EMSGSIZE,
            NatsError::Codec(_) => -EBADMSG,
            NatsError::Shutdown => -EPIPE,
            NatsError::Gone { .. } => -ENOENT,
            NatsError::Nats { .. } | NatsError::Server(_) => -EIO,
        }
    }
}

/// A send that failed, with the value it could not deliver (as kcoro's
/// [`SendError`](kcoro::chan::SendError), but with the NATS cause).
#[derive(thiserror::Error)]
#[error("send failed: {error}")]
pub struct SendError<T> {
    error: NatsError,
    value: T,
}

impl<T> SendError<T> {
    pub(crate) fn new(error: NatsError, value: T) -> Self {
        SendError { error, value }
    }

    /// Why the send failed.
    pub fn error(&self) -> &NatsError {
        &self.error
    }

    /// The channel reason, if the failure is one (see [`NatsError::chan`]).
    pub fn chan(&self) -> Option<ChanError> {
        self.error.chan()
    }

    /// The undelivered value, back to its owner.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// The error without the value.
    pub fn into_error(self) -> NatsError {
        self.error
    }
}

// Not derived: values need not be `Debug` for the error to be.
impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").field("error", &self.error).finish_non_exhaustive()
    }
}

impl<T> From<SendError<T>> for NatsError {
    fn from(e: SendError<T>) -> Self {
        e.error
    }
}
