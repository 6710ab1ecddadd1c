//! `kc_bench_chan_start`/`kc_bench_chan_stop` (`kcoro_bench.h`): a channel under load from
//! producer and consumer coroutines on the default scheduler, for programs that measure
//! it from outside (`kc_chan_snapshot` and `kc_chan_compute_rate` on the returned channel).
//!
//! Producers send `packets_per_cycle` packets of `packet_size` bytes (copy mode) or
//! `(ptr, packet_size)` pairs (pointer mode), then spin `spin_iters` times (simulated work
//! between bursts) and yield, until stopped; consumers receive until stopped. Every operation goes
//! through the C entry points with the bench's cancel token, so stopping is one cancel
//! that wakes every parked coroutine, then a join of each.
//!
//! # Invariants
//! - `kc_bench_chan_stop` returned ⇒ every coroutine the bench started has returned, been
//!   counted completed by its scheduler, and let go of everything it held. A wait group
//!   counted down from inside the coroutines is not enough: it wakes the stopper while the
//!   coroutine still holds the group and its join slot, and a program that stops and exits
//!   at once then leaks them (LeakSanitizer saw it under load).

use std::ffi::{c_int, c_void};
use std::sync::Mutex;

use kcoro::JoinHandle;
use kcoro::sync::CancelToken;

use crate::cancel::{Cancel, KcCancel};
use crate::chan::{self, KcChan};
use crate::error::Error;
use crate::ffi;
use crate::handle::{self, Handle, Tagged};
use crate::layout::KcBenchParams;
use crate::sched::{self, Spawn};

/// Most producers or consumers one bench starts.
const MAX_SIDE: c_int = 1024;
/// Most bytes of packet buffers one bench run fills (one buffer per party).
const MAX_PACKET_BYTES: usize = 256 << 20;

/// What a `kc_bench_handle_t *` points to.
pub struct Bench {
    /// The channel under load; owned, freed by stop.
    chan: *mut KcChan,
    /// The token every operation of the bench uses; owned.
    token: *mut KcCancel,
    /// One per coroutine started; taken and joined by stop.
    joins: Mutex<Vec<JoinHandle<()>>>,
}

impl Handle for Bench {
    const MAGIC: u64 = 0x6b63_5f62_656e_6331; // "kc_benc1"
    const WHAT: &'static str = "kc_bench_handle_t";
}

/// The C handle type.
pub type KcBench = Tagged<Bench>;

impl Drop for Bench {
    fn drop(&mut self) {
        // SAFETY: both were made by `kc_bench_chan_start`; every coroutine using them
        // was joined before the bench is dropped (stop, or a start that failed).
        unsafe {
            let _ = handle::destroy(self.chan);
            let _ = handle::destroy(self.token);
        }
    }
}

/// One producer or consumer: its side, its packet buffer and the shared handles.
struct Worker {
    ch: *mut KcChan,
    token: *const KcCancel,
    buf: Vec<u8>,
    pointer_mode: bool,
    per_cycle: c_int,
    spin: c_int,
}

// SAFETY: the handles are `Sync` library objects that outlive the coroutine (stop joins
// it before freeing them); the buffer is owned.
unsafe impl Send for Worker {}

impl Worker {
    fn produce(mut self) {
        let len = self.buf.len();
        let p = self.buf.as_mut_ptr();
        loop {
            for _ in 0..self.per_cycle {
                // SAFETY: live handles (see `Send`); `p` holds `len` bytes (the element size
                // in copy mode; never dereferenced in pointer mode).
                let rc = unsafe {
                    if self.pointer_mode {
                        chan::kc_chan_send_ptr_c(self.ch, p.cast(), len, -1, self.token)
                    } else {
                        chan::kc_chan_send_c(self.ch, p.cast_const().cast(), -1, self.token)
                    }
                };
                if rc != 0 {
                    return;
                }
            }
            for _ in 0..self.spin {
                std::hint::spin_loop();
            }
            // Scheduling is cooperative: a producer on a channel whose sends never wait
            // (unlimited, conflated) would otherwise keep its worker from the consumers.
            kcoro::yield_now();
        }
    }

    fn consume(mut self) {
        let p = self.buf.as_mut_ptr();
        let mut got: *mut c_void = std::ptr::null_mut();
        let mut len = 0usize;
        loop {
            // SAFETY: live handles; `p` holds the element size; `got`/`len` are ours.
            let rc = unsafe {
                if self.pointer_mode {
                    chan::kc_chan_recv_ptr_c(self.ch, &mut got, &mut len, -1, self.token)
                } else {
                    chan::kc_chan_recv_c(self.ch, p.cast(), -1, self.token)
                }
            };
            if rc != 0 {
                return;
            }
        }
    }
}

fn start(p: &KcBenchParams) -> Result<*mut KcBench, Error> {
    if !(0..=MAX_SIDE).contains(&p.producers) || !(0..=MAX_SIDE).contains(&p.consumers) {
        return Err(Error::Invalid("producers and consumers must be 0..=1024"));
    }
    // Each party fills a packet buffer when it starts: bounded in both modes, as a copy
    // channel bounds its elements, and in total.
    if p.packet_size > crate::chan::MAX_ELEM_SZ {
        return Err(Error::Invalid("packet_size is past 16 MiB"));
    }
    let parties = (p.producers + p.consumers) as usize;
    if parties.saturating_mul(p.packet_size.max(1)) > MAX_PACKET_BYTES {
        return Err(Error::Invalid("packet_size times parties is past 256 MiB"));
    }
    let pointer_mode = p.pointer_mode != 0;
    let chan = if pointer_mode {
        crate::chan::Chan::new_ptr(p.kind, p.capacity)?
    } else {
        crate::chan::Chan::new_copy(p.kind, p.packet_size, p.capacity)?
    };
    let sched = sched::kc_sched_default();
    if sched.is_null() {
        return Err(Error::NoMemory);
    }
    let token = CancelToken::new();
    let bench = Bench {
        chan: handle::into_raw(chan),
        token: handle::into_raw(Cancel(token.clone())),
        joins: Mutex::new(Vec::new()),
    };
    let worker = || Worker {
        ch: bench.chan,
        token: bench.token,
        buf: vec![0xa5; p.packet_size.max(1)],
        pointer_mode,
        per_cycle: p.packets_per_cycle.max(1),
        spin: p.spin_iters.max(0),
    };
    let how = || Spawn { token: Some(token.clone()), want_join: true, ..Spawn::default() };
    let sides = (0..p.producers).map(|_| true).chain((0..p.consumers).map(|_| false));
    let mut started = Ok(());
    for produce in sides {
        let w = worker();
        let body = move || if produce { w.produce() } else { w.consume() };
        match sched::spawn_body(sched, how(), body) {
            Ok(s) => bench.joins.lock().unwrap_or_else(|e| e.into_inner()).extend(s.join),
            Err(e) => {
                started = Err(e);
                break;
            }
        }
    }
    if let Err(e) = started {
        stop(&bench);
        return Err(e);
    }
    Ok(handle::into_raw(bench))
}

/// Cancels every coroutine of the bench and joins each, so none outlives the handles it
/// uses (a join cannot be cancelled: the caller's own token does not cut it short).
fn stop(b: &Bench) {
    // SAFETY: made by `start`, freed only when the bench is dropped.
    if let Ok(c) = unsafe { handle::get(b.token) } {
        c.0.cancel();
    }
    let joins = std::mem::take(&mut *b.joins.lock().unwrap_or_else(|e| e.into_inner()));
    for j in joins {
        // Err only if the coroutine panicked or was dropped unstarted at a runtime's
        // shutdown: either way it holds nothing any more.
        let _ = j.join();
    }
}

/// Starts `producers` + `consumers` coroutines on a new channel (`kind`, `capacity`;
/// `packet_size`-byte elements, or pointer mode), and returns the handle and the channel.
/// The channel belongs to the handle: read it (snapshots, rates), do not destroy it.
/// `packets_per_cycle` ≤ 0 counts as 1. `-EINVAL` for NULL pointers, more than 1024 on a
/// side, or a channel `kc_chan_make` would refuse.
///
/// # Safety
/// `p` NULL or readable; `out_handle`, `out_chan` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_bench_chan_start(
    p: *const KcBenchParams,
    out_handle: *mut *mut KcBench,
    out_chan: *mut *mut KcChan,
) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let p = unsafe { p.as_ref() }.ok_or(Error::Invalid("params are NULL"))?;
        if out_handle.is_null() || out_chan.is_null() {
            return Err(Error::Invalid("out pointer is NULL"));
        }
        let b = start(p)?;
        // SAFETY: `b` is the live handle just made.
        let chan = unsafe { handle::get(b) }?.chan;
        // SAFETY: checked non-null above.
        unsafe {
            out_chan.write(chan);
            out_handle.write(b);
        }
        Ok(0)
    })
}

/// Stops the bench: cancels its coroutines, waits for them, frees the channel and the
/// handle. Not from one of the bench's coroutines.
///
/// # Safety
/// `h` NULL (ignored) or live; neither it nor its channel is used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_bench_chan_stop(h: *mut KcBench) {
    ffi::void(|| {
        // SAFETY: the C contract above.
        stop(unsafe { handle::get(h) }?);
        // SAFETY: the C contract above; every coroutine was joined.
        unsafe { handle::destroy(h) }
    })
}
