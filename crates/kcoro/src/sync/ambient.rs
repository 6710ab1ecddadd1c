//! The ambient cancel token: the one a coroutine (or thread) runs under, consulted by every
//! blocking operation that was not handed a token of its own.
//!
//! A coroutine gets it at spawn ([`SpawnOptions::cancel_token`](crate::SpawnOptions::cancel_token),
//! or its scope's token for a scope child); [`with_token`] swaps it for the length of a
//! call (scopes use it for their body). Threads keep theirs in a thread-local.
//!
//! Channel operations, [`delay`](crate::delay), joins of scoped children and the
//! primitives in this module give up with `Canceled` when the ambient token fires; they
//! register on it only when they are about to park, so the fast paths never touch it.

use std::cell::RefCell;

use crate::runtime::context;
use crate::sync::{CancelToken, Cancelled};

thread_local! {
    static THREAD_TOKEN: RefCell<Option<CancelToken>> = const { RefCell::new(None) };
}

/// The caller's ambient token, if it runs under one.
pub fn current_token() -> Option<CancelToken> {
    match context::current_task_ptr() {
        // SAFETY: the running task is alive while it runs; its slot is ours to read.
        Some(t) => unsafe { t.as_ref() }.token_slot().borrow().clone(),
        None => THREAD_TOKEN.with(|t| t.borrow().clone()),
    }
}

/// `Err(Cancelled)` if the caller's ambient token is cancelled: a cancellation point for
/// loops that never block.
pub fn checkpoint() -> Result<(), Cancelled> {
    match current_token() {
        Some(t) if t.is_cancelled() => Err(Cancelled),
        _ => Ok(()),
    }
}

/// Runs `f` with `token` as the caller's ambient token, restoring the previous one after
/// (also on unwind).
pub fn with_token<R>(token: CancelToken, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<CancelToken>);
    impl Drop for Restore {
        fn drop(&mut self) {
            replace(self.0.take());
        }
    }
    let _restore = Restore(replace(Some(token)));
    f()
}

/// Swaps the ambient token, returning the old one. The borrow ends before returning, so
/// nothing is held across a suspension.
fn replace(token: Option<CancelToken>) -> Option<CancelToken> {
    match context::current_task_ptr() {
        // SAFETY: as in `current_token`.
        Some(t) => unsafe { t.as_ref() }.token_slot().replace(token),
        None => THREAD_TOKEN.with(|t| t.replace(token)),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn thread_scoped_token_is_restored_on_unwind() {
        assert!(current_token().is_none());
        let t = CancelToken::new();
        let r = std::panic::catch_unwind(|| {
            with_token(t.clone(), || {
                assert!(current_token().is_some());
                t.cancel();
                assert_eq!(checkpoint(), Err(Cancelled));
                panic!("boom");
            })
        });
        assert!(r.is_err());
        assert!(current_token().is_none());
        assert_eq!(checkpoint(), Ok(()));
    }
}
