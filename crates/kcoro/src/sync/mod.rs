//! Synchronisation built on the parking primitive: cancellation tokens.

mod cancel;

pub use cancel::{CancelToken, Cancelled, CancelledFuture, Registration};
