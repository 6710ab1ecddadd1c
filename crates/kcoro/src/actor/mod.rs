//! Actors: a coroutine that owns its state and handles messages from a channel mailbox,
//! one at a time, with a restart policy for failures.
//!
//! ```
//! use kcoro::actor::{self, Actor, ActorOpts, Flow, Reply};
//!
//! #[derive(Default)]
//! struct Counter(u64);
//!
//! enum Msg {
//!     Add(u64),
//!     Get(Reply<u64>),
//! }
//!
//! impl Actor for Counter {
//!     type Msg = Msg;
//!     fn handle(&mut self, msg: Msg) -> Flow {
//!         match msg {
//!             Msg::Add(n) => self.0 += n,
//!             Msg::Get(reply) => reply.send(self.0),
//!         }
//!         Flow::Continue
//!     }
//! }
//!
//! kcoro::run(|| {
//!     let counter = actor::spawn(Counter::default(), ActorOpts::mailbox(1024));
//!     counter.tell(Msg::Add(3)).unwrap();
//!     let n = counter.ask(Msg::Get).unwrap();
//!     assert_eq!(n, 3);
//!     counter.stop(); // handles what is queued, then stops
//!     counter.join().unwrap();
//! });
//! ```
//!
//! - **Mailbox**: any channel kind ([`ActorOpts`]); the actor parks on it, and senders
//!   park when a bounded mailbox is full. Messages from one sender arrive in order.
//! - **Handler**: returns [`Flow::Continue`], [`Flow::Stop`] or [`Flow::Fail`]. A failure
//!   or a panic applies the [`Restart`] policy.
//! - **Stopping**: [`ActorRef::stop`] closes the mailbox: queued messages are handled,
//!   then the actor stops. [`ActorRef::cancel`] stops it now: queued messages are passed
//!   to [`ActorOpts::on_undelivered`], and its blocking operations return `Canceled`.
//!   Dropping every `ActorRef` is a `stop`.

mod reply;
mod run;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use reply::Reply;

use crate::chan::{self, ChanError, Kind, Receiver, SendError, Sender};
use crate::park::Signal;
use crate::runtime::Handle;
use crate::scope::{BoxError, Scope};
use crate::sync::{self, CancelToken};

/// An actor's behaviour: its state is `self`, its messages `Msg`.
pub trait Actor: Send + 'static {
    /// The messages the actor handles.
    type Msg: Send + 'static;

    /// Handles one message.
    fn handle(&mut self, msg: Self::Msg) -> Flow;

    /// Called before handling resumes after a failure under [`Restart::Restart`], for an
    /// actor started with [`spawn`] (whose state is kept). The default keeps the state as
    /// it is; [`spawn_with`] rebuilds the state instead.
    fn on_restart(&mut self, _failure: &ActorError) {}
}

/// What the actor does after a message.
#[derive(Debug)]
pub enum Flow {
    /// Handle the next message.
    Continue,
    /// Stop now; queued messages are reported undelivered.
    Stop,
    /// The message failed: apply the restart policy.
    Fail(BoxError),
}

impl Flow {
    /// A failure from any error.
    pub fn fail(error: impl Into<BoxError>) -> Flow {
        Flow::Fail(error.into())
    }
}

impl<E: Into<BoxError>> From<Result<(), E>> for Flow {
    fn from(r: Result<(), E>) -> Flow {
        match r {
            Ok(()) => Flow::Continue,
            Err(e) => Flow::Fail(e.into()),
        }
    }
}

/// What happens when the handler fails or panics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Restart {
    /// The actor stops with the failure (the default).
    #[default]
    Stop,
    /// Handling resumes with the next message, at most `max` times in any window of
    /// `within`; one more failure in the window stops the actor with it.
    Restart {
        /// Restarts allowed per window.
        max: u32,
        /// The window.
        within: Duration,
    },
    /// The actor stops and fails its owning scope ([`Scope::actor`]); an actor without
    /// one stops as with [`Restart::Stop`].
    Escalate,
}

/// How an actor ended badly. Cloneable: every `join` sees it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ActorError {
    /// The handler returned [`Flow::Fail`] and the policy stopped the actor.
    #[error("actor failed: {0}")]
    Failed(Arc<dyn std::error::Error + Send + Sync + 'static>),
    /// The handler panicked and the policy stopped the actor.
    #[error("actor panicked: {0}")]
    Panicked(String),
    /// [`ActorRef::cancel`] (or its owner's token) stopped the actor.
    #[error("actor was cancelled")]
    Cancelled,
    /// The actor's coroutine could not be spawned.
    #[error("actor could not be spawned: {0}")]
    Spawn(String),
}

/// Why an `ask` got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// The mailbox is closed: the actor stopped.
    #[error("the actor's mailbox is closed")]
    Closed,
    /// The actor dropped the reply unanswered (it failed, stopped or chose not to).
    #[error("the actor dropped the reply")]
    NoReply,
    /// No answer within the ask timeout.
    #[error("no answer in time")]
    Timeout,
    /// The caller's ambient token was cancelled.
    #[error("ask cancelled")]
    Canceled,
}

impl AskError {
    /// The kcoro code.
    pub fn code(&self) -> i32 {
        match self {
            AskError::Closed | AskError::NoReply => crate::code::CLOSED,
            AskError::Timeout => crate::code::TIMEOUT,
            AskError::Canceled => crate::code::CANCELED,
        }
    }
}

type OnDone = Box<dyn FnOnce(&Result<(), ActorError>) + Send>;

/// How to run an actor: mailbox kind, restart policy, ask timeout, callbacks.
pub struct ActorOpts<M> {
    mailbox: chan::Builder<M>,
    restart: Restart,
    ask_timeout: Option<Duration>,
    name: Option<String>,
    on_done: Option<OnDone>,
}

impl<M: Send + 'static> ActorOpts<M> {
    /// A mailbox built from `chan` (a [`Kind`] or a channel [`Builder`](chan::Builder)).
    pub fn new(chan: impl Into<chan::Builder<M>>) -> Self {
        ActorOpts {
            mailbox: chan.into(),
            restart: Restart::Stop,
            ask_timeout: None,
            name: None,
            on_done: None,
        }
    }

    /// A bounded mailbox of `capacity` messages: senders park when it is full.
    pub fn mailbox(capacity: usize) -> Self {
        Self::new(chan::Builder::buffered(capacity))
    }

    /// A mailbox that never makes a sender wait.
    pub fn unlimited() -> Self {
        Self::new(Kind::Unlimited)
    }

    /// The restart policy (default [`Restart::Stop`]).
    pub fn restart(mut self, policy: Restart) -> Self {
        self.restart = policy;
        self
    }

    /// How long [`ActorRef::ask`] waits (default: forever, or until cancelled).
    pub fn ask_timeout(mut self, timeout: Duration) -> Self {
        self.ask_timeout = Some(timeout);
        self
    }

    /// A name for the coroutine and the mailbox (listed in the channel registry).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.mailbox = self.mailbox.name(format!("actor:{name}"));
        self.name = Some(name);
        self
    }

    /// Called once, on the actor's coroutine, when it ends, with how it ended.
    pub fn on_done(mut self, f: impl FnOnce(&Result<(), ActorError>) + Send + 'static) -> Self {
        self.on_done = Some(Box::new(f));
        self
    }

    /// Receives each message that was accepted but never handled (cancel, stop by
    /// [`Flow::Stop`] or failure), exactly once.
    pub fn on_undelivered(mut self, f: impl Fn(M) + Send + Sync + 'static) -> Self {
        self.mailbox = self.mailbox.on_undelivered(f);
        self
    }
}

impl<M> std::fmt::Debug for ActorOpts<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorOpts")
            .field("mailbox", &self.mailbox)
            .field("restart", &self.restart)
            .field("ask_timeout", &self.ask_timeout)
            .finish_non_exhaustive()
    }
}

/// What an actor's handles share with it.
struct Shared {
    token: CancelToken,
    ask_timeout: Option<Duration>,
    done: Signal,
    exit: Mutex<Option<Result<(), ActorError>>>,
}

/// A handle to a running actor: send it messages, ask it questions, stop it, join it.
/// Cloneable; when the last handle is dropped the mailbox closes and the actor stops
/// after handling what is queued.
pub struct ActorRef<M> {
    tx: Sender<M>,
    shared: Arc<Shared>,
}

impl<M> Clone for ActorRef<M> {
    fn clone(&self) -> Self {
        ActorRef { tx: self.tx.clone(), shared: Arc::clone(&self.shared) }
    }
}

impl<M: Send + 'static> ActorRef<M> {
    /// Sends a message, parking while a bounded mailbox is full. Fails with the message
    /// back once the actor has stopped.
    pub fn tell(&self, msg: M) -> Result<(), SendError<M>> {
        self.tx.send(msg)
    }

    /// Sends without waiting (`WouldBlock` when the mailbox is full).
    pub fn try_tell(&self, msg: M) -> Result<(), SendError<M>> {
        self.tx.try_send(msg)
    }

    /// Sends, waiting at most `timeout` for mailbox room.
    pub fn tell_timeout(&self, msg: M, timeout: Duration) -> Result<(), SendError<M>> {
        self.tx.send_timeout(msg, timeout)
    }

    /// Request/response: builds the message around a [`Reply`] with `make`, sends it and
    /// waits for the answer, within the actor's ask timeout (see
    /// [`ActorOpts::ask_timeout`]). The caller's ambient token cancels the wait.
    pub fn ask<R>(&self, make: impl FnOnce(Reply<R>) -> M) -> Result<R, AskError> {
        let deadline = self.shared.ask_timeout.and_then(|t| crate::now().checked_add(t));
        self.ask_until(deadline, make)
    }

    /// [`ask`](Self::ask) with its own timeout.
    pub fn ask_timeout<R>(&self, timeout: Duration, make: impl FnOnce(Reply<R>) -> M) -> Result<R, AskError> {
        self.ask_until(crate::now().checked_add(timeout), make)
    }

    fn ask_until<R>(
        &self,
        deadline: Option<Instant>,
        make: impl FnOnce(Reply<R>) -> M,
    ) -> Result<R, AskError> {
        let (reply, pending) = reply::pair();
        let sent = match deadline {
            Some(d) => self.tx.send_deadline(make(reply), d),
            None => self.tx.send(make(reply)),
        };
        if let Err(e) = sent {
            return Err(match e.kind() {
                ChanError::Timeout | ChanError::WouldBlock => AskError::Timeout,
                ChanError::Canceled => AskError::Canceled,
                ChanError::Closed => AskError::Closed,
            });
        }
        pending.wait(deadline)
    }

    /// Closes the mailbox: the actor handles what is queued, then stops. Later `tell`s
    /// fail.
    pub fn stop(&self) {
        self.tx.close();
    }

    /// Stops the actor now: cancels its token (its blocking operations return
    /// `Canceled`) and reports queued messages undelivered.
    pub fn cancel(&self) {
        self.shared.token.cancel();
    }

    /// Waits for the actor to end. `Ok` if it stopped (by `stop`, [`Flow::Stop`] or the
    /// last handle's drop); every joiner sees the same result.
    pub fn join(&self) -> Result<(), ActorError> {
        self.shared.done.wait();
        self.exit()
    }

    /// [`join`](Self::join) with a time limit; `None` if the actor is still running.
    pub fn join_timeout(&self, timeout: Duration) -> Option<Result<(), ActorError>> {
        let deadline = crate::now().checked_add(timeout)?;
        self.shared.done.wait_deadline(deadline).then(|| self.exit())
    }

    fn exit(&self) -> Result<(), ActorError> {
        let exit = self.shared.exit.lock().unwrap_or_else(|p| p.into_inner());
        exit.clone().unwrap_or(Err(ActorError::Cancelled))
    }

    /// True once the actor has ended.
    pub fn is_finished(&self) -> bool {
        self.shared.done.is_notified()
    }

    /// Messages waiting in the mailbox.
    pub fn queued(&self) -> usize {
        self.tx.len()
    }
}

impl<M> std::fmt::Debug for ActorRef<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorRef").field("finished", &self.shared.done.is_notified()).finish()
    }
}

/// How the actor's state is kept across a restart.
enum Source<A> {
    /// Kept; `on_restart` is called.
    Keep(A),
    /// Rebuilt by the factory.
    Factory(Box<dyn FnMut() -> A + Send>),
}

/// Starts an actor with `state` on the current runtime, detached (see [`Scope::actor`]
/// for one owned by a scope). Under [`Restart::Restart`] the state is kept and
/// [`Actor::on_restart`] is called.
///
/// # Panics
/// Outside a kcoro runtime.
pub fn spawn<A: Actor>(state: A, opts: ActorOpts<A::Msg>) -> ActorRef<A::Msg> {
    start(Source::Keep(state), opts, None)
}

/// Starts an actor whose state `factory` builds, and rebuilds after each restart.
///
/// # Panics
/// Outside a kcoro runtime.
pub fn spawn_with<A: Actor>(
    factory: impl FnMut() -> A + Send + 'static,
    opts: ActorOpts<A::Msg>,
) -> ActorRef<A::Msg> {
    start(Source::Factory(Box::new(factory)), opts, None)
}

fn start<A: Actor>(
    source: Source<A>,
    opts: ActorOpts<A::Msg>,
    scope_token: Option<CancelToken>,
) -> ActorRef<A::Msg> {
    let (actor_ref, job) = prepare(source, opts, scope_token);
    let handle =
        Handle::try_current().unwrap_or_else(|| panic!("kcoro::actor::spawn called outside a kcoro runtime"));
    let spawn_opts = job.spawn_options();
    if let Err(e) = handle.spawn_detached(spawn_opts, move || drop(job.run())) {
        // The job (and the mailbox receiver in it) is gone: tells fail with `Closed`.
        let shared = &actor_ref.shared;
        *shared.exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(Err(ActorError::Spawn(e.to_string())));
        shared.done.notify();
    }
    actor_ref
}

fn prepare<A: Actor>(
    source: Source<A>,
    opts: ActorOpts<A::Msg>,
    parent: Option<CancelToken>,
) -> (ActorRef<A::Msg>, run::Job<A>) {
    let parent = parent.or_else(sync::current_token);
    let token = parent.map_or_else(CancelToken::new, |p| p.child());
    let (tx, rx): (Sender<A::Msg>, Receiver<A::Msg>) = opts.mailbox.build();
    let shared = Arc::new(Shared {
        token,
        ask_timeout: opts.ask_timeout,
        done: Signal::new(),
        exit: Mutex::new(None),
    });
    let job = run::Job {
        source: Some(source),
        rx,
        restart: opts.restart,
        shared: Arc::clone(&shared),
        on_done: opts.on_done,
        name: opts.name,
    };
    (ActorRef { tx, shared }, job)
}

impl<'scope, 'env> Scope<'scope, 'env> {
    /// Starts an actor owned by this scope: it runs under the scope's token, the scope
    /// waits for it to end (stop it, or drop every handle, before the body returns), and
    /// under [`Restart::Escalate`] its failure fails the scope.
    pub fn actor<A: Actor>(&'scope self, state: A, opts: ActorOpts<A::Msg>) -> ActorRef<A::Msg> {
        let (actor_ref, job) = prepare(Source::Keep(state), opts, Some(self.token().clone()));
        let escalate = job.restart == Restart::Escalate;
        let spawn_opts = job.spawn_options();
        let token = actor_ref.shared.token.clone();
        drop(self.spawn_under(token, spawn_opts, move || {
            let exit = job.run();
            match exit {
                Err(e @ (ActorError::Failed(_) | ActorError::Panicked(_))) if escalate => Err(e),
                _ => Ok(()),
            }
        }));
        actor_ref
    }
}
