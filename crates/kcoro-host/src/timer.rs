//! Deadlines for futures awaited outside kcoro: one thread wakes each registered waker at
//! its deadline. Coroutines and threads never use it (they park with a deadline).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::Waker;
use std::time::Instant;

struct Due {
    at: Instant,
    seq: u64,
    waker: Waker,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Timer {
    heap: Mutex<(BinaryHeap<Reverse<Due>>, u64)>,
    cv: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::default());
        // If the thread cannot start, deadlines still hold the next time the future is
        // polled; only the wake-up is lost.
        let _ = std::thread::Builder::new().name("kcoro-host-timer".into()).spawn(move || run(t));
        t
    })
}

fn run(t: &'static Timer) {
    let mut g = t.heap.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        while g.0.peek().is_some_and(|Reverse(d)| d.at <= now) {
            if let Some(Reverse(d)) = g.0.pop() {
                d.waker.wake();
            }
        }
        g = match g.0.peek().map(|Reverse(d)| d.at) {
            Some(at) => {
                t.cv.wait_timeout(g, at.saturating_duration_since(now)).unwrap_or_else(|e| e.into_inner()).0
            }
            None => t.cv.wait(g).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// Wakes `waker` at (or soon after) `at`.
pub(crate) fn wake_at(at: Instant, waker: Waker) {
    let t = timer();
    let mut g = t.heap.lock().unwrap_or_else(|e| e.into_inner());
    g.1 += 1;
    let seq = g.1;
    g.0.push(Reverse(Due { at, seq, waker }));
    drop(g);
    t.cv.notify_one();
}
