//! Why a channel operation failed, with the kcoro code for each reason.
//!
//! A failed send hands its value back inside [`SendError`]: on any failure the sender keeps
//! ownership. Receives fail with a bare [`ChanError`].

use std::fmt;

use crate::code;

/// The four ways a channel operation can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ChanError {
    /// A try-operation found nothing to do without waiting (`-EAGAIN`).
    #[error("operation would block")]
    WouldBlock,
    /// The deadline passed first (`-ETIME`).
    #[error("operation timed out")]
    Timeout,
    /// The channel is closed: no more sends, and (for receives) nothing left to drain
    /// (`-EPIPE`).
    #[error("channel closed")]
    Closed,
    /// The operation's cancel token fired (`-ECANCELED`). Cancellation wins over timeout.
    #[error("operation canceled")]
    Canceled,
}

/// A receive's error: the same four reasons.
pub type RecvError = ChanError;

impl ChanError {
    /// The kcoro code: `-EAGAIN`, `-ETIME`, `-EPIPE` or `-ECANCELED`.
    pub fn code(&self) -> i32 {
        match self {
            ChanError::WouldBlock => code::WOULD_BLOCK,
            ChanError::Timeout => code::TIMEOUT,
            ChanError::Closed => code::CLOSED,
            ChanError::Canceled => code::CANCELED,
        }
    }

    /// Index into per-reason counter arrays.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A send that failed, with the value it could not deliver.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("send failed: {kind}")]
pub struct SendError<T> {
    kind: ChanError,
    value: T,
}

impl<T> SendError<T> {
    /// A failed send of `value` (for wrappers, such as remote channels, that report
    /// failures the way local channels do).
    pub fn new(kind: ChanError, value: T) -> Self {
        Self { kind, value }
    }

    /// Why the send failed.
    pub fn kind(&self) -> ChanError {
        self.kind
    }

    /// The kcoro code of [`kind`](Self::kind).
    pub fn code(&self) -> i32 {
        self.kind.code()
    }

    /// True if the channel was closed.
    pub fn is_closed(&self) -> bool {
        self.kind == ChanError::Closed
    }

    /// The undelivered value, back to its owner.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Borrows the undelivered value.
    pub fn value(&self) -> &T {
        &self.value
    }
}

// Not derived: messages need not be `Debug` for the error to be.
impl<T> fmt::Debug for SendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendError").field("kind", &self.kind).finish_non_exhaustive()
    }
}

impl<T> From<SendError<T>> for ChanError {
    fn from(e: SendError<T>) -> Self {
        e.kind
    }
}
