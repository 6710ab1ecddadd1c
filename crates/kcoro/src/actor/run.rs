//! The actor's loop: receive, handle, apply the restart policy, and report how it ended.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};

use super::{Actor, ActorError, Flow, OnDone, Restart, Shared, Source};
use crate::chan::{ChanError, Receiver};
use crate::error::panic_message;
use crate::runtime::{ActorCounters, Handle, SpawnOptions};
use crate::scope::child_is_shutting_down;

pub(crate) struct Job<A: Actor> {
    pub(super) source: Option<Source<A>>,
    pub(super) rx: Receiver<A::Msg>,
    pub(super) restart: Restart,
    pub(super) shared: Arc<Shared>,
    pub(super) on_done: Option<OnDone>,
    pub(super) name: Option<String>,
}

/// Keeps the live-actor gauge right on every exit, unwinding included.
struct Live(Option<Arc<ActorCounters>>);

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(c) = &self.0 {
            c.live.fetch_sub(1, Relaxed);
        }
    }
}

impl<A: Actor> Job<A> {
    pub(crate) fn spawn_options(&self) -> SpawnOptions {
        let opts = SpawnOptions::new().cancel_token(self.shared.token.clone());
        match &self.name {
            Some(n) => opts.name(format!("actor:{n}")),
            None => opts,
        }
    }

    /// Runs the actor to its end on the calling coroutine; returns how it ended (also
    /// stored for joiners and passed to `on_done`).
    pub(crate) fn run(mut self) -> Result<(), ActorError> {
        let counters = Handle::try_current().map(|h| h.actor_counters());
        if let Some(c) = &counters {
            c.spawned.fetch_add(1, Relaxed);
            c.live.fetch_add(1, Relaxed);
        }
        let live = Live(counters.clone());
        let exit = self.handle_messages(counters.as_deref());
        // Whatever is still queued is undelivered; later tells fail.
        self.rx.cancel();
        // No longer live before anyone is told (on_done, joiners), so stats read after a
        // join or in on_done are exact; the guard covers the unwinding exits.
        drop(live);
        if let Some(f) = self.on_done.take()
            && catch_unwind(AssertUnwindSafe(|| f(&exit))).is_err()
        {
            eprintln!("kcoro: an actor's on_done callback panicked; ignored");
        }
        *self.shared.exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(exit.clone());
        self.shared.done.notify();
        exit
    }

    fn handle_messages(&mut self, counters: Option<&ActorCounters>) -> Result<(), ActorError> {
        let Some(source) = self.source.take() else { return Ok(()) };
        let (mut state, mut factory) = match source {
            Source::Keep(a) => (a, None),
            Source::Factory(mut f) => match catch_unwind(AssertUnwindSafe(&mut f)) {
                Ok(a) => (a, Some(f)),
                Err(p) => return Err(ActorError::Panicked(panic_message(&*p).to_owned())),
            },
        };
        let mut restarts: VecDeque<Instant> = VecDeque::new();
        let token = self.shared.token.clone();
        loop {
            // Checked per message, not only when parking: a cancel stops a busy actor too.
            if token.is_cancelled() {
                return Err(ActorError::Cancelled);
            }
            let msg = match self.rx.recv() {
                Ok(m) => m,
                Err(ChanError::Closed) => return Ok(()),
                Err(_) => return Err(ActorError::Cancelled),
            };
            let failure = match catch_unwind(AssertUnwindSafe(|| state.handle(msg))) {
                Ok(Flow::Continue) => continue,
                Ok(Flow::Stop) => return Ok(()),
                Ok(Flow::Fail(e)) => ActorError::Failed(Arc::from(e)),
                Err(p) => {
                    if child_is_shutting_down() {
                        resume_unwind(p); // runtime shutdown is unwinding us
                    }
                    ActorError::Panicked(panic_message(&*p).to_owned())
                }
            };
            if token.is_cancelled() {
                return Err(ActorError::Cancelled); // the failure is the cancel's fallout
            }
            let Restart::Restart { max, within } = self.restart else { return Err(failure) };
            if !may_restart(&mut restarts, max, within) {
                return Err(failure);
            }
            if let Some(c) = counters {
                c.restarts.fetch_add(1, Relaxed);
            }
            let restarted = catch_unwind(AssertUnwindSafe(|| match factory.as_mut() {
                Some(f) => state = f(),
                None => state.on_restart(&failure),
            }));
            if let Err(p) = restarted {
                return Err(ActorError::Panicked(panic_message(&*p).to_owned()));
            }
        }
    }
}

/// Sliding window: at most `max` restarts in any `within`.
fn may_restart(restarts: &mut VecDeque<Instant>, max: u32, within: Duration) -> bool {
    let now = crate::now();
    while restarts.front().is_some_and(|&t| now.saturating_duration_since(t) >= within) {
        restarts.pop_front();
    }
    if restarts.len() >= max as usize {
        return false;
    }
    restarts.push_back(now);
    true
}
