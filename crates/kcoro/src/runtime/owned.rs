//! The registry of live coroutines, so shutdown can find — and unwind — the ones that are
//! parked and referenced only by whoever would wake them. Sharded to keep spawns on
//! different workers off each other's lock.
//!
//! # Invariants
//! - A task is in the registry from spawn until it completes or is unwound.
//! - `task.owned_key` encodes `(shard, slot)` and is written before the task is published.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::coro::task::Task;
use crate::runtime::worker::TaskRef;

/// Bits of `owned_key` that hold the slot; the shard sits above them.
const SLOT_BITS: u32 = 40;

struct Shard {
    slots: Vec<Option<TaskRef>>,
    free: Vec<usize>,
}

pub(crate) struct Owned {
    shards: Box<[Mutex<Shard>]>,
    live: AtomicUsize,
    closed: std::sync::atomic::AtomicBool,
}

impl Owned {
    pub(crate) fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard { slots: Vec::new(), free: Vec::new() }))
                .collect(),
            live: AtomicUsize::new(0),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a task; returns `false` once shutdown has closed the registry.
    pub(crate) fn insert(&self, shard: usize, task: &TaskRef) -> bool {
        let shard = shard % self.shards.len();
        let mut s = self.lock(shard);
        // Checked under the shard lock, which `close` takes after setting the flag.
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let slot = match s.free.pop() {
            Some(i) => {
                s.slots[i] = Some(TaskRef::clone(task));
                i
            }
            None => {
                s.slots.push(Some(TaskRef::clone(task)));
                s.slots.len() - 1
            }
        };
        task.owned_key.set((shard << SLOT_BITS) | slot);
        self.live.fetch_add(1, Relaxed);
        true
    }

    pub(crate) fn remove(&self, task: &Task) {
        let key = task.owned_key.get();
        if key == usize::MAX {
            return;
        }
        let (shard, slot) = (key >> SLOT_BITS, key & ((1 << SLOT_BITS) - 1));
        let removed = {
            let mut s = self.lock(shard);
            let t = s.slots.get_mut(slot).and_then(Option::take);
            if t.is_some() {
                s.free.push(slot);
            }
            t
        };
        if removed.is_some() {
            task.owned_key.set(usize::MAX);
            self.live.fetch_sub(1, Relaxed);
        }
    }

    pub(crate) fn live(&self) -> usize {
        self.live.load(Relaxed)
    }

    /// Takes out every registered task matching `pred`.
    pub(crate) fn take_where(&self, pred: impl Fn(&TaskRef) -> bool) -> Vec<TaskRef> {
        let mut out = Vec::new();
        for i in 0..self.shards.len() {
            let mut s = self.lock(i);
            let Shard { slots, free } = &mut *s;
            for (slot, entry) in slots.iter_mut().enumerate() {
                if let Some(t) = entry.take_if(|t| pred(t)) {
                    t.owned_key.set(usize::MAX);
                    free.push(slot);
                    out.push(t);
                }
            }
        }
        self.live.fetch_sub(out.len(), Relaxed);
        out
    }

    /// Refuses further inserts and takes every registered task out.
    pub(crate) fn close_and_take(&self) -> Vec<TaskRef> {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut all = Vec::new();
        for i in 0..self.shards.len() {
            let mut s = self.lock(i);
            all.extend(s.slots.drain(..).flatten());
            s.free.clear();
        }
        self.live.fetch_sub(all.len(), Relaxed);
        all
    }
}
