//! Futures that need tokio (reqwest, hyper, tonic, sqlx, async-nats, redis …) awaited from
//! coroutines: [`wait`] polls the future on the calling coroutine inside a tokio
//! runtime's context, so its sockets and timers register with tokio's reactor, whose
//! threads wake the coroutine when they fire. No kcoro worker blocks; each wake is one
//! hop (tokio's reactor thread unparks the coroutine), and any number of waits share one
//! tokio runtime.
//!
//! The tokio runtime is [`set_handle`]'s, if the program has one, else one built on first
//! use with [`set_workers`] threads (default 1: it only runs the reactor, the timers and
//! whatever the futures `tokio::spawn`).
//!
//! ```
//! use std::time::Duration;
//!
//! let slept = kcoro::run(|| {
//!     let t0 = std::time::Instant::now();
//!     // A tokio timer, awaited from a coroutine. The `async` block makes the timer inside
//!     // tokio's context: `tokio::time::sleep(..)` called here directly would look for it.
//!     kcoro::compat::tokio::wait(async { tokio::time::sleep(Duration::from_millis(20)).await }).unwrap();
//!     t0.elapsed()
//! });
//! assert!(slept >= Duration::from_millis(20));
//! ```
//!
//! # Cost, and when a blocking client is the better choice
//! A wait costs a waker allocation, a tokio context enter per poll and one cross-thread
//! wake per readiness event (tokio's reactor thread to the coroutine's worker). For a
//! request that waits on the network this is noise; for many small operations on a fast
//! local service, a client written over `std::io` and run on [`kcoro::net`](crate::net)
//! sockets (which park the coroutine directly, no extra thread) is cheaper; see
//! docs/ASYNC.md.

use std::future::IntoFuture;
use std::pin::pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::sync::{CancelToken, WaitError};

static HANDLE: OnceLock<tokio::runtime::Handle> = OnceLock::new();
/// The runtime built here (it lives for the process: its thread, or a leaked multi-thread one).
static OWNED: OnceLock<Result<tokio::runtime::Handle, String>> = OnceLock::new();
static WORKERS: AtomicUsize = AtomicUsize::new(1);

std::thread_local! {
    /// Set on the threads of the runtime built here.
    static RUNTIME_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Polls of [`wait`] under way on this thread (they enter tokio's context too).
    static POLLING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// True on a thread of the tokio runtime [`wait`] uses (a task of it runs here): blocking
/// in a kcoro wait there could hold up the very tasks being waited for.
pub fn on_runtime_thread() -> bool {
    if RUNTIME_THREAD.with(std::cell::Cell::get) {
        return true;
    }
    // A handle of the program's: a tokio context that no `wait` of ours entered.
    HANDLE.get().is_some()
        && OWNED.get().is_none()
        && POLLING.with(std::cell::Cell::get) == 0
        && tokio::runtime::Handle::try_current().is_ok()
}

/// Why the tokio runtime could not be set or built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompatError {
    /// [`set_handle`] after a runtime was already chosen (set, or built by a first wait).
    #[error("the tokio runtime for kcoro::compat::tokio is already chosen")]
    AlreadyChosen,
    /// Building the runtime failed.
    #[error("cannot build the tokio runtime: {0}")]
    Build(String),
}

/// Uses the program's own tokio runtime for every later [`wait`]. Call before the first
/// one.
pub fn set_handle(handle: tokio::runtime::Handle) -> Result<(), CompatError> {
    if OWNED.get().is_some() {
        return Err(CompatError::AlreadyChosen);
    }
    HANDLE.set(handle).map_err(|_| CompatError::AlreadyChosen)
}

/// Threads of the tokio runtime built on first use (default 1). No effect once built.
pub fn set_workers(n: usize) {
    WORKERS.store(n.max(1), Relaxed);
}

/// One thread: a current-thread runtime driven by a thread of its own (tokio's cheapest
/// scheduler for the short tasks clients spawn); more: tokio's multi-thread runtime.
fn build() -> Result<tokio::runtime::Handle, String> {
    let workers = WORKERS.load(Relaxed);
    if workers > 1 {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("kcoro-tokio")
            .on_thread_start(|| RUNTIME_THREAD.with(|t| t.set(true)))
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let handle = rt.handle().clone();
        std::mem::forget(rt); // lives for the process, as the one-thread runtime does
        return Ok(handle);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let handle = rt.handle().clone();
    std::thread::Builder::new()
        .name("kcoro-tokio".into())
        .spawn(move || {
            RUNTIME_THREAD.with(|t| t.set(true));
            // Only the runtime's own block_on drives a current-thread runtime's reactor
            // and timers: this thread runs them, and every spawned task, for the process.
            rt.block_on(std::future::pending::<()>());
        })
        .map_err(|e| e.to_string())?;
    Ok(handle)
}

/// The tokio runtime [`wait`] uses: [`set_handle`]'s, or the one built on first use.
pub fn handle() -> Result<tokio::runtime::Handle, CompatError> {
    handle_ref().cloned()
}

/// [`handle`] without the clone (a reference count's increment and decrement per wait).
fn handle_ref() -> Result<&'static tokio::runtime::Handle, CompatError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h);
    }
    match OWNED.get_or_init(build) {
        Ok(h) => Ok(HANDLE.get().unwrap_or(h)),
        Err(e) => Err(CompatError::Build(e.clone())),
    }
}

/// Counts a poll of ours under way on this thread, also when it unwinds.
struct Polling;

impl Polling {
    fn enter() -> Polling {
        POLLING.with(|p| p.set(p.get() + 1));
        Polling
    }
}

impl Drop for Polling {
    fn drop(&mut self) {
        POLLING.with(|p| p.set(p.get().saturating_sub(1)));
    }
}

/// Why a [`wait`] ended without the future's output.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Timed out or cancelled; the future was dropped.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// No tokio runtime to run it in.
    #[error(transparent)]
    Runtime(#[from] CompatError),
}

/// Polls `fut` to completion on the calling coroutine (or thread) inside tokio's context,
/// parking in between. Only the polls run in that context: a tokio object built *before*
/// the call (as the argument `tokio::time::sleep(d)` is) finds none and panics, so write
/// `wait(async { tokio::time::sleep(d).await })`; an `async fn`'s future (`reqwest::get(url)`)
/// builds nothing until polled. Gives up with `Cancelled` when the caller's ambient token fires
/// (the future is dropped, inside tokio's context, which cancels it).
pub fn wait<F: IntoFuture>(fut: F) -> Result<F::Output, Error> {
    wait_with(fut, None, None)
}

/// [`wait`], giving up with [`WaitError::Timeout`] after `timeout`.
pub fn wait_timeout<F: IntoFuture>(fut: F, timeout: Duration) -> Result<F::Output, Error> {
    wait_with(fut, crate::sync::deadline_after(timeout), None)
}

/// [`wait`], giving up with [`WaitError::Cancelled`] when `token` is cancelled too.
pub fn wait_cancellable<F: IntoFuture>(fut: F, token: &CancelToken) -> Result<F::Output, Error> {
    wait_with(fut, None, Some(token))
}

/// [`wait`] with an optional deadline and token; see [`crate::future::wait_with`].
pub fn wait_with<F: IntoFuture>(
    fut: F,
    deadline: Option<Instant>,
    token: Option<&CancelToken>,
) -> Result<F::Output, Error> {
    let handle = handle_ref()?;
    // Entered once for building the future and its first poll, which is often its last (a
    // send with room): a ready future costs one enter, not three (each is a reference
    // count's round trip and a thread-local swap, a third of a publisher's time in
    // kcoro-nats profiles).
    let mut first_entry = Some(handle.enter());
    // Pinned here, in an `Option` so that it can be dropped in place early, inside
    // tokio's context (a tokio resource may need it to deregister), without a box.
    let mut fut = pin!(Some(fut.into_future()));
    let out = crate::future::drive(deadline, token, |cx| {
        // Entered around each poll only: a guard held across a park would outlive the
        // coroutine's turn on this thread.
        let _in_tokio = first_entry.take().unwrap_or_else(|| handle.enter());
        let _counted = Polling::enter();
        // Always `Some` here: emptied once ready (no poll follows) or after giving up.
        let polled = fut.as_mut().as_pin_mut().map_or(Poll::Pending, |f| f.poll(cx));
        if polled.is_ready() {
            fut.set(None);
        }
        polled
    });
    if fut.as_ref().as_pin_ref().is_some() {
        // Given up (deadline, token): dropped inside tokio's context too.
        let _in_tokio = handle.enter();
        fut.set(None);
    }
    Ok(out?)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn tokio_timers_and_sockets_work_from_coroutines_on_one_worker() {
        let rt = crate::Runtime::builder().workers(1).build().unwrap_or_else(|e| panic!("{e}"));
        let got = rt.block_on(|| {
            // A tokio TCP echo round trip, both ends awaited from coroutines.
            let listener = match wait(tokio::net::TcpListener::bind("127.0.0.1:0")) {
                Ok(Ok(l)) => l,
                other => panic!("bind: {other:?}"),
            };
            let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
            let server = crate::spawn(move || {
                wait(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let (mut s, _) = listener.accept().await?;
                    let mut buf = [0u8; 5];
                    s.read_exact(&mut buf).await?;
                    s.write_all(&buf).await?;
                    std::io::Result::Ok(())
                })
            });
            let sleeper =
                crate::spawn(|| wait(async { tokio::time::sleep(Duration::from_millis(10)).await }));
            let echoed = wait(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut c = tokio::net::TcpStream::connect(addr).await?;
                c.write_all(b"hello").await?;
                let mut back = [0u8; 5];
                c.read_exact(&mut back).await?;
                std::io::Result::Ok(back)
            });
            assert!(matches!(server.join(), Ok(Ok(Ok(())))));
            assert!(matches!(sleeper.join(), Ok(Ok(()))));
            echoed
        });
        assert_eq!(got.ok().and_then(Result::ok), Some(*b"hello"));
    }

    #[test]
    fn a_timeout_drops_a_tokio_future() {
        let r = crate::run(|| {
            wait_timeout(
                async { tokio::time::sleep(Duration::from_secs(60)).await },
                Duration::from_millis(10),
            )
        });
        assert_eq!(r, Err(Error::Wait(WaitError::Timeout)));
    }
}
