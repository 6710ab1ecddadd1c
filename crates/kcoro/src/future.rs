//! Waiting for a [`Future`] from a coroutine: [`wait`] polls it right here, on the
//! coroutine, with a waker that unparks the coroutine, and parks in between — the worker
//! runs other coroutines meanwhile. Outside a coroutine the same calls block the thread
//! (a `block_on`).
//!
//! This is for futures that need no particular executor: `futures` channels,
//! `async-channel`, kcoro's own futures, a hand-written state machine. A future that needs
//! tokio's reactor or timers (reqwest, hyper, tonic, sqlx, async-nats) goes through
//! `kcoro::compat::tokio::wait` (cargo feature `tokio`).
//!
//! ```
//! use std::time::Duration;
//!
//! let answer = kcoro::run(|| {
//!     let (tx, rx) = kcoro::chan::buffered::<u32>(1);
//!     kcoro::spawn(move || {
//!         kcoro::sleep(Duration::from_millis(5));
//!         tx.send(42)
//!     });
//!     // Any future: here kcoro's own, awaited from a coroutine without blocking a worker.
//!     kcoro::future::wait(async move { rx.recv_async().await })
//! });
//! assert_eq!(answer, Ok(Ok(42)));
//! ```
//!
//! The family follows the channel API's: [`wait`] gives up only when the caller's ambient
//! cancel token fires (its scope's, see [`sync::current_token`](crate::sync::current_token)),
//! [`wait_timeout`] and [`wait_deadline`] also at a deadline, [`wait_cancellable`] also on
//! a token of its own, [`wait_with`] takes both. Giving up drops the future, which is how
//! futures are cancelled.

use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant};

use crate::coro::wait::Wait;
use crate::park::{self, Unparker};
use crate::sync::{CancelToken, WaitError, current_token};

/// Polls `fut` to completion on the calling coroutine (or thread), parking while it is
/// pending. `Err(Cancelled)` once the caller's ambient cancel token fires (the future is
/// dropped).
pub fn wait<F: IntoFuture>(fut: F) -> Result<F::Output, WaitError> {
    wait_with(fut, None, None)
}

/// [`wait`], giving up with [`WaitError::Timeout`] after `timeout`.
pub fn wait_timeout<F: IntoFuture>(fut: F, timeout: Duration) -> Result<F::Output, WaitError> {
    wait_with(fut, crate::sync::deadline_after(timeout), None)
}

/// [`wait`], giving up with [`WaitError::Timeout`] at `deadline`.
pub fn wait_deadline<F: IntoFuture>(fut: F, deadline: Instant) -> Result<F::Output, WaitError> {
    wait_with(fut, Some(deadline), None)
}

/// [`wait`], also giving up with [`WaitError::Cancelled`] when `token` is cancelled.
pub fn wait_cancellable<F: IntoFuture>(fut: F, token: &CancelToken) -> Result<F::Output, WaitError> {
    wait_with(fut, None, Some(token))
}

/// [`wait`] with an optional deadline and an optional token of its own (the ambient one
/// applies too). Cancellation wins over the deadline.
pub fn wait_with<F: IntoFuture>(
    fut: F,
    deadline: Option<Instant>,
    token: Option<&CancelToken>,
) -> Result<F::Output, WaitError> {
    let mut fut = pin!(fut.into_future());
    drive(deadline, token, |cx| fut.as_mut().poll(cx))
}

/// Wakes the waiting coroutine (or thread): a flag, so a wake during a poll is not lost,
/// and its unparker.
struct Wake {
    woken: AtomicBool,
    unparker: Unparker,
}

impl std::task::Wake for Wake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Release: what the waker's caller made ready is seen by the next poll.
        self.woken.store(true, Release);
        self.unparker.unpark();
    }
}

/// The loop under every `wait`: `poll` until ready, parking in between; gives up on a
/// cancelled token (the caller's or the ambient one) or at `deadline`. `poll` may be
/// wrapped by the caller (tokio's context is entered around each poll).
///
/// The first poll runs with a waker on this stack ([`FirstPoll`]): a future that is ready
/// at once costs no allocation and no token lookup. Only a future that keeps the waker
/// (clones it) gets the heap waker every later poll uses.
pub(crate) fn drive<T>(
    deadline: Option<Instant>,
    token: Option<&CancelToken>,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>,
) -> Result<T, WaitError> {
    let first = FirstPoll { me: park::current(), woken: AtomicBool::new(false), made: OnceLock::new() };
    // SAFETY: `first` outlives the waker, which lives only for this poll (a future that
    // keeps it must clone it, and a clone is a heap waker of its own; see `FirstPoll`).
    let stack_waker =
        unsafe { Waker::from_raw(RawWaker::new(std::ptr::from_ref(&first).cast(), &FIRST_POLL)) };
    if let Poll::Ready(v) = poll(&mut Context::from_waker(&stack_waker)) {
        return Ok(v);
    }
    drop(stack_waker);
    let wake = first.into_heap();
    let ambient = current_token();
    let tokens = [token, ambient.as_ref()];
    let cancelled = || tokens.iter().flatten().any(|t| t.is_cancelled());
    let mut registrations = Vec::new();
    for t in tokens.into_iter().flatten() {
        match t.register(wake.unparker.clone()) {
            Some(r) => registrations.push(r),
            None => return Err(WaitError::Cancelled),
        }
    }
    let waker = Waker::from(Arc::clone(&wake));
    let mut cx = Context::from_waker(&waker);
    loop {
        // Park until the waker fires (then poll again), a token fires, or the deadline.
        loop {
            if cancelled() {
                return Err(WaitError::Cancelled);
            }
            if wake.woken.swap(false, Acquire) {
                break;
            }
            let timed_out = match deadline {
                None => {
                    park::park_as(Wait::FUTURE);
                    false
                }
                Some(d) => park::park_deadline_as(d, Wait::FUTURE),
            };
            if timed_out && !wake.woken.load(Acquire) {
                return Err(if cancelled() { WaitError::Cancelled } else { WaitError::Timeout });
            }
        }
        if let Poll::Ready(v) = poll(&mut cx) {
            return Ok(v);
        }
    }
}

/// The first poll's waker, on the waiting frame's stack. Waking it sets `woken` (and
/// unparks the waiter, a harmless extra token if it is running); cloning it makes the heap
/// waker (`made`, once) and hands out that one, so nothing that outlives the poll points
/// here. Atomics and a `OnceLock`: `&Waker` is `Sync`, a future may use it from another
/// thread during its poll.
struct FirstPoll {
    me: Unparker,
    woken: AtomicBool,
    made: OnceLock<Arc<Wake>>,
}

impl FirstPoll {
    fn heap(&self) -> &Arc<Wake> {
        self.made.get_or_init(|| Arc::new(Wake { woken: AtomicBool::new(false), unparker: self.me.clone() }))
    }

    fn wake(&self) {
        self.woken.store(true, Release);
        match self.made.get() {
            Some(w) => std::task::Wake::wake_by_ref(w),
            None => self.me.unpark(),
        }
    }

    /// The heap waker for the polls that follow, carrying a wake the first poll saw.
    fn into_heap(self) -> Arc<Wake> {
        let woken = self.woken.load(Acquire);
        let heap = Arc::clone(self.heap());
        if woken {
            heap.woken.store(true, Release);
        }
        heap
    }
}

static FIRST_POLL: RawWakerVTable = RawWakerVTable::new(first_clone, first_wake, first_wake, first_drop);

/// # Safety (all four)
/// `p` is the `&FirstPoll` the stack waker was made from, alive for the whole poll, and
/// these run only during it (the waker is borrowed by the poll's `Context`).
unsafe fn first_clone(p: *const ()) -> RawWaker {
    // SAFETY: see above.
    let first = unsafe { &*p.cast::<FirstPoll>() };
    let w = std::mem::ManuallyDrop::new(Waker::from(Arc::clone(first.heap())));
    RawWaker::new(w.data(), w.vtable())
}

unsafe fn first_wake(p: *const ()) {
    // SAFETY: see `first_clone`.
    unsafe { &*p.cast::<FirstPoll>() }.wake();
}

unsafe fn first_drop(_: *const ()) {}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A future that is ready once `ready` is set and woken by whoever sets it, from
    /// another thread: the shape of every I/O future.
    #[derive(Default)]
    struct Flag {
        ready: AtomicBool,
        waker: Mutex<Option<Waker>>,
        polls: std::sync::atomic::AtomicUsize,
    }

    impl Flag {
        fn set(&self) {
            self.ready.store(true, SeqCst);
            if let Some(w) = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take() {
                w.wake();
            }
        }

        fn until_set(self: &Arc<Self>) -> impl Future<Output = u32> + use<> {
            let me = Arc::clone(self);
            std::future::poll_fn(move |cx| {
                me.polls.fetch_add(1, SeqCst);
                *me.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
                if me.ready.load(SeqCst) { Poll::Ready(7) } else { Poll::Pending }
            })
        }
    }

    #[test]
    fn a_coroutine_waits_without_holding_its_worker() {
        let rt = crate::Runtime::builder().workers(1).build().unwrap_or_else(|e| panic!("{e}"));
        let flag = Arc::new(Flag::default());
        let f2 = Arc::clone(&flag);
        let waiter = rt.spawn(move || wait(f2.until_set()));
        // One worker: if the waiter blocked it, this coroutine could never run.
        let other = rt.spawn(|| 5);
        assert_eq!(other.join().ok(), Some(5));
        let h = rt.handle();
        let id = waiter.id();
        while !h.coroutines().iter().any(|c| c.id == id && c.wait == Some(crate::inspect::WaitOn::Future)) {
            std::thread::yield_now();
        }
        flag.set();
        assert_eq!(waiter.join().ok(), Some(Ok(7)));
        assert!(
            flag.polls.load(SeqCst) <= 3,
            "polled {} times: a wake means one poll",
            flag.polls.load(SeqCst)
        );
    }

    #[test]
    fn the_first_polls_waker_woken_in_place_or_kept_past_the_poll() {
        // Woken by reference during the first poll, never cloned: polled again at once.
        let mut polls = 0;
        let r = wait(std::future::poll_fn(|cx| {
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(polls)
            }
        }));
        assert_eq!(r, Ok(2));
        // Cloned during the first poll and woken from another thread after it: the clone
        // is the heap waker, and it wakes the waiter.
        let r = crate::run(|| {
            let mut sent = false;
            wait(std::future::poll_fn(move |cx| {
                if sent {
                    return Poll::Ready("woken");
                }
                sent = true;
                let w = cx.waker().clone();
                let also = w.clone();
                assert!(w.will_wake(&also), "every clone is the same heap waker");
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(5));
                    w.wake();
                    drop(also);
                });
                Poll::Pending
            }))
        });
        assert_eq!(r, Ok("woken"));
    }

    #[test]
    fn outside_a_coroutine_it_blocks_the_thread() {
        let flag = Arc::new(Flag::default());
        let f2 = Arc::clone(&flag);
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            f2.set();
        });
        assert_eq!(wait(flag.until_set()), Ok(7));
        assert!(setter.join().is_ok());
    }

    #[test]
    fn a_timeout_or_a_token_drops_the_future() {
        struct Dropped(Arc<AtomicBool>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.store(true, SeqCst);
            }
        }
        let dropped = Arc::new(AtomicBool::new(false));
        let d2 = Arc::clone(&dropped);
        let r = crate::run(move || {
            let guard = Dropped(d2);
            wait_timeout(
                async move {
                    let _g = guard;
                    std::future::pending::<()>().await
                },
                Duration::from_millis(20),
            )
        });
        assert_eq!(r, Err(WaitError::Timeout));
        assert!(dropped.load(SeqCst), "the future is dropped when the wait gives up");

        let token = CancelToken::new();
        let t2 = token.clone();
        let r = crate::run(move || {
            let waiting = crate::spawn(move || wait_cancellable(std::future::pending::<()>(), &t2));
            crate::sleep(Duration::from_millis(5));
            token.cancel();
            waiting.join()
        });
        assert_eq!(r.ok(), Some(Err(WaitError::Cancelled)));
    }

    #[test]
    fn the_ambient_token_of_a_scope_cancels_a_wait() {
        let seen = Arc::new(Mutex::new(None));
        let s2 = Arc::clone(&seen);
        crate::run(move || {
            let _ = crate::scope(|s| {
                s.spawn(move || {
                    *s2.lock().unwrap_or_else(|p| p.into_inner()) = Some(wait(std::future::pending::<()>()))
                });
                crate::sleep(Duration::from_millis(5));
                s.cancel();
            });
        });
        assert_eq!(*seen.lock().unwrap_or_else(|p| p.into_inner()), Some(Err(WaitError::Cancelled)));
    }
}
