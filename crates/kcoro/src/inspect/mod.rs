//! What a runtime's coroutines are doing right now: each live coroutine's state, what it
//! waits on, for how long and where it was spawned ([`Handle::coroutines`]), the threads
//! outside the runtime waiting in kcoro's primitives ([`threads_waiting`]), and a global
//! deadlock check ([`Handle::deadlock`], [`Builder::on_deadlock`]).
//!
//! ```
//! let rt = kcoro::Runtime::new().unwrap();
//! let (tx, rx) = kcoro::chan::Builder::<u32>::buffered(1).name("jobs").build();
//! let waiting = rt.spawn(move || rx.recv());
//! let handle = rt.handle();
//! let seen = loop {
//!     let parked = handle.coroutines().into_iter().find(|c| c.id == waiting.id() && c.wait.is_some());
//!     if let Some(c) = parked {
//!         break c;
//!     }
//!     std::thread::yield_now();
//! };
//! assert_eq!(seen.wait.unwrap().to_string(), "recv on jobs");
//! tx.send(7).unwrap();
//! assert_eq!(waiting.join().unwrap(), Ok(7));
//! ```
//!
//! Cost: a park writes what it waits on into two words of its coroutine (a select or a
//! deadline one more), and a worker notes which coroutine it runs; no clock is read, so
//! how long a coroutine has been parked counts from the first inspection that saw that
//! park. [`Builder::coroutine_detail`]`(false)` turns all of it off, as does
//! `KCORO_COROUTINE_DETAIL=0` in the environment for runtimes built with the default.
//!
//! [`Builder::on_deadlock`]: crate::Builder::on_deadlock
//! [`Builder::coroutine_detail`]: crate::Builder::coroutine_detail
//! [`Handle::coroutines`]: crate::Handle::coroutines
//! [`Handle::deadlock`]: crate::Handle::deadlock

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::coro::wait::{SELECT_SEND, SYNC_NAMES, Seen, Wait, kind};

/// One live coroutine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coroutine {
    /// Its id ([`JoinHandle::id`](crate::JoinHandle::id), [`coro::current_id`](crate::coro::current_id)).
    pub id: u64,
    /// Its name ([`SpawnOptions::name`](crate::SpawnOptions::name)).
    pub name: Option<String>,
    /// The worker it runs on once started; `None` before its first run.
    pub worker: Option<usize>,
    /// Running, runnable or parked.
    pub state: State,
    /// What it waits on, when parked (`None` also when the runtime keeps no detail).
    pub wait: Option<WaitOn>,
    /// Time left before the park's deadline, if it has one.
    pub deadline_in: Option<Duration>,
    /// How long it has been in this park, counted from the first inspection that saw it
    /// (so a first look says zero).
    pub parked_for: Option<Duration>,
    /// The park's sequence number: it changes with every park.
    pub park_seq: u32,
    /// Where it was spawned.
    pub spawned_at: &'static Location<'static>,
    /// Left out of deadlock detection ([`SpawnOptions::daemon`](crate::SpawnOptions::daemon)).
    pub daemon: bool,
}

/// A coroutine's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// On a worker right now.
    Running,
    /// Ready to run, in a queue (or not yet started).
    Runnable,
    /// Suspended until something wakes it.
    Parked,
}

impl State {
    /// `running`, `runnable` or `parked`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Runnable => "runnable",
            State::Parked => "parked",
        }
    }
}

/// A channel a coroutine waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRef {
    /// The channel's id ([`Snapshot::id`](crate::chan::Snapshot)).
    pub id: u64,
    /// Its name, if it has one ([`chan::Builder::name`](crate::chan::Builder::name)).
    pub name: Option<String>,
}

impl fmt::Display for ChannelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => f.write_str(n),
            None => write!(f, "channel #{}", self.id),
        }
    }
}

/// What a parked coroutine (or a thread) waits on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WaitOn {
    /// [`park::park`](crate::park::park) called by code outside kcoro's primitives.
    Park,
    /// A send on a full (or rendezvous) channel.
    Send(ChannelRef),
    /// A receive on an empty channel.
    Recv(ChannelRef),
    /// A select over `clauses` operations; the first two are named.
    Select {
        /// How many clauses.
        clauses: usize,
        /// The first (up to) two: the channel and whether the clause sends.
        first: Vec<(ChannelRef, bool)>,
    },
    /// A sleep ([`sleep`](crate::sleep)).
    Sleep,
    /// A socket's readiness.
    Io {
        /// The file descriptor.
        fd: i32,
        /// Writable (else readable).
        write: bool,
    },
    /// The end of another coroutine ([`JoinHandle::join`](crate::JoinHandle::join)).
    Join(u64),
    /// A synchronisation primitive: `lock` (a mutex or semaphore), `wait group`, `actor
    /// reply`, `signal`.
    Sync(&'static str),
    /// A cancel token.
    Cancel,
    /// A scope waiting for its children.
    Scope,
    /// A future ([`future::wait`](crate::future::wait)).
    Future,
}

impl fmt::Display for WaitOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitOn::Park => f.write_str("park"),
            WaitOn::Send(c) => write!(f, "send on {c}"),
            WaitOn::Recv(c) => write!(f, "recv on {c}"),
            WaitOn::Select { clauses, first } => {
                write!(f, "select over {clauses}")?;
                for (i, (c, send)) in first.iter().enumerate() {
                    let sep = if i == 0 { ": " } else { ", " };
                    write!(f, "{sep}{} {c}", if *send { "send" } else { "recv" })?;
                }
                if *clauses > first.len() && !first.is_empty() {
                    f.write_str(", …")?;
                }
                Ok(())
            }
            WaitOn::Sleep => f.write_str("sleep"),
            WaitOn::Io { fd, write } => {
                write!(f, "socket fd {fd} {}", if *write { "writable" } else { "readable" })
            }
            WaitOn::Join(id) => write!(f, "join of coroutine {id}"),
            WaitOn::Sync(what) => f.write_str(what),
            WaitOn::Cancel => f.write_str("cancel token"),
            WaitOn::Scope => f.write_str("scope's children"),
            WaitOn::Future => f.write_str("future"),
        }
    }
}

/// A thread outside the runtime, parked in a kcoro primitive (a channel operation, a
/// join, `block_on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadWaiter {
    /// The thread's name, or its id.
    pub thread: String,
    /// What it waits on.
    pub wait: WaitOn,
    /// Whether the wait has a deadline (then it will return by itself).
    pub deadline: bool,
}

/// Every coroutine parked and nothing left that could wake one: who waits on what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadlock {
    /// The parked coroutines (daemons left out).
    pub coroutines: Vec<Coroutine>,
    /// Threads outside the runtime waiting in kcoro primitives (they wait too).
    pub threads: Vec<ThreadWaiter>,
}

impl Deadlock {
    /// The identity of this state: the same parks (coroutine id, park sequence) in two
    /// checks mean nothing moved in between.
    pub fn key(&self) -> Vec<(u64, u32)> {
        let mut k: Vec<(u64, u32)> = self.coroutines.iter().map(|c| (c.id, c.park_seq)).collect();
        k.sort_unstable();
        k
    }
}

impl fmt::Display for Deadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "deadlock: all {} coroutines are parked and nothing can wake them (no timer armed, no socket waited on)",
            self.coroutines.len()
        )?;
        for c in &self.coroutines {
            let name = c.name.as_deref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
            let wait = c.wait.as_ref().map_or_else(|| "?".to_string(), ToString::to_string);
            writeln!(f, "  coroutine {}{name} waits on {wait} (spawned at {})", c.id, c.spawned_at)?;
        }
        for t in &self.threads {
            writeln!(f, "  thread {} waits on {}", t.thread, t.wait)?;
        }
        Ok(())
    }
}

/// What [`Builder::on_deadlock`](crate::Builder::on_deadlock) does once a deadlock has
/// held for the grace period.
#[derive(Clone)]
pub enum OnDeadlock {
    /// Print the report to stderr (once per deadlock).
    Report,
    /// Print it, and make `block_on` fail: [`Runtime::try_block_on`](crate::Runtime::try_block_on)
    /// returns [`Error::Deadlock`](crate::Error::Deadlock) naming the waiters, and
    /// [`Runtime::block_on`](crate::Runtime::block_on) panics with it.
    Fail,
    /// Call this with the report (once per deadlock), on the runtime's watchdog thread.
    Call(Arc<dyn Fn(&Deadlock) + Send + Sync>),
}

impl fmt::Debug for OnDeadlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnDeadlock::Report => "Report",
            OnDeadlock::Fail => "Fail",
            OnDeadlock::Call(_) => "Call(..)",
        })
    }
}

/// Turns a recorded wait into its public form, naming channels from `names`.
pub(crate) fn describe(w: Wait, names: &HashMap<u64, String>) -> WaitOn {
    let chan = |id: u64| ChannelRef { id, name: names.get(&id).cloned() };
    match w.kind {
        kind::SEND => WaitOn::Send(chan(w.obj)),
        kind::RECV => WaitOn::Recv(chan(w.obj)),
        kind::SELECT => {
            let first = [w.obj, w.extra]
                .into_iter()
                .take(usize::from(w.n))
                .filter(|&id| id != 0)
                .map(|id| (chan(id & !SELECT_SEND), id & SELECT_SEND != 0))
                .collect();
            WaitOn::Select { clauses: usize::from(w.n), first }
        }
        kind::SLEEP => WaitOn::Sleep,
        kind::IO => WaitOn::Io { fd: w.obj as u32 as i32, write: w.n == 1 },
        kind::JOIN => WaitOn::Join(w.obj),
        kind::SYNC => WaitOn::Sync(SYNC_NAMES.get(usize::from(w.n)).copied().unwrap_or("sync")),
        kind::CANCEL => WaitOn::Cancel,
        kind::SCOPE => WaitOn::Scope,
        kind::FUTURE => WaitOn::Future,
        _ => WaitOn::Park,
    }
}

/// Names of the named channels alive now, by id.
pub(crate) fn channel_names() -> HashMap<u64, String> {
    crate::chan::registry::list().into_iter().filter_map(|s| Some((s.id, s.name?))).collect()
}

/// When each coroutine's current park was first seen, for [`Coroutine::parked_for`].
#[derive(Default)]
pub(crate) struct FirstSeen(Mutex<HashMap<u64, (u32, Instant)>>);

impl FirstSeen {
    /// How long `id`'s park `seen` has been known, recording it if new. Call
    /// [`FirstSeen::keep_only`] after a whole pass so finished coroutines are forgotten.
    pub(crate) fn parked_for(&self, id: u64, seen: &Seen, now: Instant) -> Duration {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(id).or_insert((seen.seq, now));
        if entry.0 != seen.seq {
            *entry = (seen.seq, now);
        }
        now.saturating_duration_since(entry.1)
    }

    pub(crate) fn keep_only(&self, live: &[u64]) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > live.len() {
            let live: std::collections::HashSet<u64> = live.iter().copied().collect();
            map.retain(|id, _| live.contains(id));
        }
    }
}

/// One thread parked in a kcoro primitive.
struct ThreadEntry {
    key: u64,
    thread: std::thread::Thread,
    wait: Wait,
    deadline: bool,
}

/// Threads parked in kcoro primitives right now (the thread path of `park`). A lock per
/// thread park is nothing beside the futex wait it goes with.
static THREADS: Mutex<Vec<ThreadEntry>> = Mutex::new(Vec::new());
static NEXT_THREAD_KEY: AtomicU64 = AtomicU64::new(1);

/// Lists the calling thread in [`threads_waiting`] while it lives.
pub(crate) struct ThreadWait(u64);

impl ThreadWait {
    pub(crate) fn enter(wait: Wait, deadline: bool) -> ThreadWait {
        let key = NEXT_THREAD_KEY.fetch_add(1, Relaxed);
        let entry = ThreadEntry { key, thread: std::thread::current(), wait, deadline };
        THREADS.lock().unwrap_or_else(PoisonError::into_inner).push(entry);
        ThreadWait(key)
    }
}

impl Drop for ThreadWait {
    fn drop(&mut self) {
        let mut list = THREADS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = list.iter().position(|e| e.key == self.0) {
            list.swap_remove(i);
        }
    }
}

/// The threads outside any runtime parked in kcoro primitives right now (a `block_on`
/// waiting for its coroutine, a thread receiving from a channel).
pub fn threads_waiting() -> Vec<ThreadWaiter> {
    let names = channel_names();
    let list = THREADS.lock().unwrap_or_else(PoisonError::into_inner);
    list.iter()
        .map(|e| ThreadWaiter {
            thread: e.thread.name().map_or_else(|| format!("{:?}", e.thread.id()), str::to_string),
            wait: describe(e.wait, &names),
            deadline: e.deadline,
        })
        .collect()
}

/// Unparks every thread listed as waiting for a coroutine to end (a `block_on` that is
/// to fail); a spurious wake to any other.
pub(crate) fn unpark_joining_threads() {
    let list = THREADS.lock().unwrap_or_else(PoisonError::into_inner);
    for e in list.iter().filter(|e| e.wait.kind == kind::JOIN) {
        e.thread.unpark();
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
