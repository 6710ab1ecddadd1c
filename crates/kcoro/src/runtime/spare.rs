//! Finished tasks kept for reuse: a spawn writes its new task into the allocation of a
//! finished one instead of allocating.
//!
//! Why: a coroutine started by one worker and stolen by another finishes there, so its
//! task would be freed on a thread other than the one that allocated it. With glibc's
//! malloc such a free takes the allocating thread's arena lock, and under a spawn burst
//! (a scope of short children) the two workers contend for it, sleeping and waking on its
//! futex. Go keeps finished goroutines per P for the same reason.
//!
//! Each worker keeps its own spares (in its `Core`, no lock); a worker that finishes more
//! than it spawns passes batches to a shared list, where a worker that spawns more than
//! it finishes takes them. Both lists are bounded; beyond them a task is freed as before.
//! A spare holds a reference to the runtime, so the shared list is emptied at shutdown.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use super::worker::TaskRef;

/// Spares a worker keeps before passing a batch on.
const LOCAL_MAX: usize = 64;
/// Tasks moved between a worker and the shared list at once.
const BATCH: usize = 32;
/// Spares the shared list keeps; more are freed.
const SHARED_MAX: usize = 1024;

#[derive(Default)]
pub(crate) struct SpareTasks {
    shared: Mutex<Vec<TaskRef>>,
    /// `shared.len()`, read without the lock so that an empty list costs no lock.
    shared_len: AtomicUsize,
}

impl SpareTasks {
    /// Keeps `task`, which just finished, if nobody else holds it; `local` is the calling
    /// worker's own list.
    pub(crate) fn keep(&self, local: &mut Vec<TaskRef>, mut task: TaskRef) {
        let Some(t) = Arc::get_mut(&mut task) else { return };
        t.release_for_reuse();
        local.push(task);
        if local.len() > LOCAL_MAX {
            let batch = local.split_off(local.len() - BATCH);
            let mut shared = self.lock();
            if shared.len() + BATCH <= SHARED_MAX {
                shared.extend(batch);
                self.shared_len.store(shared.len(), Relaxed);
            }
        }
    }

    /// A finished task whose allocation the caller may reuse, if any: from `local`, else
    /// a batch from the shared list.
    pub(crate) fn take(&self, local: &mut Vec<TaskRef>) -> Option<TaskRef> {
        if let Some(t) = local.pop() {
            return Some(t);
        }
        if self.shared_len.load(Relaxed) == 0 {
            return None;
        }
        let mut shared = self.lock();
        let keep = shared.len().saturating_sub(BATCH);
        local.extend(shared.drain(keep..));
        self.shared_len.store(shared.len(), Relaxed);
        drop(shared);
        local.pop()
    }

    /// Empties the shared list (shutdown: its tasks hold the runtime).
    pub(crate) fn clear(&self) {
        let spares = std::mem::take(&mut *self.lock());
        self.shared_len.store(0, Relaxed);
        drop(spares);
    }

    fn lock(&self) -> MutexGuard<'_, Vec<TaskRef>> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::coro::task::{Origin, Task, TaskStart};
    use crate::runtime::join::Completer;

    /// A task that never runs, built on `rt`'s runtime.
    fn idle_task(rt: &crate::Runtime, id: u64) -> TaskRef {
        let shared = rt.shared_for_tests();
        let Ok(stack) = shared.stacks.get(shared.stacks.stack_size()) else { panic!("no stack") };
        let start = TaskStart {
            spare: None,
            shared,
            id,
            name: Some("spare".into()),
            origin: Origin::here(),
            token: None,
        };
        let task = Task::unstarted(start, &stack);
        // SAFETY: the task was just built and nobody else has it; the closure borrows nothing.
        unsafe { task.install(stack, || (), Completer::detached()) };
        task
    }

    #[test]
    fn keeps_only_unshared_tasks_and_passes_batches_through_the_shared_list() {
        let rt = crate::Runtime::builder().workers(1).build().unwrap_or_else(|e| panic!("{e}"));
        let spares = SpareTasks::default();
        let mut busy = Vec::new();
        let mut idle = Vec::new();

        let held = idle_task(&rt, 1);
        spares.keep(&mut busy, Arc::clone(&held));
        assert!(busy.is_empty(), "a task someone else holds is not reused");
        drop(held);

        for id in 0..LOCAL_MAX as u64 {
            spares.keep(&mut busy, idle_task(&rt, id));
        }
        assert_eq!((busy.len(), spares.shared_len.load(Relaxed)), (LOCAL_MAX, 0));
        spares.keep(&mut busy, idle_task(&rt, 99));
        assert_eq!((busy.len(), spares.shared_len.load(Relaxed)), (LOCAL_MAX + 1 - BATCH, BATCH));
        assert!(busy.iter().all(|t| t.name().is_none()), "a kept task drops its name");

        // Another worker with none of its own takes a batch, then spends it.
        for _ in 0..BATCH {
            assert!(spares.take(&mut idle).is_some());
        }
        assert_eq!(spares.shared_len.load(Relaxed), 0);
        assert!(spares.take(&mut idle).is_none());

        spares.keep(&mut idle, idle_task(&rt, 100));
        spares.clear();
        assert!(spares.take(&mut Vec::new()).is_none());
        drop((busy, idle));
    }

    #[test]
    fn spares_do_not_keep_a_dropped_runtime_alive() {
        let rt = crate::Runtime::builder().workers(1).build().unwrap_or_else(|e| panic!("{e}"));
        // Spares in the worker's own list: coroutines that finished there.
        rt.block_on(|| {
            for _ in 0..10 {
                crate::spawn(|| ()).join().unwrap_or_else(|e| panic!("{e}"));
            }
        });
        assert!(rt.worker_counters()[0].reused > 0, "no spawn reused a task");
        // Spares in the shared list: more than a worker keeps.
        let shared = rt.shared_for_tests();
        let mut local = Vec::new();
        for id in 0..=LOCAL_MAX as u64 {
            shared.spare_tasks.keep(&mut local, idle_task(&rt, id));
        }
        drop(local);
        assert_eq!(shared.spare_tasks.shared_len.load(Relaxed), BATCH);
        let weak = Arc::downgrade(&shared);
        drop(shared);
        drop(rt);
        assert!(weak.upgrade().is_none(), "the runtime outlived its drop");
    }
}
