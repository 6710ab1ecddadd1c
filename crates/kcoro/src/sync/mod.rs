//! Synchronisation built on the parking primitive: cancellation tokens, the ambient
//! token that blocking operations observe, a [`oneshot`] channel for replies, and
//! coroutine-aware [`WaitGroup`], [`Semaphore`] and [`Mutex`] whose waiters park (never
//! blocking a worker thread) and give up when the ambient token fires.

mod ambient;
mod cancel;
mod mutex;
pub mod oneshot;
mod semaphore;
mod wait_group;
pub(crate) mod waiter;

pub use ambient::{checkpoint, current_token, with_token};
pub use cancel::{CancelToken, Cancelled, CancelledFuture, Registration};
pub use mutex::{Mutex, MutexGuard};
pub use semaphore::{Semaphore, SemaphorePermit};
pub use wait_group::WaitGroup;
pub use waiter::WaitError;
pub(crate) use waiter::deadline_after;
