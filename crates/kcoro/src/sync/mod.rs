//! Synchronisation built on the parking primitive: cancellation tokens and the ambient
//! token that blocking operations observe.

mod ambient;
mod cancel;

pub use ambient::{checkpoint, current_token, with_token};
pub use cancel::{CancelToken, Cancelled, CancelledFuture, Registration};
