//! `produce`: a coroutine that fills a channel, stopped when its consumer goes away.

use super::{BoxError, Outcome};
use crate::chan::{Builder, Receiver, Sender};
use crate::runtime::{Handle, SpawnOptions};
use crate::sync::{self, CancelToken};

/// Spawns a detached producer: `f` sends into a new channel built from `chan` (a
/// [`Kind`](crate::chan::Kind) or a [`Builder`]) and the returned receiver reads it.
///
/// - The channel closes when `f` returns, fails or panics (receivers drain, then see
///   `Closed`).
/// - Cancelling the receiver, or dropping the last one, cancels the producer's token: its
///   blocking operations (the send it is parked in, a [`delay`](crate::delay), another
///   channel) return `Canceled` at once.
/// - The producer runs under a child of the caller's ambient token, so cancelling the
///   caller's scope stops it too.
///
/// A detached producer's error is printed to stderr unless it follows a cancellation; use
/// [`Scope::produce`](super::Scope::produce) to have it fail a scope instead.
///
/// ```
/// use kcoro::chan::Kind;
///
/// kcoro::run(|| {
///     let squares = kcoro::produce(Kind::Rendezvous, |tx| {
///         for i in 1..=5u64 {
///             tx.send(i * i)?;
///         }
///         Ok::<_, kcoro::chan::SendError<u64>>(())
///     });
///     assert_eq!(squares.iter().collect::<Vec<_>>(), [1, 4, 9, 16, 25]);
/// });
/// ```
///
/// # Panics
/// Outside a kcoro runtime.
pub fn produce<T, F, O>(chan: impl Into<Builder<T>>, f: F) -> Receiver<T>
where
    T: Send + 'static,
    F: FnOnce(Sender<T>) -> O + Send + 'static,
    O: Outcome + 'static,
{
    let handle =
        Handle::try_current().unwrap_or_else(|| panic!("kcoro::produce called outside a kcoro runtime"));
    let token = sync::current_token().map_or_else(CancelToken::new, |t| t.child());
    let (tx, rx) = chan.into().cancel_on_discard(token.clone()).build();
    let mine = token.clone();
    let body = move || {
        if let Err(e) = f(tx).into_result()
            && !mine.is_cancelled()
        {
            report(&e);
        }
    };
    if let Err(e) = handle.spawn_detached(SpawnOptions::new().cancel_token(token), body) {
        // The closure (and the sender in it) is gone: the receiver sees `Closed`.
        eprintln!("kcoro::produce: cannot spawn the producer: {e}");
    }
    rx
}

fn report(e: &BoxError) {
    eprintln!("kcoro::produce: producer failed: {e}");
}
