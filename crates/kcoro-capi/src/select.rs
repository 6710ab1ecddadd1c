//! `kc_select_*`: a set of send and receive clauses over C channels, waited on with
//! kcoro's [`Select`] (register on every channel, claim exactly one winner, unregister
//! the losers). Waiting parks for timed and cancellable waits alike.
//!
//! Clause buffers: a copy-mode clause reads (send) or writes (receive) `elem_sz` bytes; a
//! pointer-mode clause reads or writes a `struct kc_chan_ptrmsg`; a zero-copy clause a
//! `kc_zdesc_t`. Clauses are numbered in the order they were added, from 0. Order is
//! biased: when several are ready, the lowest index wins.

use std::ffi::{c_int, c_long, c_void};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::time::Duration;

use kcoro::chan::{ChanError, Select};
use kcoro::zcopy::ZDesc;

use crate::cancel::{self, KcCancel};
use crate::chan::{Chan, Ends, KcChan, chan, put};
use crate::elem::{Elem, PtrMsg};
use crate::error::Error;
use crate::ffi;
use crate::handle::{self, Handle, Tagged};
use crate::region;

/// Most clauses one select may hold; more is surely a bug in the caller's loop.
pub const MAX_CLAUSES: usize = 1024;

#[derive(Clone, Copy)]
struct Clause {
    ch: *mut KcChan,
    send: bool,
    buf: *mut c_void,
}

/// What a `kc_select_t *` points to.
///
/// The clause list's lock is never held across a wait: a wait copies the clauses, and
/// `waiting` admits one wait at a time (a lock held while parked would block the worker
/// of any other coroutine that touched the select, the waiter's own worker included).
pub struct Sel {
    cancel: *const KcCancel,
    clauses: Mutex<Vec<Clause>>,
    waiting: AtomicBool,
}

/// A wait in progress on a select; the select is free again when it drops.
struct Waiting<'a>(&'a AtomicBool);

impl<'a> Waiting<'a> {
    fn enter(s: &'a Sel) -> Result<Self, Error> {
        match s.waiting.compare_exchange(false, true, Acquire, Relaxed) {
            Ok(_) => Ok(Waiting(&s.waiting)),
            Err(_) => Err(Error::Busy("another kc_select_wait on this select has not returned")),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.store(false, Release);
    }
}

// SAFETY: the raw pointers are C handles and buffers the caller keeps valid while the
// select is used (the C contract); the library only dereferences them inside calls.
unsafe impl Send for Sel {}
// SAFETY: as above; the clause list is behind a mutex.
unsafe impl Sync for Sel {}

impl Handle for Sel {
    const MAGIC: u64 = 0x6b63_5f73_656c_6531; // "kc_sele1"
    const WHAT: &'static str = "kc_select_t";
}

/// The C handle type.
pub type KcSelect = Tagged<Sel>;

/// `int kc_select_create(kc_select_t **out, const kc_cancel_t *cancel)`.
///
/// # Safety
/// `out` NULL or writable; `cancel` NULL or live for as long as the select is used.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_select_create(out: *mut *mut KcSelect, cancel: *const KcCancel) -> c_int {
    ffi::int(|| {
        if out.is_null() {
            return Err(Error::Invalid("out is NULL"));
        }
        // SAFETY: the C contract above; checked now so a bad token fails early.
        unsafe { cancel::optional(cancel) }?;
        let h = handle::into_raw(Sel {
            cancel,
            clauses: Mutex::new(Vec::new()),
            waiting: AtomicBool::new(false),
        });
        // SAFETY: checked non-null.
        unsafe { out.write(h) };
        Ok(0)
    })
}

/// Frees the select (not its channels).
///
/// # Safety
/// `s` NULL or live, not in a wait.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_select_destroy(s: *mut KcSelect) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { handle::destroy(s) })
}

/// Removes every clause.
///
/// # Safety
/// `s` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_select_reset(s: *mut KcSelect) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { handle::get(s) }.map(|s| lock(s).clear()))
}

fn lock(s: &Sel) -> std::sync::MutexGuard<'_, Vec<Clause>> {
    s.clauses.lock().unwrap_or_else(|e| e.into_inner())
}

/// # Safety
/// `s`, `ch` NULL or live.
unsafe fn add(s: *mut KcSelect, ch: *mut KcChan, send: bool, buf: *mut c_void) -> Result<c_int, Error> {
    // SAFETY: forwarded contract.
    let (s, _) = unsafe { (handle::get(s)?, chan(ch)?) };
    if buf.is_null() {
        return Err(Error::Invalid("clause buffer is NULL"));
    }
    if s.waiting.load(Acquire) {
        return Err(Error::Busy("a kc_select_wait on this select has not returned"));
    }
    let mut cl = lock(s);
    if cl.len() >= MAX_CLAUSES {
        return Err(Error::Invalid("too many select clauses"));
    }
    cl.push(Clause { ch, send, buf });
    Ok(0)
}

/// Adds a receive clause: on winning, the element is written to `out`. Returns 0.
///
/// # Safety
/// `s`, `ch` live; `out` writable for the clause's element until the wait returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_select_add_recv(s: *mut KcSelect, ch: *mut KcChan, out: *mut c_void) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { add(s, ch, false, out) })
}

/// Adds a send clause: the element is read from `msg` when the select waits. Returns 0.
///
/// # Safety
/// `s`, `ch` live; `msg` readable for the clause's element until the wait returns.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_select_add_send(s: *mut KcSelect, ch: *mut KcChan, msg: *const c_void) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { add(s, ch, true, msg.cast_mut()) })
}

/// The typed end a clause uses, so one `match` arm per element type serves add and take.
enum End<'a> {
    Copy(&'a Chan),
    Ptr(&'a crate::chan::Pair<PtrMsg>),
    Desc(&'a crate::chan::Pair<ZDesc>),
}

fn end_of(ch: &Chan) -> End<'_> {
    match (ch.zc.get(), &ch.ends) {
        (Some(p), _) => End::Desc(p),
        (None, Ends::Ptr(p)) => End::Ptr(p),
        (None, _) => End::Copy(ch),
    }
}

/// Waits for one clause. Returns 0 with `*selected_index` (from 0) and `*op_result` (0, or
/// `KC_EPIPE` if the winning clause found its channel closed); or, with `*selected_index`
/// = -1, `KC_EAGAIN` (timeout 0, nothing ready), `KC_ETIME`, `KC_ECANCELED`; `-EINVAL`
/// for an empty select.
///
/// # Safety
/// `s` live with live clauses; the out-pointers NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_select_wait(
    s: *mut KcSelect,
    timeout_ms: c_long,
    selected_index: *mut c_int,
    op_result: *mut c_int,
) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        unsafe { ffi::store(selected_index, -1) };
        // SAFETY: the C contract above.
        let s = unsafe { handle::get(s) }?;
        let _waiting = Waiting::enter(s)?;
        let clauses: Vec<Clause> = lock(s).clone();
        if clauses.is_empty() {
            return Err(Error::Invalid("empty select"));
        }
        // SAFETY: checked when the select was made; live by the C contract.
        let token = unsafe { cancel::optional(s.cancel) }?;
        if token.is_some_and(|t| t.is_cancelled()) {
            return Err(ChanError::Canceled.into());
        }
        // SAFETY: each clause's channel was live when added and, by the C contract, is
        // still; the references do not outlive this call.
        let chans: Vec<&Chan> = clauses.iter().map(|c| unsafe { chan(c.ch) }).collect::<Result<_, _>>()?;
        let mut sel = Select::new();
        // Descriptors counted in flight by send clauses: all but a delivered one go back.
        let mut held: Vec<(usize, ZDesc)> = Vec::new();
        for (index, (c, ch)) in clauses.iter().zip(&chans).enumerate() {
            match (end_of(ch), c.send) {
                (End::Copy(ch), false) => crate::chan::each_pair!(&ch.ends, p => sel.recv(&p.rx)),
                (End::Copy(ch), true) => {
                    let (src, n) = (c.buf.cast::<u8>().cast_const(), ch.elem_sz);
                    match &ch.ends {
                        // SAFETY: a send clause's buffer is readable for `elem_sz` bytes
                        // (C contract), and `elem_sz` picked the variant.
                        Ends::Small(p) => sel.send(&p.tx, unsafe { Elem::read(src, n) }),
                        // SAFETY: as above.
                        Ends::Medium(p) => sel.send(&p.tx, unsafe { Elem::read(src, n) }),
                        // SAFETY: as above.
                        Ends::Large(p) => sel.send(&p.tx, unsafe { Elem::read(src, n) }),
                        Ends::Ptr(_) => unreachable!("kc_select_wait: end_of sorted pointer channels out"),
                    }
                }
                (End::Ptr(p), false) => sel.recv(&p.rx),
                // SAFETY: a pointer clause's buffer is a readable `struct kc_chan_ptrmsg`.
                (End::Ptr(p), true) => sel.send(&p.tx, unsafe { c.buf.cast::<PtrMsg>().read_unaligned() }),
                (End::Desc(p), false) => sel.recv(&p.rx),
                (End::Desc(p), true) => {
                    // SAFETY: a zero-copy clause's buffer is a readable `kc_zdesc_t`.
                    let mut d = unsafe { c.buf.cast::<ZDesc>().read_unaligned() };
                    if let Err(e) = region::hold(&mut d) {
                        held.iter().for_each(|(_, d)| region::release(d));
                        return Err(e);
                    }
                    held.push((index, d));
                    sel.send(&p.tx, d)
                }
            };
        }
        if let Some(t) = token {
            sel.cancel_on(t);
        }
        if timeout_ms > 0 {
            sel.timeout(Duration::from_millis(timeout_ms as u64));
        }
        let op = match if timeout_ms == 0 { sel.try_wait() } else { sel.wait() } {
            Ok(op) => op,
            Err(e) => {
                held.iter().for_each(|(_, d)| region::release(d));
                return Err(e.into());
            }
        };
        let i = op.index();
        let (c, ch) = (&clauses[i], chans[i]);
        let res: Result<(), ChanError> = match (end_of(ch), c.send) {
            (End::Copy(ch), false) => match &ch.ends {
                // SAFETY: a receive clause's buffer is writable for `elem_sz` bytes (the C
                // contract); every element was read with as many.
                Ends::Small(p) => op.recv(&p.rx).map(|v| unsafe { put(v, c.buf, ch.elem_sz) }),
                // SAFETY: as above.
                Ends::Medium(p) => op.recv(&p.rx).map(|v| unsafe { put(v, c.buf, ch.elem_sz) }),
                // SAFETY: as above.
                Ends::Large(p) => op.recv(&p.rx).map(|v| unsafe { put(v, c.buf, ch.elem_sz) }),
                Ends::Ptr(_) => unreachable!("kc_select_wait: end_of sorted pointer channels out"),
            },
            (End::Copy(ch), true) => {
                crate::chan::each_pair!(&ch.ends, p => op.send(&p.tx).map_err(|e| e.kind()))
            }
            (End::Ptr(p), false) => {
                // SAFETY: a pointer clause's buffer is a writable `struct kc_chan_ptrmsg`.
                op.recv(&p.rx).map(|m| unsafe { c.buf.cast::<PtrMsg>().write_unaligned(m) })
            }
            (End::Ptr(p), true) => op.send(&p.tx).map_err(|e| e.kind()),
            (End::Desc(p), false) => op.recv(&p.rx).map(|mut d| {
                region::arrive(&mut d);
                // SAFETY: a zero-copy clause's buffer is a writable `kc_zdesc_t`.
                unsafe { c.buf.cast::<ZDesc>().write_unaligned(d) }
            }),
            (End::Desc(p), true) => op.send(&p.tx).map_err(|e| e.kind()),
        };
        let delivered = if res.is_ok() && c.send { Some(i) } else { None };
        held.iter().filter(|(k, _)| Some(*k) != delivered).for_each(|(_, d)| region::release(d));
        // SAFETY: the C contract above.
        unsafe {
            ffi::store(selected_index, i as c_int);
            ffi::store(op_result, res.map_or_else(|e| e.code(), |()| 0));
        }
        Ok(0)
    })
}
