//! [`SpawnOptions`]: one spawn's stack, name, token and placement, and where a default
//! placement starts a coroutine that its spawner's accept loop made (spread).

use super::context;
use crate::sync::CancelToken;

/// Options for one spawn.
#[derive(Debug, Clone, Default)]
pub struct SpawnOptions {
    pub(super) stack_size: Option<usize>,
    pub(super) name: Option<String>,
    pub(super) token: Option<CancelToken>,
    pub(super) placement: Placement,
    pub(super) daemon: bool,
}

/// Where a spawned coroutine starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Placement {
    /// The spawner's worker (stealable until it starts), or the inject queue off the workers.
    #[default]
    Spawner,
    /// The workers in turn ([`SpawnOptions::spread`]).
    Spread,
    /// One worker, modulo the count ([`SpawnOptions::on_worker`]).
    Worker(usize),
}

impl SpawnOptions {
    /// Default options: the runtime's stack size, no name.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stack size in bytes for this coroutine (rounded up to pages, at least 16 KiB).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.stack_size = Some(bytes);
        self
    }

    /// A name, shown in overflow reports and debug output.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Runs the coroutine under `token`: its blocking operations (channels, the
    /// synchronisation primitives, [`delay`](crate::delay)) give up with `Canceled` once
    /// the token is cancelled, without being handed the token. See
    /// [`sync::current_token`](crate::sync::current_token).
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.token = Some(token);
        self
    }

    /// Starts the coroutine on the runtime's workers in turn rather than on the
    /// spawner's. Coroutines stay on the worker they start on, so a server's accept loop
    /// that spawns one coroutine per connection would keep every connection on its own
    /// worker; so the first spawn after a `kcoro::net` accept (`TcpListener::accept`,
    /// `UnixListener::accept`, `accept_timeout`) is spread without being asked, and
    /// `spread` is for the other cases (connections handed over through a channel, work
    /// items). Each spread spawn costs a hand-off to another worker (and its wake-up if it
    /// sleeps), so keep the default for short-lived helpers that the spawner waits for.
    pub fn spread(mut self) -> Self {
        self.placement = Placement::Spread;
        self
    }

    /// Marks the coroutine as a daemon: one that serves the program from the side (a
    /// monitoring endpoint's accept loop) and so is left out of deadlock detection
    /// ([`Handle::deadlock`](super::Handle::deadlock)): the program is deadlocked when everything else is stuck,
    /// however many daemons still wait for connections.
    pub fn daemon(mut self) -> Self {
        self.daemon = true;
        self
    }

    /// Starts the coroutine on worker `index` (modulo the number of workers; see
    /// [`worker_index`](super::worker_index)), where it stays. Coroutines that exchange messages all the time
    /// are cheapest on one worker: a hand-off between them is a local wake, and what one
    /// allocates the other frees on the same thread. Since started coroutines do not
    /// migrate, this is how to put a party beside its peer, for example a session's
    /// server party beside the client that opened the stream
    /// (`kcoro_adapter::session::ClientStream::opened_on`). Replaces [`spread`](Self::spread).
    pub fn on_worker(mut self, index: usize) -> Self {
        self.placement = Placement::Worker(index);
        self
    }
}

/// Whether the running coroutine accepted a connection since its last spawn (clears it).
pub(super) fn accepted_since_last_spawn() -> bool {
    // SAFETY: the running task lives while it runs, and this runs on its thread.
    context::current_task_ptr().is_some_and(|t| unsafe { t.as_ref() }.take_accepted())
}

/// Notes that the running coroutine (if any) accepted a connection: its next spawn with
/// the default placement spreads ([`SpawnOptions::spread`]).
pub(crate) fn note_accepted() {
    if let Some(t) = context::current_task_ptr() {
        // SAFETY: as above.
        unsafe { t.as_ref() }.note_accepted();
    }
}
