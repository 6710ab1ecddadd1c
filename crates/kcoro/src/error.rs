//! The crate's errors: one enum for the runtime, plus the join and stack errors it wraps.
//!
//! Codes follow the kcoro convention (negated Linux errno values) so the C API and the
//! channel layer report the same numbers.

use std::any::Any;
use std::fmt;
use std::io;

/// kcoro error codes (negated errno).
pub mod code {
    /// Would block (`-EAGAIN`).
    pub const WOULD_BLOCK: i32 = -libc::EAGAIN;
    /// Timed out (`-ETIME`).
    pub const TIMEOUT: i32 = -libc::ETIME;
    /// Canceled (`-ECANCELED`).
    pub const CANCELED: i32 = -libc::ECANCELED;
    /// Closed (`-EPIPE`).
    pub const CLOSED: i32 = -libc::EPIPE;
    /// Unsupported (`-ENOTSUP`).
    pub const UNSUPPORTED: i32 = -libc::ENOTSUP;
    /// Out of memory or mappings (`-ENOMEM`).
    pub const NO_MEMORY: i32 = -libc::ENOMEM;
    /// Invalid argument (`-EINVAL`).
    pub const INVALID: i32 = -libc::EINVAL;
}

/// Why a coroutine stack could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The pool reached its configured `max_stacks`.
    #[error("stack pool exhausted: all {max} stacks are in use")]
    Exhausted {
        /// The configured cap.
        max: usize,
    },
    /// The kernel refused to map memory for stacks.
    #[error("cannot map {bytes} bytes for coroutine stacks: {source}")]
    Map {
        /// Size of the refused mapping.
        bytes: usize,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel refused to install a guard page (often `vm.max_map_count` reached).
    #[error("cannot install a stack guard page (vm.max_map_count reached?): {source}")]
    Guard {
        /// The OS error.
        source: io::Error,
    },
}

/// Errors of the kcoro runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A builder setting is out of range.
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    /// A runtime thread or the reactor could not be started.
    #[error("cannot start the runtime: {0}")]
    Start(#[source] io::Error),
    /// No coroutine stack could be provided.
    #[error(transparent)]
    Stack(#[from] StackError),
    /// The operation needs a kcoro runtime and none is current on this thread.
    #[error("no kcoro runtime is running on this thread (use Runtime::block_on or kcoro::run)")]
    NoRuntime,
    /// The runtime is shutting down and accepts no new work.
    #[error("the kcoro runtime is shutting down")]
    ShuttingDown,
    /// Every coroutine stayed parked with nothing left to wake one
    /// ([`Builder::on_deadlock`](crate::Builder::on_deadlock) with
    /// [`OnDeadlock::Fail`](crate::inspect::OnDeadlock::Fail)); the report names who waits on what.
    #[error("{0}")]
    Deadlock(Box<crate::inspect::Deadlock>),
}

impl Error {
    /// The kcoro error code for this error.
    pub fn code(&self) -> i32 {
        match self {
            Error::Config(_) => code::INVALID,
            Error::Start(_) | Error::Stack(_) => code::NO_MEMORY,
            Error::NoRuntime => code::UNSUPPORTED,
            Error::ShuttingDown => code::CLOSED,
            Error::Deadlock(_) => -libc::EDEADLK,
        }
    }
}

/// Why a joined coroutine produced no value.
#[derive(thiserror::Error)]
pub enum JoinError {
    /// The coroutine panicked; the payload is kept for `resume_unwind`.
    #[error("coroutine panicked: {}", panic_message(&**.0))]
    Panicked(Box<dyn Any + Send + 'static>),
    /// The coroutine was unwound by runtime shutdown before it finished.
    #[error("coroutine was cancelled by runtime shutdown")]
    Cancelled,
    /// The coroutine never started: its spawn failed.
    #[error("coroutine could not be spawned: {0}")]
    Spawn(#[source] Error),
    /// A scope's child returned an error; the error went to its scope, which reports it.
    #[error("coroutine failed; its scope reports the error")]
    Failed,
}

impl fmt::Debug for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JoinError::Panicked(p) => f.debug_tuple("Panicked").field(&panic_message(&**p)).finish(),
            JoinError::Cancelled => f.write_str("Cancelled"),
            JoinError::Spawn(e) => f.debug_tuple("Spawn").field(e).finish(),
            JoinError::Failed => f.write_str("Failed"),
        }
    }
}

impl JoinError {
    /// True if the coroutine panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, JoinError::Panicked(_))
    }

    /// The kcoro error code.
    pub fn code(&self) -> i32 {
        match self {
            JoinError::Panicked(_) => code::INVALID,
            JoinError::Cancelled => code::CANCELED,
            JoinError::Spawn(e) => e.code(),
            JoinError::Failed => code::INVALID,
        }
    }

    /// The panic payload, if it panicked.
    pub fn into_panic(self) -> Option<Box<dyn Any + Send + 'static>> {
        match self {
            JoinError::Panicked(p) => Some(p),
            _ => None,
        }
    }
}

/// The text of a panic payload when it is a string.
pub(crate) fn panic_message(p: &(dyn Any + Send)) -> &str {
    if let Some(s) = p.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = p.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}
