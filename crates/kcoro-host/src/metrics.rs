//! Per-plugin counters, one stripe per thread (see [`crate::thread_slot`]): a thread bumps
//! its own stripe with a plain load and store, so two workers calling the same plugin
//! never share a cache line or pay for a locked instruction. Threads without a stripe of
//! their own share the last one, with atomic adds.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::fence;
use crate::thread_slot::{self, EXCLUSIVE};

use kcoro_abi::NrStatus;

/// Counter slots within a stripe.
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum Counter {
    Calls,
    Streams,
    Entered,
    Left,
    StreamFrames,
    DroppedReplies,
    Backpressure,
    StatusBase,
}

const STATUSES: usize = NrStatus::MAX_KNOWN as usize + 1;
const SLOTS: usize = Counter::StatusBase as usize + STATUSES;
const STRIPES: usize = EXCLUSIVE + 1;

#[repr(align(128))]
struct Stripe([AtomicU64; SLOTS]);

pub(crate) struct Counters {
    stripes: Box<[Stripe]>,
}

impl Counters {
    pub(crate) fn new() -> Counters {
        // Before any call can enter: the way `enter` fences is chosen once, here.
        fence::init();
        Counters {
            stripes: (0..STRIPES).map(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0)))).collect(),
        }
    }

    #[inline]
    fn bump(&self, i: usize, n: u64) {
        match thread_slot::index() {
            Some(t) => {
                // Single writer: this thread owns stripe `t`.
                let a = &self.stripes[t].0[i];
                a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Release);
            }
            None => {
                self.stripes[EXCLUSIVE].0[i].fetch_add(n, Ordering::AcqRel);
            }
        }
    }

    #[inline]
    pub(crate) fn add(&self, c: Counter, n: u64) {
        self.bump(c as usize, n);
    }

    /// Counts a completed call or terminal frame by its status (already read through the
    /// plugin's layout, so known).
    #[inline]
    pub(crate) fn status(&self, s: NrStatus) {
        self.bump(Counter::StatusBase as usize + s.normalized().0 as usize, 1);
    }

    /// The in-flight gauge is `Entered - Left`. The increment is ordered before the
    /// caller's SeqCst read of the plugin's `closing` flag, against unload's "set closing,
    /// barrier, then read the gauge": one of the two always sees the other. On the thread's
    /// own stripe a plain store and a compiler fence do, unload paying the barrier
    /// ([`crate::fence`]); without that barrier, or on the shared stripe, a SeqCst add.
    #[inline]
    pub(crate) fn enter(&self) {
        let i = Counter::Entered as usize;
        match thread_slot::index() {
            Some(t) if fence::asymmetric() => {
                // Single writer: this thread owns stripe `t`.
                let a = &self.stripes[t].0[i];
                a.store(a.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
                fence::light();
            }
            t => {
                self.stripes[t.unwrap_or(EXCLUSIVE)].0[i].fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    /// A leave is only ever read after its enter (see [`Counters::in_flight`]), so Release
    /// is enough.
    #[inline]
    pub(crate) fn leave(&self) {
        self.bump(Counter::Left as usize, 1);
    }

    fn sum(&self, i: usize, order: Ordering) -> u64 {
        self.stripes.iter().map(|s| s.0[i].load(order)).fold(0, u64::wrapping_add)
    }

    pub(crate) fn in_flight(&self) -> u64 {
        // Read `Left` first: a call leaves after it entered, so every `Left` counted here
        // has its `Entered` counted below and the difference never underflows.
        let left = self.sum(Counter::Left as usize, Ordering::SeqCst);
        let entered = self.sum(Counter::Entered as usize, Ordering::SeqCst);
        entered.wrapping_sub(left)
    }

    pub(crate) fn snapshot(&self) -> Metrics {
        let get = |c: Counter| self.sum(c as usize, Ordering::Acquire);
        let mut by_status = [0; STATUSES];
        for (i, n) in by_status.iter_mut().enumerate() {
            *n = self.sum(Counter::StatusBase as usize + i, Ordering::Acquire);
        }
        Metrics {
            calls: get(Counter::Calls),
            streams: get(Counter::Streams),
            in_flight: self.in_flight(),
            stream_frames: get(Counter::StreamFrames),
            dropped_replies: get(Counter::DroppedReplies),
            backpressure: get(Counter::Backpressure),
            by_status,
        }
    }
}

/// A snapshot of one plugin's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Unary calls started (`call`, `call_raw`).
    pub calls: u64,
    /// Streams started (`call_stream`, `open_stream`).
    pub streams: u64,
    /// Calls and streams started and not yet finished.
    pub in_flight: u64,
    /// Non-terminal stream frames delivered.
    pub stream_frames: u64,
    /// Replies and frames the host ignored: unknown or finished sid, a second reply, a frame
    /// after the terminal one.
    pub dropped_replies: u64,
    /// Times a stream was full when the plugin sent (it waited or got `Backpressure`).
    pub backpressure: u64,
    /// Finished unary calls and terminal stream frames, by status (`by_status[s.0]`).
    pub by_status: [u64; STATUSES],
}

impl Metrics {
    /// Finished calls and streams that did not end `Ok` / `StreamEnd`.
    pub fn errors(&self) -> u64 {
        self.by_status.iter().enumerate().filter(|&(s, _)| s != 0 && s != 4).map(|(_, n)| n).sum()
    }

    /// The count for one status.
    pub fn status(&self, s: NrStatus) -> u64 {
        self.by_status[s.normalized().0 as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    /// The handshake with unload as the host runs it: callers `enter` (a light fence where
    /// the barrier is registered), then read `closing`; the closer sets `closing`, passes
    /// the heavy barrier and waits for the gauge to read 0. No caller may find itself
    /// admitted after that. (On x86 the reordering a missing barrier allows is too rare for
    /// this to catch; it checks the protocol's shape on both fence paths' code.)
    #[test]
    fn no_call_is_admitted_after_unload_saw_none_in_flight() {
        crate::fence::init();
        for _ in 0..50 {
            let counters = Arc::new(Counters::new());
            let closing = Arc::new(AtomicBool::new(false));
            let closed = Arc::new(AtomicBool::new(false));
            let callers: Vec<_> = (0..2)
                .map(|_| {
                    let (counters, closing, closed) = (counters.clone(), closing.clone(), closed.clone());
                    std::thread::spawn(move || {
                        loop {
                            counters.enter();
                            if closing.load(Ordering::SeqCst) {
                                counters.leave();
                                return;
                            }
                            assert!(
                                !closed.load(Ordering::Acquire),
                                "a call was admitted after unload saw none"
                            );
                            counters.leave();
                        }
                    })
                })
                .collect();
            std::thread::yield_now();
            closing.store(true, Ordering::SeqCst);
            crate::fence::heavy().expect("barrier");
            while counters.in_flight() != 0 {
                std::thread::yield_now();
            }
            closed.store(true, Ordering::Release);
            for c in callers {
                c.join().expect("caller");
            }
            assert_eq!(counters.in_flight(), 0);
        }
    }
}
