//! The host context a plugin receives as `host_ctx`, and the callbacks it calls.
//!
//! Every callback is an `extern "C"` function behind `catch_unwind`; every one checks the
//! sid's generation first, so a reply for an unknown or finished sid is counted and
//! dropped. A plugin that replies inside `handle`, on the calling thread, takes the fast
//! path: the reply goes to the caller's stack through a thread-local, with no lock and no
//! wake-up.

use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use kcoro_abi::{KcHostApi, KcReleaseFn, NrBytes, NrHostExt, NrHostVTable, NrStatus, NrStr};

use crate::library::Library;
use crate::metrics::{Counter, Counters};
use crate::payload::{Frame, Owned, Payload};
use crate::table::{Kind, SidTable};

/// The sid of fire-and-forget calls: never allocated, its replies are discarded silently.
pub(crate) const NO_SID: u64 = 0;

pub(crate) struct HostCtx {
    pub(crate) table: SidTable,
    pub(crate) counters: Counters,
    pub(crate) vtable: NrHostVTable,
    pub(crate) api: KcHostApi,
    /// Keeps the plugin's code mapped while any of its owned buffers is alive.
    pub(crate) lib: Arc<Library>,
}

/// The call this thread is inside a plugin function for: replies and frames for it go
/// straight to the caller's memory, with no lock.
#[derive(Clone, Copy)]
struct SyncCall {
    ctx: *const HostCtx,
    sid: u64,
    reply: *mut Option<Frame>,
    frames: *mut LocalFrames,
}

/// Frames a stream's reader holds outside the slot: those sent on the reader's own thread
/// during a host → plugin call, and batches it drained from the slot.
#[derive(Default)]
pub(crate) struct LocalFrames {
    pub(crate) queue: std::collections::VecDeque<Frame>,
    /// A terminal frame went into `queue`.
    pub(crate) ended: bool,
}

thread_local! {
    static SYNC: Cell<SyncCall> = const {
        Cell::new(SyncCall {
            ctx: std::ptr::null(),
            sid: 0,
            reply: std::ptr::null_mut(),
            frames: std::ptr::null_mut(),
        })
    };
    /// Depth of host → plugin calls on this thread. A plugin sending from inside one must
    /// never be made to wait for room: the reader may be this very thread.
    static IN_CALL: Cell<u32> = const { Cell::new(0) };
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
        let prev = SYNC.with(|s| s.replace(SyncCall { ctx, sid, reply, frames: std::ptr::null_mut() }));
        InCall { prev }
    }

    /// For a stream: frames for `sid` sent during the call land in `frames`.
    #[inline]
    pub(crate) fn enter_stream(ctx: &HostCtx, sid: u64, frames: &mut LocalFrames) -> InCall {
        IN_CALL.with(|d| d.set(d.get() + 1));
        let prev = SYNC.with(|s| s.replace(SyncCall { ctx, sid, reply: std::ptr::null_mut(), frames }));
        InCall { prev }
    }
}

impl Drop for InCall {
    fn drop(&mut self) {
        SYNC.with(|s| s.set(self.prev));
        IN_CALL.with(|d| d.set(d.get() - 1));
    }
}

/// Where a frame's bytes come from.
enum Source<'a> {
    Borrowed(&'a [u8]),
    Owned(Owned),
}

impl Source<'_> {
    fn into_payload(self) -> Payload {
        match self {
            Source::Borrowed([]) => Payload::empty(),
            Source::Borrowed(b) => Payload::from(b.to_vec()),
            Source::Owned(o) => Payload::owned(o),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Full {
    /// Wait for room (version-1 `send_result` from a plugin thread).
    Wait,
    /// Return `Backpressure` (`try_send`, `send_owned`).
    Refuse,
}

impl HostCtx {
    pub(crate) fn new(lib: Arc<Library>) -> HostCtx {
        HostCtx {
            table: SidTable::new(),
            counters: Counters::new(),
            vtable: NrHostVTable { send_result },
            api: KcHostApi {
                struct_size: std::mem::size_of::<KcHostApi>() as u32,
                flags: 0,
                state: NrHostExt { set_state, get_state },
                send_owned,
                try_send,
                _reserved: [0; 4],
            },
            lib,
        }
    }

    /// The pointer plugins receive as `host_ctx`.
    pub(crate) fn as_raw(&self) -> *mut c_void {
        self as *const HostCtx as *mut c_void
    }

    fn dropped(&self) -> NrStatus {
        self.counters.add(Counter::DroppedReplies, 1);
        NrStatus::Invalid
    }

    /// Routes one reply or frame to its waiter. `Ok` when taken, `Invalid` when the sid is
    /// unknown or finished (counted), `Backpressure` when refused for room (source returned).
    fn deliver<'a>(
        &self,
        sid: u64,
        status: NrStatus,
        src: Source<'a>,
        full: Full,
    ) -> (NrStatus, Option<Source<'a>>) {
        let status = status.normalized();
        if sid == NO_SID {
            return (NrStatus::Ok, None);
        }
        // Fast path: a unary reply from inside `handle` on the caller's thread.
        let sync = SYNC.with(Cell::get);
        if std::ptr::eq(sync.ctx, self) && sync.sid == sid && !sync.reply.is_null() {
            // SAFETY: `reply` points into the frame of the `InCall` owner on this thread,
            // which is still inside the plugin call that led here.
            let reply = unsafe { &mut *sync.reply };
            if reply.is_some() {
                return (self.dropped(), None);
            }
            *reply = Some(Frame { status, data: src.into_payload() });
            return (NrStatus::Ok, None);
        }
        // The same for a stream's frames sent on its reader's thread: no bound applies (the
        // reader cannot read until the call returns), and no lock is taken.
        if std::ptr::eq(sync.ctx, self) && sync.sid == sid && !sync.frames.is_null() {
            // SAFETY: `frames` points to the reader's buffer, borrowed mutably by the
            // `InCall` owner on this thread for the length of the call that led here.
            let local = unsafe { &mut *sync.frames };
            if local.ended {
                return (self.dropped(), None);
            }
            if status.is_terminal() {
                local.ended = true;
                self.counters.status(status);
            } else {
                self.counters.add(Counter::StreamFrames, 1);
            }
            local.queue.push_back(Frame { status, data: src.into_payload() });
            return (NrStatus::Ok, None);
        }
        let mut src = src;
        loop {
            let Some(mut slot) = self.table.get(sid) else { return (self.dropped(), None) };
            if slot.ended {
                return (self.dropped(), None);
            }
            let terminal = slot.kind == Kind::Unary || status.is_terminal();
            if !terminal && slot.frames.len() >= slot.cap {
                let overflow = IN_CALL.with(Cell::get) > 0;
                if !overflow {
                    self.counters.add(Counter::Backpressure, 1);
                    if full == Full::Refuse {
                        return (NrStatus::Backpressure, Some(src));
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
            let data = std::mem::replace(&mut src, Source::Borrowed(&[])).into_payload();
            slot.frames.push_back(Frame { status, data });
            let waiter = slot.waiter.take();
            drop(slot);
            if let Some(w) = waiter {
                w.unpark();
            }
            return (NrStatus::Ok, None);
        }
    }
}

/// # Safety
/// `host_ctx` must be the pointer this host handed the plugin.
unsafe fn ctx<'a>(host_ctx: *mut c_void) -> Option<&'a HostCtx> {
    // SAFETY: forwarded to the caller: a live `HostCtx` or null.
    unsafe { (host_ctx as *const HostCtx).as_ref() }
}

fn guarded<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

unsafe extern "C" fn send_result(host_ctx: *mut c_void, sid: u64, status: NrStatus, payload: NrBytes) {
    guarded((), || {
        // SAFETY: the ABI: `host_ctx` is ours.
        let Some(ctx) = (unsafe { ctx(host_ctx) }) else { return };
        // SAFETY: the ABI: `payload` is readable for this call.
        let bytes = unsafe { payload.as_slice() };
        ctx.deliver(sid, status, Source::Borrowed(bytes), Full::Wait);
    })
}

unsafe extern "C" fn try_send(
    host_ctx: *mut c_void,
    sid: u64,
    status: NrStatus,
    payload: NrBytes,
) -> NrStatus {
    guarded(NrStatus::Err, || {
        // SAFETY: the ABI: `host_ctx` is ours.
        let Some(ctx) = (unsafe { ctx(host_ctx) }) else { return NrStatus::Invalid };
        // SAFETY: the ABI: `payload` is readable for this call.
        let bytes = unsafe { payload.as_slice() };
        ctx.deliver(sid, status, Source::Borrowed(bytes), Full::Refuse).0
    })
}

unsafe extern "C" fn send_owned(
    host_ctx: *mut c_void,
    sid: u64,
    status: NrStatus,
    payload: NrBytes,
    release: Option<KcReleaseFn>,
    release_ctx: *mut c_void,
) -> NrStatus {
    guarded(NrStatus::Err, || {
        // SAFETY: the extension's contract: the buffer stays valid until released.
        let owned = unsafe { Owned::new(payload.ptr, payload.len as usize, release, release_ctx) };
        // SAFETY: the ABI: `host_ctx` is ours.
        let Some(ctx) = (unsafe { ctx(host_ctx) }) else {
            drop(owned); // unknown host: released, as promised for an unknown sid
            return NrStatus::Invalid;
        };
        let owned = owned.keep_mapped(Arc::clone(&ctx.lib));
        match ctx.deliver(sid, status, Source::Owned(owned), Full::Refuse) {
            (NrStatus::Backpressure, Some(Source::Owned(o))) => {
                o.disown();
                NrStatus::Backpressure
            }
            (s, _) => s,
        }
    })
}

unsafe extern "C" fn set_state(host_ctx: *mut c_void, sid: u64, key: NrStr, value: NrBytes) -> NrBytes {
    guarded(NrBytes::EMPTY, || {
        // SAFETY: the ABI: `host_ctx` is ours.
        let Some(ctx) = (unsafe { ctx(host_ctx) }) else { return NrBytes::EMPTY };
        let Some(mut slot) = ctx.table.get(sid) else { return NrBytes::EMPTY };
        // SAFETY: the ABI: both views are readable for this call.
        let (key, value) = unsafe { (key.as_bytes(), value.as_slice()) };
        let stored: Box<[u8]> = value.into();
        let view = NrBytes::from_slice(&stored);
        slot.state.get_or_insert_with(Default::default).insert(key.into(), stored);
        view
    })
}

unsafe extern "C" fn get_state(host_ctx: *mut c_void, sid: u64, key: NrStr) -> NrBytes {
    guarded(NrBytes::EMPTY, || {
        // SAFETY: the ABI: `host_ctx` is ours.
        let Some(ctx) = (unsafe { ctx(host_ctx) }) else { return NrBytes::EMPTY };
        let Some(slot) = ctx.table.get(sid) else { return NrBytes::EMPTY };
        // SAFETY: the ABI: the key view is readable for this call.
        let key = unsafe { key.as_bytes() };
        // The boxed value does not move until the key is set again or the sid ends, which
        // is the lifetime the extension promises for the view.
        slot.state.as_ref().and_then(|m| m.get(key)).map_or(NrBytes::EMPTY, |v| NrBytes::from_slice(v))
    })
}
