//! The runtime seen from outside: its live coroutines ([`Handle::coroutines`]), the
//! global deadlock check ([`Handle::deadlock`]) and the watchdog thread that acts on it
//! ([`Builder::on_deadlock`](crate::Builder::on_deadlock)). Types in [`crate::inspect`].

use std::cell::RefCell;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::{Handle, Shared};
use crate::coro::wait::kind;
use crate::inspect::{self, Coroutine, Deadlock, FirstSeen, OnDeadlock, State, WaitOn};

/// What the runtime keeps for its observers.
#[derive(Default)]
pub(crate) struct Observer {
    pub(crate) first_seen: FirstSeen,
    /// The deadlock that made `block_on` fail ([`OnDeadlock::Fail`]).
    pub(crate) failed: Mutex<Option<Deadlock>>,
}

impl Observer {
    pub(crate) fn failed(&self) -> Option<Deadlock> {
        self.failed.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Handle {
    /// Every live coroutine of this runtime, by id: its state, what it waits on and for
    /// how long, where it was spawned. See [`crate::inspect`].
    pub fn coroutines(&self) -> Vec<Coroutine> {
        self.shared.coroutines()
    }

    /// A global deadlock right now: at least one coroutine, every one (daemons aside)
    /// parked without a deadline on something other than a socket, no timer armed, and no
    /// thread outside the runtime parked in kcoro with a deadline. `None` otherwise, and
    /// always when the runtime keeps no coroutine detail. One look: a caller that wants to
    /// be sure checks that [`Deadlock::key`] stays the same over a while (as the watchdog
    /// of [`Builder::on_deadlock`](crate::Builder::on_deadlock) does), since a thread
    /// outside kcoro may still be about to send.
    pub fn deadlock(&self) -> Option<Deadlock> {
        self.deadlock_among(&self.coroutines())
    }

    /// [`deadlock`](Self::deadlock) judged from a list [`coroutines`](Self::coroutines)
    /// just returned, for a caller that wants both without walking the runtime twice.
    pub fn deadlock_among(&self, coroutines: &[Coroutine]) -> Option<Deadlock> {
        self.shared.deadlock_among(coroutines)
    }
}

impl Shared {
    fn coroutines(&self) -> Vec<Coroutine> {
        let names = &inspect::channel_names();
        let now = Instant::now();
        let clock = self.driver.now();
        let epoch = self.driver.epoch();
        let running: Vec<u64> = self.workers.iter().map(|w| w.stats.running.load(Relaxed)).collect();
        let out = RefCell::new(Vec::new());
        self.owned.take_where(|t| {
            let seen = t.seen_wait().filter(|s| s.wait.kind != kind::NONE);
            let state = if t.is_parked() {
                State::Parked
            } else if running.contains(&t.id()) {
                State::Running
            } else {
                State::Runnable
            };
            let (wait, deadline_in, parked_for, park_seq) = match &seen {
                Some(s) => (
                    Some(inspect::describe(s.wait, names)),
                    s.deadline_ns
                        .map(|ns| (epoch + Duration::from_nanos(ns)).saturating_duration_since(clock)),
                    Some(self.observer.first_seen.parked_for(t.id(), s, now)),
                    s.seq,
                ),
                None => (None, None, None, 0),
            };
            out.borrow_mut().push(Coroutine {
                id: t.id(),
                name: t.name().map(str::to_string),
                worker: t.is_started().then(|| t.home()),
                state,
                wait,
                deadline_in,
                parked_for,
                park_seq,
                spawned_at: t.spawn_site(),
                daemon: t.is_daemon(),
            });
            false // look, never take
        });
        let mut all = out.into_inner();
        all.sort_unstable_by_key(|c| c.id);
        self.observer.first_seen.keep_only(&all.iter().map(|c| c.id).collect::<Vec<_>>());
        all
    }

    fn deadlock_among(&self, all: &[Coroutine]) -> Option<Deadlock> {
        if !self.config.detail {
            return None;
        }
        let mut daemon_timers = 0;
        let mut stuck = Vec::new();
        for c in all {
            if c.daemon {
                daemon_timers += usize::from(c.deadline_in.is_some());
                continue;
            }
            let waits_for_good = c.state == State::Parked
                && c.deadline_in.is_none()
                && c.wait.as_ref().is_some_and(|w| !matches!(w, WaitOn::Io { .. } | WaitOn::Sleep));
            if !waits_for_good {
                return None;
            }
            stuck.push(c.clone());
        }
        if stuck.is_empty() || self.driver.timers_armed() > daemon_timers {
            return None;
        }
        let threads = inspect::threads_waiting();
        if threads.iter().any(|t| t.deadline) {
            return None;
        }
        Some(Deadlock { coroutines: stuck, threads })
    }
}

/// Starts the thread that checks for a deadlock every quarter of `grace` (at most every
/// 250 ms) and acts once the same one has held for `grace`.
pub(crate) fn start_watchdog(shared: &Arc<Shared>, action: OnDeadlock, grace: Duration, name: &str) {
    let weak = Arc::downgrade(shared);
    let step = (grace / 4).clamp(Duration::from_millis(5), Duration::from_millis(250));
    let spawned = std::thread::Builder::new()
        .name(format!("{name}-watchdog"))
        .spawn(move || watch(&weak, &action, grace, step));
    if let Err(e) = spawned {
        eprintln!("kcoro: cannot start the deadlock watchdog: {e}");
    }
}

/// The deadlock being watched: its key and when first seen.
struct Watched {
    key: Vec<(u64, u32)>,
    since: Instant,
}

fn watch(weak: &Weak<Shared>, action: &OnDeadlock, grace: Duration, step: Duration) {
    let mut current: Option<Watched> = None;
    // The deadlock last acted on. A look in between can find none (a thread anywhere in
    // the process parked in kcoro with a deadline might still send), yet the same key
    // afterwards means the same parks: nothing moved, and it is not reported again.
    let mut acted_on: Option<Vec<(u64, u32)>> = None;
    loop {
        std::thread::sleep(step);
        let Some(shared) = weak.upgrade() else { return };
        if shared.is_shutdown() {
            return;
        }
        let Some(found) = shared.deadlock_among(&shared.coroutines()) else {
            current = None;
            continue;
        };
        let key = found.key();
        match &current {
            // Acted on once: afterwards `acted_on` holds this key.
            Some(w) if w.key == key => {
                if w.since.elapsed() >= grace && acted_on.as_ref() != Some(&key) {
                    acted_on = Some(key);
                    act(&shared, action, found);
                }
            }
            _ => current = Some(Watched { key, since: Instant::now() }),
        }
    }
}

fn act(shared: &Shared, action: &OnDeadlock, found: Deadlock) {
    match action {
        OnDeadlock::Report => eprint!("kcoro: {found}"),
        OnDeadlock::Call(f) => {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&found))).is_err() {
                eprintln!("kcoro: the on_deadlock callback panicked");
            }
        }
        OnDeadlock::Fail => {
            eprint!("kcoro: {found}");
            *shared.observer.failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(found);
            inspect::unpark_joining_threads();
        }
    }
}
