//! Hierarchical cancellation tokens.
//!
//! A [`CancelToken`] is a cheap, cloneable handle to a cancellation flag. `cancel()` sets
//! it once and for all, wakes everything waiting on it — coroutines, threads and futures —
//! and cancels every child token made with [`CancelToken::child`]. A child cancelled on its
//! own does not affect its parent.
//!
//! Waiting is parking: [`CancelToken::cancelled`] parks the caller; an operation that must
//! give up when a token fires (a channel send, say) registers its own unparker with
//! [`CancelToken::register`] and is woken at once, with no polling.
//!
//! # Invariants
//! - `cancelled` goes `false → true` once and never back.
//! - Once `cancelled` is set (under `state`), no waiter or child is added: registration
//!   after cancellation reports it instead, so a wake is never missed.
//! - A parent lists its children weakly (dropped children are pruned as the parent adds
//!   more: at once from the end of the list, all of them when the list is full, so it
//!   holds at most about twice its live children); a child holds its parent strongly, so `root.child().child()` stays linked
//!   to `root` after the middle handle is dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use crate::coro::wait::Wait;
use crate::park::{self, Unparker};

/// A cancellation flag shared by clones, with children that follow it.
#[derive(Clone)]
pub struct CancelToken {
    node: Arc<Node>,
}

struct Node {
    cancelled: AtomicBool,
    state: Mutex<State>,
    /// Keeps the ancestors alive while a descendant lives, so a chain stays linked even
    /// when the handles of intermediate tokens are dropped. Never read: it only owns.
    _parent: Option<Arc<Node>>,
}

#[derive(Default)]
struct State {
    /// Registered waiters by key; `None` marks a freed key.
    waiters: Vec<Option<Unparker>>,
    free: Vec<usize>,
    children: Vec<Weak<Node>>,
}

/// Returned by operations that stopped because their token was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("operation cancelled")]
pub struct Cancelled;

impl Cancelled {
    /// The kcoro code (`-ECANCELED`).
    pub fn code(&self) -> i32 {
        crate::code::CANCELED
    }
}

/// A waiter registered with [`CancelToken::register`]; unregisters on drop.
#[must_use = "dropping the registration unregisters the waiter"]
pub struct Registration {
    node: Arc<Node>,
    key: usize,
}

impl Default for CancelToken {
    fn default() -> Self {
        Self::new()
    }
}

impl CancelToken {
    /// A fresh token, not cancelled.
    pub fn new() -> Self {
        Self::with_parent(None)
    }

    fn with_parent(parent: Option<Arc<Node>>) -> Self {
        let node = Node { cancelled: AtomicBool::new(false), state: Mutex::default(), _parent: parent };
        Self { node: Arc::new(node) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.node.lock()
    }

    /// A child token: cancelled when this one is (or already cancelled if this one is),
    /// and cancellable on its own without affecting this one.
    pub fn child(&self) -> CancelToken {
        let child = CancelToken::with_parent(Some(Arc::clone(&self.node)));
        let mut st = self.lock();
        if self.is_cancelled() {
            drop(st);
            child.cancel();
        } else {
            // Prune the whole list only when it is full, so a parent with many live children
            // (a connection with its requests) pays amortized O(1) per child instead of a
            // scan of all of them; a dead child at the end (the child dropped just before)
            // goes at once. The list holds at most about twice the live children.
            while st.children.last().is_some_and(|w| w.strong_count() == 0) {
                st.children.pop();
            }
            if st.children.len() == st.children.capacity() {
                st.children.retain(|w| w.strong_count() > 0);
            }
            st.children.push(Arc::downgrade(&child.node));
        }
        child
    }

    /// True once cancelled (directly or through a parent).
    pub fn is_cancelled(&self) -> bool {
        self.node.cancelled.load(SeqCst)
    }

    /// Cancels this token and all its descendants, waking every waiter. Idempotent.
    pub fn cancel(&self) {
        let mut stack = vec![Arc::clone(&self.node)];
        while let Some(node) = stack.pop() {
            let (waiters, children) = {
                let mut st = node.lock();
                if node.cancelled.swap(true, SeqCst) {
                    continue; // already cancelled: its descendants were handled then
                }
                (std::mem::take(&mut st.waiters), std::mem::take(&mut st.children))
            };
            for u in waiters.into_iter().flatten() {
                u.unpark();
            }
            stack.extend(children.iter().filter_map(Weak::upgrade));
        }
    }

    /// Registers `who` to be unparked when the token is cancelled. Returns `None` if it
    /// already is (nothing will be unparked: the caller must not wait).
    pub fn register(&self, who: Unparker) -> Option<Registration> {
        let mut st = self.lock();
        if self.is_cancelled() {
            return None;
        }
        let key = match st.free.pop() {
            Some(k) => {
                st.waiters[k] = Some(who);
                k
            }
            None => {
                st.waiters.push(Some(who));
                st.waiters.len() - 1
            }
        };
        Some(Registration { node: Arc::clone(&self.node), key })
    }

    /// Waits (parking the coroutine or thread) until cancelled.
    pub fn cancelled(&self) {
        let Some(_reg) = self.register(park::current()) else { return };
        while !self.is_cancelled() {
            park::park_as(Wait::CANCEL);
        }
    }

    /// Waits until cancelled or `deadline`; returns `true` if cancelled.
    pub fn cancelled_deadline(&self, deadline: Instant) -> bool {
        let Some(_reg) = self.register(park::current()) else { return true };
        while !self.is_cancelled() {
            if park::park_deadline_as(deadline, Wait::CANCEL) {
                return self.is_cancelled();
            }
        }
        true
    }

    /// A future that completes when the token is cancelled.
    pub fn cancelled_async(&self) -> CancelledFuture {
        CancelledFuture { token: self.clone(), reg: None }
    }
}

impl Node {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation is a push/take of whole entries: poisoning leaves it consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let removed = {
            let mut st = self.node.lock();
            // After cancellation the list was taken: nothing to remove.
            let w = st.waiters.get_mut(self.key).and_then(Option::take);
            if w.is_some() {
                st.free.push(self.key);
            }
            w
        };
        drop(removed); // outside the lock
    }
}

impl fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelToken").field("cancelled", &self.is_cancelled()).finish()
    }
}

impl fmt::Debug for Registration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration").field("key", &self.key).finish()
    }
}

/// Completes when its token is cancelled; see [`CancelToken::cancelled_async`].
#[derive(Debug)]
pub struct CancelledFuture {
    token: CancelToken,
    reg: Option<Registration>,
}

impl Future for CancelledFuture {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.token.is_cancelled() {
            return Poll::Ready(());
        }
        // Re-register every poll: the waker may have changed. The old registration is
        // dropped (unregistered) only after the new one is in place, so no cancel between
        // the two is missed.
        let reg = self.token.register(Unparker::from_waker(cx.waker().clone()));
        match reg {
            None => Poll::Ready(()),
            Some(reg) => {
                self.reg = Some(reg);
                Poll::Pending
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cancel_is_sticky_and_idempotent() {
        let t = CancelToken::new();
        assert!(!t.is_cancelled());
        t.cancel();
        t.cancel();
        assert!(t.is_cancelled());
        assert!(t.clone().is_cancelled());
        assert!(t.register(park::current()).is_none(), "registering after cancel reports it");
    }

    #[test]
    fn children_follow_parents_not_the_reverse() {
        let root = CancelToken::new();
        let a = root.child();
        let a1 = a.child();
        let b = root.child();
        a.cancel();
        assert!(a.is_cancelled() && a1.is_cancelled());
        assert!(!root.is_cancelled() && !b.is_cancelled());
        root.cancel();
        assert!(b.is_cancelled());
        assert!(root.child().is_cancelled(), "a child of a cancelled token starts cancelled");
    }

    #[test]
    fn grandchildren_follow_through_dropped_middle_handles() {
        let root = CancelToken::new();
        let grandchild = root.child().child();
        root.cancel();
        assert!(grandchild.is_cancelled());
    }

    #[test]
    fn dropped_children_are_pruned() {
        let root = CancelToken::new();
        for _ in 0..100 {
            drop(root.child());
        }
        assert!(root.node.lock().children.len() <= 1);
    }

    /// Many live children and many dropped ones: the list stays within about twice the
    /// live ones, and cancelling the parent still reaches every live child.
    #[test]
    fn many_children_stay_bounded_and_followed() {
        let root = CancelToken::new();
        let mut live = Vec::new();
        for i in 0..10_000 {
            let c = root.child();
            if i % 2 == 0 {
                live.push(c);
            }
        }
        let listed = root.node.lock().children.len();
        assert!(listed <= 2 * live.len() + 8, "{listed} listed for {} live", live.len());
        root.cancel();
        assert!(live.iter().all(CancelToken::is_cancelled));
    }

    #[test]
    fn registration_drop_unregisters_and_keys_are_reused() {
        let t = CancelToken::new();
        let r1 = t.register(park::current()).unwrap();
        let k = r1.key;
        drop(r1);
        let r2 = t.register(park::current()).unwrap();
        assert_eq!(r2.key, k);
        assert_eq!(t.node.lock().waiters.iter().flatten().count(), 1);
    }

    #[test]
    fn thread_waiter_wakes_on_parent_cancel() {
        let root = CancelToken::new();
        let child = root.child();
        let waiter = std::thread::spawn(move || {
            child.cancelled();
            child.is_cancelled()
        });
        std::thread::sleep(Duration::from_millis(5));
        root.cancel();
        assert!(waiter.join().unwrap());
    }

    #[test]
    fn deadline_wait_times_out_without_cancel() {
        let t = CancelToken::new();
        assert!(!t.cancelled_deadline(Instant::now() + Duration::from_millis(3)));
        t.cancel();
        assert!(t.cancelled_deadline(Instant::now() + Duration::from_secs(3600)));
    }
}
