//! The reply half of `ask`: a [`oneshot`](crate::sync::oneshot) the actor answers through,
//! and the asker's wait on it. Dropping an unused [`Reply`] closes the oneshot, so an
//! asker never waits for a reply that cannot come.

use std::time::Instant;

use super::AskError;
use crate::chan::ChanError;
use crate::coro::wait::{self, Wait};
use crate::sync::oneshot;

/// Where an actor sends the answer to an `ask`. Send at most once; dropping it unanswered
/// makes the asker's `ask` return [`AskError::NoReply`] at once.
pub struct Reply<R> {
    tx: oneshot::Sender<R>,
}

pub(crate) struct Pending<R> {
    rx: oneshot::Receiver<R>,
}

pub(crate) fn pair<R>() -> (Reply<R>, Pending<R>) {
    let (tx, rx) = oneshot::channel();
    (Reply { tx }, Pending { rx })
}

impl<R> Reply<R> {
    /// Answers the ask. If the asker gave up (timeout, cancel), the value is dropped.
    pub fn send(self, value: R) {
        let _ = self.tx.send(value);
    }
}

impl<R> std::fmt::Debug for Reply<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply").field("asker_gone", &self.tx.is_closed()).finish()
    }
}

impl<R> Pending<R> {
    /// Waits for the reply until `deadline`, giving up early if the caller's ambient token
    /// is cancelled. Parks; never polls.
    pub(crate) fn wait(mut self, deadline: Option<Instant>) -> Result<R, AskError> {
        self.rx.recv_as(deadline, None, Wait::sync(wait::SYNC_ACTOR_REPLY)).map_err(|e| match e {
            ChanError::Timeout | ChanError::WouldBlock => AskError::Timeout,
            ChanError::Canceled => AskError::Canceled,
            ChanError::Closed => AskError::NoReply,
        })
    }
}
