//! The blocking pool: plain threads for calls that would block a worker (file I/O, DNS,
//! CPU-heavy work). Threads are started on demand up to a cap and exit after idling for
//! `KEEP_ALIVE`. Jobs report through a [`JoinHandle`] that a coroutine, a thread or a
//! future can wait on.
//!
//! # Invariants
//! - `idle <= threads <= max_threads`.
//! - A queued job is run by exactly one thread, or dropped at shutdown (its joiner then
//!   sees `JoinError::Cancelled`).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::JoinError;
use crate::runtime::join::{self, JoinHandle};

/// How long an idle blocking thread waits for work before exiting.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

struct State {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
    shutdown: bool,
}

pub(crate) struct BlockingPool {
    state: Mutex<State>,
    cond: Condvar,
    max_threads: usize,
    name: String,
}

impl BlockingPool {
    pub(crate) fn new(max_threads: usize, name: String) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State { queue: VecDeque::new(), threads: 0, idle: 0, shutdown: false }),
            cond: Condvar::new(),
            max_threads: max_threads.max(1),
            name,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn spawn<F, T>(self: &Arc<Self>, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (completer, handle) = join::pair(0);
        let job: Job = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(f)).map_err(JoinError::Panicked);
            completer.complete(r);
        });
        let mut st = self.lock();
        if st.shutdown {
            return JoinHandle::ready(Err(JoinError::Cancelled));
        }
        st.queue.push_back(job);
        if st.idle > 0 {
            drop(st);
            self.cond.notify_one();
        } else if st.threads < self.max_threads {
            st.threads += 1;
            drop(st);
            let pool = Arc::clone(self);
            let started = std::thread::Builder::new()
                .name(format!("{}-blocking", self.name))
                .spawn(move || pool.run_thread());
            if started.is_err() {
                // The job stays queued for an existing thread; with none, it is dropped at
                // shutdown and its joiner sees Cancelled rather than hanging silently.
                self.lock().threads -= 1;
            }
        }
        handle
    }

    fn run_thread(&self) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                job();
                st = self.lock();
                continue;
            }
            if st.shutdown {
                break;
            }
            st.idle += 1;
            let (guard, timeout) = self.cond.wait_timeout(st, KEEP_ALIVE).unwrap_or_else(|p| p.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.queue.is_empty() {
                break;
            }
        }
        st.threads -= 1;
    }

    /// Refuses new jobs, drops queued ones, and lets idle threads exit. Running jobs finish
    /// on their own; their threads are not joined (they may block indefinitely).
    pub(crate) fn shutdown(&self) {
        let dropped: Vec<Job> = {
            let mut st = self.lock();
            st.shutdown = true;
            st.queue.drain(..).collect()
        };
        drop(dropped);
        self.cond.notify_all();
    }

    pub(crate) fn threads(&self) -> usize {
        self.lock().threads
    }
}
