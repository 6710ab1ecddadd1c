//! The `host_ctx` every plugin receives: a small gate in front of the host context, never
//! freed, so a plugin thread that calls back after its plugin was unloaded finds it there.
//!
//! # Why a gate
//! A plugin may keep threads running past `shutdown` (nylon-ring's Go SDK does not join
//! its goroutines) and call `send_result` from them at any time. The host context behind
//! those calls (the sid table, the counters) belongs to the loaded instance and is freed
//! with it. So the pointer the plugin holds is not the context but this gate, which is
//! leaked: about 1 KiB per loaded instance, for the life of the process.
//!
//! # Protocol
//! 1. *Enter* (a callback from a thread that is not inside a host → plugin call of this
//!    instance): add 1 to this thread's stripe (SeqCst), then read `retired` (SeqCst). If
//!    retired, take the 1 back, count the call in `late` and touch nothing else;
//!    otherwise use `ctx` and take the 1 back when done ([`Entered`]'s drop, Release).
//! 2. *Retire* (when the instance is dropped, after `shutdown`): store `retired` (SeqCst),
//!    then wait until each stripe has been seen at 0 once, then clear `ctx`. Only then is
//!    the context freed.
//!
//! Why it is enough: the four SeqCst operations are totally ordered. A callback that read
//! `retired == false` did so before the store, so its increment came before the
//! retirer's reads of the stripes: they see it until the callback leaves. A callback that
//! enters later sees `retired` and leaves without touching `ctx`. A stripe seen at 0 has
//! no callback inside past the check (late callbacks only bounce through it), so a steady
//! stream of bouncing callbacks cannot hold retirement up for long.
//!
//! A callback made on a thread that is inside a host → plugin call of the same instance
//! (a reply sent from inside `handle`) skips the gate: that call holds the instance, so
//! its context is alive ([`crate::ctx`]'s thread-local `SYNC`).
//!
//! # Layout
//! `#[repr(C)]` with nylon-ring's state table ([`NyHostExt`]) at byte 24, where
//! nylon-ring-host keeps the same table inside its own context: a nylon-ring plugin that
//! reaches state with `NylonRingHost::get_host_ext(host_ctx)` (which adds that offset to
//! `host_ctx`) finds kcoro's. The early nylon-ring-hosts kept a pointer to a seed-shaped
//! table instead, at byte 48 (6-slot era) or 80 (3-slot era): both hold one. These
//! offsets are nylon-ring-host's private layout (0.1.4 and 0.2.2, and the early commits,
//! built by rustc 1.95), not ABI; `tests/nylon.rs` checks the first against a plugin
//! linked with nylon-ring-host 0.1.4 and 0.2.2.
//!
//! ```text
//!  0 ctx: *HostCtx   8 retired   16 late   24 NyHostExt { set_state, get_state }   40 pad
//!  48 &NrHostExt (6-slot era)   56 pad   80 &NrHostExt (3-slot era)   88 pad
//!  128 stripes[STRIPES], one cache line each
//! ```

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kcoro_abi::NrHostExt;
use kcoro_abi::nylon::NyHostExt;

use crate::ctx::HostCtx;
use crate::thread_slot;

/// Stripes of the in-callback count: threads spread over them so concurrent callbacks of
/// one plugin seldom share a cache line.
const STRIPES: usize = 8;

/// Where nylon-ring-host 0.1.4 / 0.2.2 keep their `NrHostExt` inside `host_ctx`.
pub(crate) const NYLON_HOST_EXT_OFFSET: usize = 24;

/// Where nylon-ring-host kept a *pointer* to its (seed-shaped) `NrHostExt` inside
/// `host_ctx` in the 6-slot era (30 November – 6 December 2025) and in the 3-slot era
/// (29–30 November 2025).
pub(crate) const EARLY_6SLOT_EXT_OFFSET: usize = 48;
pub(crate) const EARLY_3SLOT_EXT_OFFSET: usize = 80;

#[repr(C, align(128))]
struct Stripe(AtomicU64);

#[repr(C)]
pub(crate) struct Gate {
    /// The live context; null before init and after retirement.
    ctx: AtomicPtr<HostCtx>,
    /// Set once: the instance is gone, callbacks bounce.
    retired: AtomicBool,
    /// Callbacks that bounced off the retired gate.
    late: AtomicU64,
    /// nylon-ring's state functions, at [`NYLON_HOST_EXT_OFFSET`].
    nylon_ext: NyHostExt,
    _pad0: u64,
    /// The early layouts' state table, at [`EARLY_6SLOT_EXT_OFFSET`] and
    /// [`EARLY_3SLOT_EXT_OFFSET`].
    early_ext_6slot: &'static NrHostExt,
    _pad1: [u64; 3],
    early_ext_3slot: &'static NrHostExt,
    stripes: [Stripe; STRIPES],
}

const _: () = {
    assert!(std::mem::offset_of!(Gate, nylon_ext) == NYLON_HOST_EXT_OFFSET);
    assert!(std::mem::offset_of!(Gate, early_ext_6slot) == EARLY_6SLOT_EXT_OFFSET);
    assert!(std::mem::offset_of!(Gate, early_ext_3slot) == EARLY_3SLOT_EXT_OFFSET);
};

/// A callback inside the gate: the context stays alive until this drops.
pub(crate) struct Entered {
    stripe: &'static AtomicU64,
    ctx: *const HostCtx,
}

impl Entered {
    /// The live context.
    #[inline]
    pub(crate) fn ctx(&self) -> &HostCtx {
        // SAFETY: `enter` saw the gate open, so retirement (which frees the context only
        // after seeing this stripe at 0) waits for this guard to drop.
        unsafe { &*self.ctx }
    }
}

impl Drop for Entered {
    #[inline]
    fn drop(&mut self) {
        // Release: the callback's uses of the context happen before a retirer's read of 0.
        self.stripe.fetch_sub(1, Ordering::Release);
    }
}

thread_local! {
    /// This thread's stripe, when its exclusive index has been read once.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe_index() -> usize {
    STRIPE
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(thread_slot::index().unwrap_or(0) % STRIPES);
            }
            s.get()
        })
        .unwrap_or(0)
}

impl Gate {
    /// A new gate, leaked: it lives as long as the process.
    pub(crate) fn leak(nylon_ext: NyHostExt, early_ext: &'static NrHostExt) -> &'static Gate {
        Box::leak(Box::new(Gate {
            ctx: AtomicPtr::new(std::ptr::null_mut()),
            retired: AtomicBool::new(false),
            late: AtomicU64::new(0),
            nylon_ext,
            _pad0: 0,
            early_ext_6slot: early_ext,
            _pad1: [0; 3],
            early_ext_3slot: early_ext,
            stripes: std::array::from_fn(|_| Stripe(AtomicU64::new(0))),
        }))
    }

    /// Opens the gate onto `ctx`, which must stay alive until [`Gate::retire`] returns.
    pub(crate) fn open(&self, ctx: &HostCtx) {
        self.ctx.store(ctx as *const HostCtx as *mut HostCtx, Ordering::Release);
    }

    /// The pointer plugins receive as `host_ctx`.
    pub(crate) fn as_raw(&'static self) -> *mut std::ffi::c_void {
        self as *const Gate as *mut std::ffi::c_void
    }

    /// # Safety
    /// `host_ctx` must be null or a pointer this host handed a plugin (a leaked gate).
    pub(crate) unsafe fn from_raw(host_ctx: *mut std::ffi::c_void) -> Option<&'static Gate> {
        // SAFETY: gates are leaked, so a pointer we handed out is valid forever.
        unsafe { (host_ctx as *const Gate).as_ref() }
    }

    /// Step 1 of the protocol: the context, or `None` (counted) once retired.
    #[inline]
    pub(crate) fn enter(&'static self) -> Option<Entered> {
        let stripe = &self.stripes[stripe_index()].0;
        // SeqCst, pairs with the SeqCst store in `retire`: see the module header.
        stripe.fetch_add(1, Ordering::SeqCst);
        let ctx = self.ctx.load(Ordering::Acquire);
        if self.retired.load(Ordering::SeqCst) || ctx.is_null() {
            stripe.fetch_sub(1, Ordering::Release);
            self.late.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Entered { stripe, ctx })
    }

    /// Step 2 of the protocol: closes the gate and returns once no callback is inside.
    pub(crate) fn retire(&self) {
        // SeqCst, pairs with the increments in `enter`.
        self.retired.store(true, Ordering::SeqCst);
        let start = Instant::now();
        for s in &self.stripes {
            // Acquire (on top of SeqCst): the callback's last uses of the context happen
            // before this read of 0.
            while s.0.load(Ordering::SeqCst) != 0 {
                // Callbacks inside are short: a reply being queued, or a producer waking
                // from a wait its finished sid has ended. Spin first, then sleep.
                if start.elapsed() < Duration::from_micros(50) {
                    std::hint::spin_loop();
                } else {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        self.ctx.store(std::ptr::null_mut(), Ordering::Release);
    }

    /// Whether the instance behind the gate is gone.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// Callbacks that arrived after retirement.
    pub(crate) fn late(&self) -> u64 {
        self.late.load(Ordering::Relaxed)
    }
}

/// What became of a plugin instance's late callers, readable after every handle to the
/// plugin is gone: its `host_ctx` outlives it.
#[derive(Clone, Copy)]
pub struct LateReplies(pub(crate) &'static Gate);

impl LateReplies {
    /// Callbacks (replies, frames, state calls) the plugin made after the instance was
    /// dropped: ignored, never delivered.
    pub fn count(&self) -> u64 {
        self.0.late()
    }

    /// Whether the instance has been dropped (every [`crate::Plugin`] handle to it gone,
    /// after its `shutdown`).
    pub fn is_retired(&self) -> bool {
        self.0.is_retired()
    }
}

impl std::fmt::Debug for LateReplies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateReplies")
            .field("retired", &self.is_retired())
            .field("count", &self.count())
            .finish()
    }
}
