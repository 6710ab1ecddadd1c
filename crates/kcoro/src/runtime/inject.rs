//! The runtime-wide inject queue: spawns from outside the workers and ring overflow.
//! A mutex-protected FIFO with an atomic length so empty checks take no lock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use crate::runtime::worker::TaskRef;

#[derive(Default)]
pub(crate) struct Inject {
    queue: Mutex<VecDeque<TaskRef>>,
    /// Mirrors `queue.len()`; SeqCst pairs with the sleeper re-check in `runtime::idle`.
    len: AtomicUsize,
}

impl Inject {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<TaskRef>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(SeqCst)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn push(&self, task: TaskRef) {
        let mut q = self.lock();
        q.push_back(task);
        self.len.store(q.len(), SeqCst);
    }

    pub(crate) fn push_batch(&self, batch: Vec<TaskRef>) {
        let mut q = self.lock();
        q.extend(batch);
        self.len.store(q.len(), SeqCst);
    }

    pub(crate) fn pop_batch(&self, max: usize) -> Vec<TaskRef> {
        let mut q = self.lock();
        let n = max.min(q.len());
        let batch: Vec<_> = q.drain(..n).collect();
        self.len.store(q.len(), SeqCst);
        batch
    }

    pub(crate) fn drain(&self) -> Vec<TaskRef> {
        let mut q = self.lock();
        self.len.store(0, SeqCst);
        q.drain(..).collect()
    }
}
