//! Handles of scheduler coroutines, found from inside: `kcoro_current()` and `kcoro_park()`
//! in a spawned function need that coroutine's `kcoro_t`. kcoro keeps no per-coroutine user
//! data, so a map from (scheduler, coroutine id) to handle holds them; an entry lives from
//! the coroutine's start (`kc_spawn_co` with `out_co`) or its first `kcoro_current()` until
//! its function returns, and owns one reference of the handle.
//!
//! # Invariants
//! - Only the coroutine itself inserts or removes its own entry, so a coroutine that
//!   inserted one sees `LIVE > 0` when it ends (program order on its own thread).
//! - Coroutines that never ask for a handle never take the lock: spawning stays as cheap
//!   as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use crate::coro::{self, KcoroT};
use crate::error::Error;

/// (scheduler handle address, kcoro coroutine id) → handle address.
type Key = (usize, u64);

static ENTRIES: Mutex<Option<HashMap<Key, usize>>> = Mutex::new(None);
/// Entries in the map; written under the lock.
static LIVE: AtomicUsize = AtomicUsize::new(0);

fn entries() -> MutexGuard<'static, Option<HashMap<Key, usize>>> {
    ENTRIES.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handle reference made for a coroutine before it starts (`kc_spawn_co`): becomes its
/// registry entry when it starts, or is dropped with the coroutine if it never does.
pub(crate) struct Pending(*mut KcoroT);

// SAFETY: it is a counted reference to a handle, which any thread may release.
unsafe impl Send for Pending {}

impl Pending {
    /// Takes over one reference of `p` (a live handle).
    pub(crate) fn new(p: *mut KcoroT) -> Self {
        Pending(p)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own one reference of this live handle.
            let _ = unsafe { coro::release(self.0) };
        }
    }
}

/// The running coroutine's entry; removed (and its reference dropped) when the spawned
/// function ends, including by unwinding at scheduler shutdown.
pub(crate) struct Slot(Option<Key>);

/// Called first thing in a spawned function running on scheduler `sched`: names the
/// handle's wake target and registers it, if one was made before the start.
pub(crate) fn enter(sched: usize, pending: Option<Pending>) -> Slot {
    let Some(mut pending) = pending else { return Slot(None) };
    let Some(id) = kcoro::coro::current_id() else { return Slot(None) };
    let p = std::mem::replace(&mut pending.0, std::ptr::null_mut());
    // SAFETY: `Pending` held a reference of this live handle; the entry now owns it.
    if let Ok(co) = unsafe { coro::get(p) } {
        co.wake.set_target(kcoro::park::current());
    }
    insert((sched, id), p);
    Slot(Some((sched, id)))
}

fn insert(key: Key, p: *mut KcoroT) {
    let mut map = entries();
    map.get_or_insert_with(HashMap::new).insert(key, p as usize);
    LIVE.fetch_add(1, Relaxed);
}

/// The running scheduler coroutine's handle, made and registered on first use.
pub(crate) fn current_or_register() -> Result<*mut KcoroT, Error> {
    let sched = crate::sched::kc_sched_current() as usize;
    let id = kcoro::coro::current_id().ok_or(Error::Invalid("not in a scheduler coroutine"))?;
    let key = (sched, id);
    if let Some(&p) = entries().as_ref().and_then(|m| m.get(&key)) {
        return Ok(p as *mut KcoroT);
    }
    // Only this coroutine inserts its own key: nobody can add it between the two locks.
    let p = coro::new_sched_handle(1);
    // SAFETY: just made, live.
    unsafe { coro::get(p) }?.wake.set_target(kcoro::park::current());
    insert(key, p);
    Ok(p)
}

impl Drop for Slot {
    fn drop(&mut self) {
        let key = match self.0 {
            Some(k) => k,
            None if LIVE.load(Relaxed) == 0 => return,
            // Made on demand by `kcoro_current`: look for it.
            None => match (crate::sched::kc_sched_current() as usize, kcoro::coro::current_id()) {
                (s, Some(id)) => (s, id),
                _ => return,
            },
        };
        let removed = entries().as_mut().and_then(|m| m.remove(&key));
        if let Some(p) = removed {
            LIVE.fetch_sub(1, Relaxed);
            // SAFETY: the entry owned one reference of this live handle.
            let _ = unsafe { coro::release(p as *mut KcoroT) };
        }
    }
}
