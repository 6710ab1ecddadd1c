//! Per-plugin counters, striped across cache lines so two workers calling the same plugin
//! do not bounce one line between them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

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
const STRIPES: usize = 16;

#[repr(align(128))]
struct Stripe([AtomicU64; SLOTS]);

pub(crate) struct Counters {
    stripes: Box<[Stripe]>,
}

fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static INDEX: Cell<usize> = const { Cell::new(usize::MAX) });
    INDEX.with(|i| {
        if i.get() == usize::MAX {
            i.set(NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES);
        }
        i.get()
    })
}

impl Counters {
    pub(crate) fn new() -> Counters {
        Counters {
            stripes: (0..STRIPES).map(|_| Stripe(std::array::from_fn(|_| AtomicU64::new(0)))).collect(),
        }
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        &self.stripes[stripe_index()].0[i]
    }

    pub(crate) fn add(&self, c: Counter, n: u64) {
        self.slot(c as usize).fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a completed call or terminal frame by its (normalized) status.
    pub(crate) fn status(&self, s: NrStatus) {
        self.slot(Counter::StatusBase as usize + s.normalized().0 as usize).fetch_add(1, Ordering::Relaxed);
    }

    /// The in-flight gauge is `Entered - Left`; both sides use SeqCst so that unload's
    /// "set closing, then read the gauge" cannot miss a call that entered before it.
    pub(crate) fn enter(&self) {
        self.slot(Counter::Entered as usize).fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn leave(&self) {
        self.slot(Counter::Left as usize).fetch_add(1, Ordering::SeqCst);
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
        let get = |c: Counter| self.sum(c as usize, Ordering::Relaxed);
        let mut by_status = [0; STATUSES];
        for (i, n) in by_status.iter_mut().enumerate() {
            *n = self.sum(Counter::StatusBase as usize + i, Ordering::Relaxed);
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
