//! The host context behind a plugin's `host_ctx`, and the one routine every reply, frame
//! and layout goes through: [`HostCtx::deliver`].
//!
//! Delivery checks the sid's generation first, so a reply for an unknown or finished sid
//! is counted and dropped. A plugin that replies inside `handle`, on the calling thread,
//! takes the fast path: the reply goes to the caller's stack through a thread-local, with
//! no lock and no wake-up. The `extern "C"` functions plugins call live in
//! [`crate::callbacks`]; they reach a context through its [`Gate`].
//!
//! # Invariants
//! - `SYNC.ctx` is non-null ⇒ this thread is inside a host → plugin call of that context's
//!   instance ([`InCall`]), which holds the instance: the context is alive.
//! - A context is freed only after its gate has retired (`Loaded`'s drop), so a callback
//!   that entered the gate may use it until it leaves.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kcoro_abi::NrStatus;

use crate::gate::Gate;
use crate::layout::Codes;
use crate::library::Library;
use crate::metrics::{Counter, Counters};
use crate::payload::{Frame, Payload};
use crate::table::{Kind, SidTable};

/// The sid of fire-and-forget calls: never allocated, its replies are discarded silently.
pub(crate) const NO_SID: u64 = 0;

pub(crate) struct HostCtx {
    pub(crate) table: SidTable,
    pub(crate) counters: Counters,
    /// What plugins hold as `host_ctx`.
    pub(crate) gate: &'static Gate,
    /// How the plugin's layout numbers statuses.
    pub(crate) codes: Codes,
    /// The plugin's code. Owned buffers hold a clone when the library may be unmapped
    /// (`unmap`), so it stays mapped until their release function has run.
    pub(crate) lib: Arc<Library>,
    /// The library is closed once the last reference goes (`LoadOptions::keep_mapped(false)`).
    pub(crate) unmap: bool,
    /// Leased reply buffers whose call ended first: the plugin may still write into them,
    /// so they are freed only by a late commit (or kept, see `Drop`).
    pub(crate) orphans: Mutex<Vec<Vec<u8>>>,
    /// Reply buffers leased to inline-only calls, which have no slot to keep them in:
    /// `(sid, buffer)`, until committed or their call returns.
    inline_leases: Mutex<Vec<(u64, Vec<u8>)>>,
    /// How many `inline_leases` holds: an inline-only call reads it (one load) when
    /// `handle` returns, and takes the lock only when some call holds one.
    inline_leases_out: AtomicUsize,
}

/// The call this thread is inside a plugin function for: replies and frames for it go
/// straight to the caller's memory, with no lock.
#[derive(Clone, Copy)]
pub(crate) struct SyncCall {
    pub(crate) gate: *const Gate,
    pub(crate) ctx: *const HostCtx,
    sid: u64,
    reply: *mut Option<Frame>,
    frames: *mut LocalFrames,
}

impl SyncCall {
    /// Where a unary reply for `sid` lands when this thread is inside `handle` of that very
    /// call on `ctx`: the caller's own slot, written without a lock.
    ///
    /// # Safety
    /// `self` must be this thread's current call ([`sync_call`]), and the reference must not
    /// outlive the plugin call that led here.
    #[inline(always)]
    pub(crate) unsafe fn reply_for<'a>(&self, ctx: &HostCtx, sid: u64) -> Option<&'a mut Option<Frame>> {
        if std::ptr::eq(self.ctx, ctx) && self.sid == sid && sid != NO_SID {
            // SAFETY: the caller's contract: `reply` points into the frame of the `InCall`
            // owner on this thread, inside the plugin call that led here (or is null).
            unsafe { self.reply.as_mut() }
        } else {
            None
        }
    }
}

const NO_CALL: SyncCall = SyncCall {
    gate: std::ptr::null(),
    ctx: std::ptr::null(),
    sid: 0,
    reply: std::ptr::null_mut(),
    frames: std::ptr::null_mut(),
};

/// Frames a stream's reader holds outside the slot: those sent on the reader's own thread
/// during a host → plugin call, and batches it drained from the slot.
#[derive(Default)]
pub(crate) struct LocalFrames {
    pub(crate) queue: std::collections::VecDeque<Frame>,
    /// A terminal frame went into `queue`.
    pub(crate) ended: bool,
}

thread_local! {
    static SYNC: Cell<SyncCall> = const { Cell::new(NO_CALL) };
    /// Depth of host → plugin calls on this thread. A plugin sending from inside one must
    /// never be made to wait for room: the reader may be this very thread.
    static IN_CALL: Cell<u32> = const { Cell::new(0) };
}

/// This thread's current host → plugin call, if any (none while the thread exits).
#[inline]
pub(crate) fn sync_call() -> SyncCall {
    SYNC.try_with(Cell::get).unwrap_or(NO_CALL)
}

/// Marks this thread as inside a call into the plugin for its lifetime.
pub(crate) struct InCall {
    prev: SyncCall,
}

impl InCall {
    /// `reply`: where a synchronous unary reply for `sid` lands, or null for streams.
    #[inline]
    pub(crate) fn enter(ctx: &HostCtx, sid: u64, reply: *mut Option<Frame>) -> InCall {
        IN_CALL.with(|d| d.set(d.get() + 1));
        let call = SyncCall { gate: ctx.gate, ctx, sid, reply, frames: std::ptr::null_mut() };
        InCall { prev: SYNC.with(|s| s.replace(call)) }
    }

    /// For a stream: frames for `sid` sent during the call land in `frames`.
    #[inline]
    pub(crate) fn enter_stream(ctx: &HostCtx, sid: u64, frames: &mut LocalFrames) -> InCall {
        IN_CALL.with(|d| d.set(d.get() + 1));
        let call = SyncCall { gate: ctx.gate, ctx, sid, reply: std::ptr::null_mut(), frames };
        InCall { prev: SYNC.with(|s| s.replace(call)) }
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        SYNC.with(|s| s.set(self.prev));
        IN_CALL.with(|d| d.set(d.get() - 1));
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// Wait for room (a version-1 `send_result` from a plugin thread).
    Wait,
    /// Return `Backpressure` (`try_send`, `send_owned`, nylon-ring's `send_result`).
    Refuse,
}

impl HostCtx {
    pub(crate) fn new(gate: &'static Gate, codes: Codes, lib: Arc<Library>, unmap: bool) -> HostCtx {
        HostCtx {
            table: SidTable::new(),
            counters: Counters::new(),
            gate,
            codes,
            lib,
            unmap,
            orphans: Mutex::new(Vec::new()),
            inline_leases: Mutex::new(Vec::new()),
            inline_leases_out: AtomicUsize::new(0),
        }
    }

    /// The library to keep mapped while a plugin buffer is held: `None` when it is never
    /// unmapped anyway (no reference count to touch per reply).
    #[inline]
    pub(crate) fn pin_lib(&self) -> Option<Arc<Library>> {
        self.unmap.then(|| Arc::clone(&self.lib))
    }

    pub(crate) fn dropped(&self) -> NrStatus {
        self.counters.add(Counter::DroppedReplies, 1);
        NrStatus::Invalid
    }

    /// Keeps a leased buffer the plugin may still write into.
    pub(crate) fn orphan(&self, lease: Vec<u8>) {
        self.orphans.lock().unwrap_or_else(|e| e.into_inner()).push(lease);
    }

    /// Frees the orphaned lease `token` names, if there is one (a late commit).
    pub(crate) fn release_orphan(&self, token: u64) -> bool {
        let mut orphans = self.orphans.lock().unwrap_or_else(|e| e.into_inner());
        let found = orphans.iter().position(|l| l.as_ptr() as u64 == token);
        found.map(|i| orphans.swap_remove(i)).is_some()
    }

    /// Keeps `buf`, leased to the inline-only call `sid`, until it is committed or the
    /// call returns.
    pub(crate) fn keep_inline_lease(&self, sid: u64, buf: Vec<u8>) {
        let mut leases = self.inline_leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.push((sid, buf));
        // Changed under the lock, with the list: the count is the list's length.
        self.inline_leases_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the inline-only call `sid` holds a leased buffer.
    pub(crate) fn has_inline_lease(&self, sid: u64) -> bool {
        self.inline_leases_out.load(Ordering::Relaxed) != 0
            && self.inline_leases.lock().unwrap_or_else(|e| e.into_inner()).iter().any(|(s, _)| *s == sid)
    }

    /// The buffer leased to `sid`, if it is `token`'s and `fits` accepts it; `None` when
    /// `sid` holds none (the call returned first), `Some(Err(()))` when the token or the
    /// length is wrong (it stays leased: a corrected commit may follow).
    pub(crate) fn take_inline_lease(
        &self,
        sid: u64,
        token: u64,
        fits: impl FnOnce(&Vec<u8>) -> bool,
    ) -> Option<Result<Vec<u8>, ()>> {
        let mut leases = self.inline_leases.lock().unwrap_or_else(|e| e.into_inner());
        let i = leases.iter().position(|(s, _)| *s == sid)?;
        if leases[i].1.as_ptr() as u64 != token || !fits(&leases[i].1) {
            return Some(Err(()));
        }
        self.inline_leases_out.fetch_sub(1, Ordering::Relaxed);
        Some(Ok(leases.swap_remove(i).1))
    }

    /// Called when the inline-only call `sid` returns: a buffer leased to it and never
    /// committed may still be written by the plugin, so it becomes an orphan.
    #[inline]
    pub(crate) fn end_inline_leases(&self, sid: u64) {
        // Relaxed: a lease this call took was counted on this thread, before this load.
        if self.inline_leases_out.load(Ordering::Relaxed) != 0 {
            self.orphan_inline_leases(sid);
        }
    }

    #[cold]
    fn orphan_inline_leases(&self, sid: u64) {
        let mut leases = self.inline_leases.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(i) = leases.iter().position(|(s, _)| *s == sid) {
            let (_, buf) = leases.swap_remove(i);
            self.inline_leases_out.fetch_sub(1, Ordering::Relaxed);
            self.orphan(buf);
        }
    }

    /// Routes one reply or frame to its waiter. `status` is already in kcoro's numbering.
    /// `Ok(Ok)` when taken, `Ok(Invalid)` when the sid is unknown or finished (counted; the
    /// data is dropped), `Err(data)` when refused for room (`Backpressure`).
    ///
    /// `data` builds the [`Payload`] (24 bytes: copied bytes or a boxed plugin buffer) and
    /// is called where the payload is stored. Both steps matter on the fast path: moving a
    /// larger source through here cost more than the copy it saved, and a payload built on
    /// the stack first was written field by field and read back as one wide load (a
    /// store-forwarding stall) on every reply. Always inlined into the callbacks; the slot
    /// path stays out of line.
    #[inline(always)]
    pub(crate) fn deliver(
        &self,
        sid: u64,
        status: NrStatus,
        data: impl FnOnce() -> Payload,
        full: Full,
    ) -> Result<NrStatus, Payload> {
        if sid == NO_SID {
            drop(data()); // discarded, and a plugin buffer released
            return Ok(NrStatus::Ok);
        }
        // Fast path: a unary reply from inside `handle` on the caller's thread.
        let sync = sync_call();
        if std::ptr::eq(sync.ctx, self) && sync.sid == sid && !sync.reply.is_null() {
            // SAFETY: `reply` points into the frame of the `InCall` owner on this thread,
            // which is still inside the plugin call that led here.
            let reply = unsafe { &mut *sync.reply };
            if reply.is_some() {
                drop(data());
                return Ok(self.dropped());
            }
            *reply = Some(Frame { status, data: data() });
            return Ok(NrStatus::Ok);
        }
        // The same for a stream's frames sent on its reader's thread: no bound applies (the
        // reader cannot read until the call returns), and no lock is taken.
        if std::ptr::eq(sync.ctx, self) && sync.sid == sid && !sync.frames.is_null() {
            // SAFETY: `frames` points to the reader's buffer, borrowed mutably by the
            // `InCall` owner on this thread for the length of the call that led here.
            let local = unsafe { &mut *sync.frames };
            if local.ended {
                drop(data());
                return Ok(self.dropped());
            }
            if status.is_terminal() {
                local.ended = true;
                self.counters.status(status);
            } else {
                self.counters.add(Counter::StreamFrames, 1);
            }
            local.queue.push_back(Frame { status, data: data() });
            return Ok(NrStatus::Ok);
        }
        self.deliver_to_slot(sid, status, data(), full)
    }

    /// [`HostCtx::deliver`] for a reply from another thread: through the sid's slot.
    #[inline(never)]
    fn deliver_to_slot(
        &self,
        sid: u64,
        status: NrStatus,
        data: Payload,
        full: Full,
    ) -> Result<NrStatus, Payload> {
        loop {
            let Some(mut slot) = self.table.get(sid) else { return Ok(self.dropped()) };
            if slot.ended {
                return Ok(self.dropped());
            }
            let terminal = slot.kind == Kind::Unary || status.is_terminal();
            if !terminal && slot.frames.len() >= slot.cap {
                let overflow = IN_CALL.try_with(Cell::get).unwrap_or(0) > 0;
                if !overflow {
                    self.counters.add(Counter::Backpressure, 1);
                    if full == Full::Refuse {
                        return Err(data);
                    }
                    slot.producers.push(kcoro::park::current());
                    drop(slot);
                    kcoro::park::park();
                    continue;
                }
            }
            if slot.kind == Kind::Stream && !status.is_terminal() {
                self.counters.add(Counter::StreamFrames, 1);
            } else if slot.kind == Kind::Stream {
                self.counters.status(status);
            }
            slot.ended = terminal;
            slot.frames.push_back(Frame { status, data });
            let waiter = slot.waiter.take();
            drop(slot);
            if let Some(w) = waiter {
                w.unpark();
            }
            return Ok(NrStatus::Ok);
        }
    }
}

impl Drop for HostCtx {
    fn drop(&mut self) {
        // An orphaned lease may still be written by a plugin thread that outlived its
        // plugin (nothing stops it while the library stays mapped): keep its memory. With
        // `keep_mapped(false)` the plugin promised to run nothing after `shutdown`.
        let orphans = std::mem::take(self.orphans.get_mut().unwrap_or_else(|e| e.into_inner()));
        // Every inline-only call orphans its leases when it returns, so this is empty
        // unless one never returned; kept under the same rule if not.
        let inline = std::mem::take(self.inline_leases.get_mut().unwrap_or_else(|e| e.into_inner()));
        if !self.unmap {
            std::mem::forget(orphans);
            std::mem::forget(inline);
        }
    }
}
