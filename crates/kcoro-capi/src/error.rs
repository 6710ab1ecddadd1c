//! The C API's error enum and the codes it maps to (negated Linux errno, as in
//! `kcoro_port.h`).

use kcoro::chan::ChanError;

/// The `KC_*` codes of `kcoro_port.h`.
pub mod code {
    /// `KC_EAGAIN`: would block.
    pub const EAGAIN: i32 = -libc::EAGAIN;
    /// `KC_EPIPE`: closed.
    pub const EPIPE: i32 = -libc::EPIPE;
    /// `KC_ETIME`: timed out.
    pub const ETIME: i32 = -libc::ETIME;
    /// `KC_ECANCELED`: cancelled.
    pub const ECANCELED: i32 = -libc::ECANCELED;
    /// `KC_ENOTSUP`: not supported.
    pub const ENOTSUP: i32 = -libc::ENOTSUP;
    /// Invalid argument.
    pub const EINVAL: i32 = -libc::EINVAL;
    /// Out of memory.
    pub const ENOMEM: i32 = -libc::ENOMEM;
    /// In use by another call (a select being waited on).
    pub const EBUSY: i32 = -libc::EBUSY;
    /// A panic inside the library (a bug in it), caught at the boundary.
    pub const ENOTRECOVERABLE: i32 = -libc::ENOTRECOVERABLE;
}

/// Why a C API call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A null pointer, an unknown or destroyed handle, a bad kind/size, or an operation of
    /// the wrong mode (`-EINVAL`).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// A channel operation failed (`-EAGAIN`, `-ETIME`, `-EPIPE`, `-ECANCELED`).
    #[error(transparent)]
    Chan(#[from] ChanError),
    /// Not implemented by this library (`-ENOTSUP`).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// Memory, stacks or threads ran out (`-ENOMEM`).
    #[error("out of resources")]
    NoMemory,
    /// The object is in use by another call that has not returned (`-EBUSY`).
    #[error("busy: {0}")]
    Busy(&'static str),
    /// A runtime error with its own code.
    #[error("runtime error {0}")]
    Runtime(i32),
}

impl Error {
    /// The negative code returned to C.
    pub fn code(&self) -> i32 {
        match self {
            Error::Invalid(_) => code::EINVAL,
            Error::Chan(e) => e.code(),
            Error::Unsupported(_) => code::ENOTSUP,
            Error::NoMemory => code::ENOMEM,
            Error::Busy(_) => code::EBUSY,
            Error::Runtime(c) => *c,
        }
    }
}

impl From<kcoro::Error> for Error {
    fn from(e: kcoro::Error) -> Self {
        Error::Runtime(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_port_header_values() {
        assert_eq!(
            (code::EAGAIN, code::EPIPE, code::ETIME, code::ECANCELED, code::ENOTSUP),
            (-11, -32, -62, -125, -95)
        );
        assert_eq!(Error::Chan(ChanError::Timeout).code(), -62);
        assert_eq!(Error::Invalid("x").code(), -22);
    }
}
