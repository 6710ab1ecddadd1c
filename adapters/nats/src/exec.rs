//! The bridge's executor: the tokio runtime of kcoro's async bridge
//! (`kcoro::compat::tokio`, one thread unless the program chose its own runtime), where the
//! NATS client and every task that talks to it live.
//!
//! # Protocol
//! 1. *Submit*: a caller (coroutine, thread or task) spawns its future as a tokio task
//!    straight onto that runtime (one wake of its thread, no queue of our own).
//! 2. *Reply*: a [`Exec::call`] future ends by sending its result on a one-slot kcoro
//!    channel the caller waits on with `recv_with`, so a coroutine parks (its worker runs
//!    other coroutines) and a thread blocks; nothing spins.
//! 3. *Abandon*: a caller that gives up (deadline, cancel token) drops its end of the
//!    reply channel; long-running jobs see [`Reply::is_abandoned`] and stop retrying.
//! 4. *Shut down*: the runtime outlives every connection; a connection's owner drains
//!    what its tasks hold before it goes (see `Shared`'s `Drop`), so acks already handed
//!    over reach the server.

use std::future::Future;
use std::time::Instant;

use kcoro::chan::ChanError;
use kcoro::sync::{CancelToken, WaitError, oneshot};

use crate::NatsError;

/// When a caller stops waiting: a deadline, a cancel token, both or neither.
#[derive(Clone, Copy, Default)]
pub(crate) struct Wait<'a> {
    pub(crate) deadline: Option<Instant>,
    pub(crate) token: Option<&'a CancelToken>,
}

impl<'a> Wait<'a> {
    pub(crate) const FOREVER: Wait<'static> = Wait { deadline: None, token: None };

    pub(crate) fn new(deadline: Option<Instant>, token: Option<&'a CancelToken>) -> Self {
        Wait { deadline, token }
    }

    pub(crate) fn timeout(d: std::time::Duration) -> Wait<'static> {
        Wait { deadline: Instant::now().checked_add(d), token: None }
    }
}

/// The sending half of a call's reply.
pub(crate) struct Reply<R> {
    tx: oneshot::Sender<R>,
}

impl<R> Reply<R> {
    /// Hands the result to the caller; a caller that left is not an error.
    pub(crate) fn send(self, value: R) {
        let _ = self.tx.send(value);
    }
}

/// A reply slot and the caller's end of it.
pub(crate) fn reply_pair<R>() -> (Reply<R>, oneshot::Receiver<R>) {
    let (tx, rx) = oneshot::channel();
    (Reply { tx }, rx)
}

/// Polls `fut` on the caller (a coroutine parks, a thread blocks) *outside* tokio's
/// context, as `wait` allows; timing out or being cancelled drops it. For futures that
/// need no runtime, only wakers: the client's channels (a publish's hand-off, a
/// subscription's next message), where entering the context cost more than the operation.
///
/// The first poll uses a no-op waker: these futures are mostly ready at once (a queue
/// with room, a message waiting), and then nothing of a wait is set up (the caller's
/// unparker, the waker kcoro's wait builds: an eighth of a fan-out publisher's time). A
/// future still pending is polled again, by the wait, with a waker that works.
pub(crate) fn wait_plain<F: Future>(wait: Wait<'_>, fut: F) -> Result<F::Output, NatsError> {
    let mut fut = std::pin::pin!(fut);
    if let Some(out) = poll_once(fut.as_mut()) {
        return Ok(out);
    }
    kcoro::future::wait_with(fut, wait.deadline, wait.token).map_err(wait_error)
}

/// Polls `fut` once, outside tokio's context (see [`wait_plain`]): its output if that poll
/// finishes it, else `None` (the future is dropped, which cancels it). For the `try_`
/// operations, which never wait.
pub(crate) fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

fn wait_error(e: WaitError) -> NatsError {
    match e {
        WaitError::Timeout => NatsError::Chan(ChanError::Timeout),
        WaitError::Cancelled => NatsError::Chan(ChanError::Canceled),
    }
}

/// A handle on the executor; cheap to clone.
#[derive(Clone)]
pub(crate) struct Exec {
    runtime: tokio::runtime::Handle,
}

impl Exec {
    /// The bridge's runtime (built on first use).
    pub(crate) fn start() -> Result<Exec, NatsError> {
        let runtime = kcoro::compat::tokio::handle().map_err(|e| NatsError::nats("start the executor", e))?;
        Ok(Exec { runtime })
    }

    /// True on one of the executor's threads (where waiting for a job could wait forever).
    pub(crate) fn is_current_thread(&self) -> bool {
        kcoro::compat::tokio::on_runtime_thread()
    }

    /// Runs `fut` on the executor without waiting for it.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) -> Result<(), NatsError> {
        drop(self.runtime.spawn(fut));
        Ok(())
    }

    /// Runs the future that `make` builds on the executor and waits for its result, as
    /// `wait` allows. `make` gets the [`Reply`] to answer through. The job runs on when
    /// the caller stops waiting: a job that must not outlive its caller (one that retries)
    /// belongs in [`here`](Self::here).
    pub(crate) fn call_with<R, F>(
        &self,
        wait: Wait<'_>,
        make: impl FnOnce(Reply<R>) -> F,
    ) -> Result<R, NatsError>
    where
        R: Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let (reply, mut rx) = reply_pair();
        self.spawn(make(reply))?;
        match rx.recv_with(wait.deadline, wait.token) {
            Ok(r) => Ok(r),
            // The job was dropped unanswered: only a runtime shutting down does that.
            Err(ChanError::Closed) => Err(NatsError::Shutdown),
            Err(e) => Err(NatsError::Chan(e)),
        }
    }

    /// Polls `fut` on the caller (a coroutine parks, a thread blocks) inside the
    /// executor's tokio context, as `wait` allows; timing out or being cancelled drops it.
    /// No task and no reply channel: a publish's hand-off to the client and its ack come
    /// straight to the caller, the way a tokio task would await them. Not from the
    /// executor's own thread, whose waiting would stop what it waits for.
    pub(crate) fn here<F: Future>(&self, wait: Wait<'_>, fut: F) -> Result<F::Output, NatsError> {
        kcoro::compat::tokio::wait_with(fut, wait.deadline, wait.token).map_err(|e| match e {
            kcoro::compat::tokio::Error::Wait(e) => wait_error(e),
            kcoro::compat::tokio::Error::Runtime(e) => NatsError::nats("start the executor", e),
        })
    }

    /// Drops `value` inside the executor's tokio context: some of the client's objects
    /// (a subscription) spawn a task when dropped, which needs that context.
    pub(crate) fn drop_here<T>(&self, value: T) {
        let _in_tokio = self.runtime.enter();
        drop(value);
    }

    /// Runs `fut` on the executor and waits for its result (see [`Exec::call_with`]).
    pub(crate) fn call<R>(
        &self,
        wait: Wait<'_>,
        fut: impl Future<Output = R> + Send + 'static,
    ) -> Result<R, NatsError>
    where
        R: Send + 'static,
    {
        self.call_with(wait, |reply| async move { reply.send(fut.await) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kcoro::chan;
    use std::time::Duration;

    #[test]
    fn call_runs_on_the_executor_thread() {
        let exec = Exec::start().unwrap();
        let here = std::thread::current().id();
        let there = exec.call(Wait::FOREVER, async { std::thread::current().id() }).unwrap();
        assert_ne!(here, there);
    }

    #[test]
    fn call_from_a_coroutine_parks_and_returns() {
        let exec = Exec::start().unwrap();
        let got = kcoro::run(move || {
            let handles: Vec<_> = (0..8u64)
                .map(|i| {
                    let exec = exec.clone();
                    kcoro::spawn(move || {
                        exec.call(Wait::FOREVER, async move {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            i
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).sum::<u64>()
        });
        assert_eq!(got, 28);
    }

    #[test]
    fn an_abandoned_call_times_out_and_its_late_reply_goes_nowhere() {
        let exec = Exec::start().unwrap();
        let (done_tx, done_rx) = chan::buffered::<()>(1);
        let r: Result<(), _> =
            exec.call_with(Wait::timeout(Duration::from_millis(20)), move |reply| async move {
                tokio::time::sleep(Duration::from_millis(60)).await;
                reply.send(());
                let _ = done_tx.try_send(());
            });
        assert!(matches!(r, Err(NatsError::Chan(ChanError::Timeout))));
        assert_eq!(done_rx.recv(), Ok(()), "the job ran to its end");
    }

    #[test]
    fn here_drops_the_future_when_the_caller_stops_waiting() {
        let exec = Exec::start().unwrap();
        let (polls_tx, polls_rx) = chan::unlimited::<()>();
        let r = exec.here(Wait::timeout(Duration::from_millis(20)), async move {
            loop {
                let _ = polls_tx.try_send(());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        assert!(matches!(r, Err(NatsError::Chan(ChanError::Timeout))));
        // The sender went with the future: nothing more arrives, and the count is final.
        let polled = std::iter::from_fn(|| polls_rx.recv().ok()).count();
        assert!(polled >= 1);
        assert_eq!(polls_rx.try_recv(), Err(ChanError::Closed));
    }
}
