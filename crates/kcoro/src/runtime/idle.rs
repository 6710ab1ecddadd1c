//! Idle workers: who is searching for work, who sleeps, and whom to wake.
//!
//! Policy (after tokio's `idle.rs`): new stealable work wakes *one* sleeping worker, and
//! only when no worker is already searching — a searcher will find it, and waking more
//! would stampede. At most half the workers search at once. A woken worker starts as a
//! searcher; when a searcher finds work and was the last one searching, it wakes another
//! so a burst of work keeps spreading.
//!
//! Work pinned to one worker (a started coroutine woken from elsewhere) wakes exactly that
//! worker, whatever the searching count.
//!
//! # Protocol (no lost wake-ups)
//! Sleeper: 1. register in `sleepers` and set its state to `SLEEPING` (SeqCst);
//!          2. re-check the inject queue, its inbox and the stealable rings;
//!          3. sleep until its state is no longer `SLEEPING`.
//! Waker:   1. publish the work (SeqCst); 2. read the counts / the target's state (SeqCst).
//! Either the sleeper's re-check sees the work or the waker sees the sleeper.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::SeqCst};

/// Running or looking for work.
pub(crate) const AWAKE: u8 = 0;
/// Registered as a sleeper; will block in `thread::park`.
pub(crate) const SLEEPING: u8 = 1;
/// Woken by `notify_any`: counted as searching.
pub(crate) const WOKEN_SEARCHING: u8 = 2;
/// Woken for its own inbox (or shutdown): not counted as searching.
pub(crate) const WOKEN: u8 = 3;

pub(crate) struct Idle {
    sleepers: Mutex<Vec<usize>>,
    num_sleeping: AtomicUsize,
    num_searching: AtomicUsize,
    num_workers: usize,
}

impl Idle {
    pub(crate) fn new(num_workers: usize) -> Self {
        Self {
            sleepers: Mutex::new(Vec::with_capacity(num_workers)),
            num_sleeping: AtomicUsize::new(0),
            num_searching: AtomicUsize::new(0),
            num_workers,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.sleepers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tries to become a searcher; refuses when half the workers already search.
    pub(crate) fn transition_to_searching(&self) -> bool {
        let cap = self.num_workers.max(2) / 2;
        self.num_searching.fetch_update(SeqCst, SeqCst, |n| (n < cap).then_some(n + 1)).is_ok()
    }

    /// Stops searching; returns `true` if this was the last searcher (the caller, having
    /// found work, should then wake another worker).
    pub(crate) fn transition_from_searching(&self) -> bool {
        self.num_searching.fetch_sub(1, SeqCst) == 1
    }

    /// Picks a sleeper to wake for new stealable work, or `None` if someone is already
    /// searching or nobody sleeps. The returned worker is counted as searching, and its
    /// state (`sleep_state(idx)`) is set to `WOKEN_SEARCHING` under the lock, so a sleeper
    /// that finds itself off the list never waits on a preempted waker.
    pub(crate) fn pick_sleeper<'a>(&self, sleep_state: impl Fn(usize) -> &'a AtomicU8) -> Option<usize> {
        // The work was published before this (a ring push is only a Release store): the
        // fence orders it before the loads below, pairing with the fence in the sleeper's
        // re-check (Dekker: one side sees the other).
        std::sync::atomic::fence(SeqCst);
        if self.num_searching.load(SeqCst) != 0 || self.num_sleeping.load(SeqCst) == 0 {
            return None;
        }
        let mut s = self.lock();
        let idx = s.pop()?;
        self.num_sleeping.fetch_sub(1, SeqCst);
        self.num_searching.fetch_add(1, SeqCst);
        sleep_state(idx).store(WOKEN_SEARCHING, SeqCst);
        Some(idx)
    }

    /// Registers `idx` as sleeping (protocol step 1); `state` is the worker's sleep state.
    pub(crate) fn register_sleeper(&self, idx: usize, state: &AtomicU8) {
        let mut s = self.lock();
        s.push(idx);
        self.num_sleeping.fetch_add(1, SeqCst);
        state.store(SLEEPING, SeqCst);
    }

    /// Takes `idx` off the sleeper list if still there. Returns `false` if a waker already
    /// took it (and set its state).
    pub(crate) fn remove_sleeper(&self, idx: usize, state: &AtomicU8, wake_state: u8) -> bool {
        let mut s = self.lock();
        match s.iter().position(|&i| i == idx) {
            Some(pos) => {
                s.swap_remove(pos);
                self.num_sleeping.fetch_sub(1, SeqCst);
                state.store(wake_state, SeqCst);
                true
            }
            None => false,
        }
    }

    pub(crate) fn all_sleepers(&self) -> Vec<usize> {
        self.lock().clone()
    }
}
