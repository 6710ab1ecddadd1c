//! `kc_chan_*`: kcoro channels of fixed-size byte elements (copy mode) or of `(ptr, len)`
//! pairs (pointer mode), and the zero-copy descriptors of [`crate::zcopy`]'s entry points.
//!
//! A `kc_chan_t *` is a [`Tagged`]`<`[`Chan`]`>`: both ends of one kcoro channel, the
//! shape C asked for, and the undelivered-element callbacks. Waiting is kcoro's: from a
//! scheduler coroutine the coroutine parks, from a plain thread the thread parks; timed
//! waits use the timer wheel (or `park_timeout`) and a cancel token wakes its waiter at
//! once. Nothing polls.
//!
//! # Invariants
//! - `ptr_mode` ⇔ `ends` is `Ends::Ptr`; copy operations on it, or pointer operations
//!   on a copy channel, are `-EINVAL`.
//! - `zc` set ⇒ the channel moves descriptors only: the copy and pointer operations are
//!   `-EINVAL`, and snapshots, `len` and `close` act on `zc`. It is set at most once, and
//!   only while the original ends have seen no operation.

use std::ffi::{c_int, c_long, c_uint, c_void};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use kcoro::chan::{Builder, ChanError, Kind, Receiver, Sender, Snapshot};
use kcoro::sync::CancelToken;
use kcoro::zcopy::{self, ZDesc};

use crate::cancel::{self, KcCancel};
use crate::elem::{Elem, Heap, Inline, PtrMsg};
use crate::error::Error;
use crate::ffi;
use crate::handle::{self, Handle, Tagged};

/// `KC_RENDEZVOUS`, `KC_BUFFERED`, `KC_CONFLATED`, `KC_UNLIMITED`.
pub const KC_RENDEZVOUS: c_int = 0;
/// Buffered; any kind > 0 is buffered too (see `shape`).
pub const KC_BUFFERED: c_int = 1;
/// One slot, overwritten by each send.
pub const KC_CONFLATED: c_int = -1;
/// Grows without bound.
pub const KC_UNLIMITED: c_int = -2;
/// `KC_CHAN_CAP_ZERO_COPY`.
pub const CAP_ZERO_COPY: c_uint = 1 << 0;
/// `KC_CHAN_CAP_PTR`.
pub const CAP_PTR: c_uint = 1 << 1;
/// Largest copy-mode element: 16 MiB. Larger elements belong in pointer mode; the bound
/// keeps a typo in `elem_sz` from becoming a huge allocation per send.
pub const MAX_ELEM_SZ: usize = 16 << 20;
/// Elements up to this many bytes travel inline in 8 bytes (4-byte ints, pointers).
const SMALL: usize = 8;
/// Elements up to this many bytes travel inline in 64 bytes; larger ones are boxed.
const MEDIUM: usize = 64;

/// `void (*kc_on_undelivered_copy_fn)(void *elem, size_t len, void *arg)`.
pub type UndeliveredCopyFn = unsafe extern "C" fn(*mut c_void, usize, *mut c_void);
/// `void (*kc_on_undelivered_ptr_fn)(void *ptr, size_t len, void *arg)`.
pub type UndeliveredPtrFn = unsafe extern "C" fn(*mut c_void, usize, *mut c_void);

/// The two ends of one kcoro channel.
pub(crate) struct Pair<T> {
    pub(crate) tx: Sender<T>,
    pub(crate) rx: Receiver<T>,
}

/// The channel, typed by what C puts in it.
pub(crate) enum Ends {
    /// Copy mode, `elem_sz <= 8`.
    Small(Pair<Inline<SMALL>>),
    /// Copy mode, `elem_sz <= 64`.
    Medium(Pair<Inline<MEDIUM>>),
    /// Copy mode, larger elements.
    Large(Pair<Heap>),
    /// Pointer mode.
    Ptr(Pair<PtrMsg>),
}

/// Runs `$body` with `$p` bound to whichever [`Pair`] `$ends` holds.
macro_rules! each_pair {
    ($ends:expr, $p:ident => $body:expr) => {
        match $ends {
            $crate::chan::Ends::Small($p) => $body,
            $crate::chan::Ends::Medium($p) => $body,
            $crate::chan::Ends::Large($p) => $body,
            $crate::chan::Ends::Ptr($p) => $body,
        }
    };
}
pub(crate) use each_pair;

/// The undelivered-element callbacks of `kc_chan_make_ex`.
#[derive(Clone, Copy)]
pub(crate) struct OnUndelivered {
    copy: Option<UndeliveredCopyFn>,
    ptr: Option<UndeliveredPtrFn>,
    /// The callback argument, as an address so the closure is `Send + Sync`.
    arg: usize,
}

/// What a `kc_chan_t *` points to (inside its [`Tagged`] box).
pub struct Chan {
    /// The kind as C's snapshot reports it (`KC_BUFFERED` for every buffered channel).
    pub(crate) kind: c_int,
    /// Element size in copy mode; `sizeof(struct kc_chan_ptrmsg)` in pointer mode.
    pub(crate) elem_sz: usize,
    /// Buffer capacity (buffered), 1 (conflated), 0 (rendezvous, unlimited).
    pub(crate) capacity: usize,
    pub(crate) ptr_mode: bool,
    pub(crate) ends: Ends,
    /// The copy-mode operations of `ends`' element type (`None` in pointer mode).
    copy_ops: Option<CopyOps>,
    /// The descriptor channel, once zero copy is enabled.
    pub(crate) zc: OnceLock<Pair<ZDesc>>,
    /// Serialises enabling zero copy.
    zc_lock: Mutex<()>,
    ud: OnUndelivered,
    rust_kind: Kind,
    rust_cap: usize,
}

impl Handle for Chan {
    const MAGIC: u64 = 0x6b63_5f63_6861_6e31; // "kc_chan1"
    const WHAT: &'static str = "kc_chan_t";
}

/// The C handle type.
pub type KcChan = Tagged<Chan>;

/// Turns `(kind, capacity)` into a Rust kind, the effective capacity and the reported
/// kind. A kind > 0 with capacity 0 is buffered of capacity `kind`, except `KC_BUFFERED`
/// itself, which gets the default 64.
pub(crate) fn shape(kind: c_int, capacity: usize) -> Result<(Kind, usize, c_int), Error> {
    Ok(match kind {
        KC_RENDEZVOUS => (Kind::Rendezvous, 0, KC_RENDEZVOUS),
        KC_CONFLATED => (Kind::Conflated, 1, KC_CONFLATED),
        KC_UNLIMITED => (Kind::Unlimited, 0, KC_UNLIMITED),
        k if k > 0 => {
            let cap = match (k, capacity) {
                (KC_BUFFERED, 0) => kcoro::chan::DEFAULT_CAPACITY,
                (k, 0) => k as usize,
                (_, c) => c,
            };
            (Kind::Buffered, cap, KC_BUFFERED)
        }
        _ => return Err(Error::Invalid("unknown channel kind")),
    })
}

/// Builds the pair from `b`, which says how bytes are counted: each value's own length
/// in pointer mode, the same `elem_sz` for every value in copy mode (whose inline buffers
/// are larger than that).
fn build<T: Send + 'static>(mut b: Builder<T>, ud: Option<impl Fn(T) + Send + Sync + 'static>) -> Pair<T> {
    if let Some(f) = ud {
        b = b.on_undelivered(f);
    }
    let (tx, rx) = b.build();
    Pair { tx, rx }
}

/// The copy callback for a copy-mode element type.
fn copy_cb<T: Elem>(ud: OnUndelivered, elem_sz: usize) -> Option<impl Fn(T) + Send + Sync + 'static> {
    let f = ud.copy?;
    Some(move |v: T| {
        let b = v.bytes(elem_sz);
        // SAFETY: the C caller registered `f` with this signature; the element's bytes
        // stay valid for the call (the callback must not keep the pointer).
        unsafe { f(b.as_ptr().cast_mut().cast(), b.len(), ud.arg as *mut c_void) }
    })
}

/// The pointer callback for a pointer-mode or descriptor channel.
fn ptr_cb<T: Into<PtrMsg>>(ud: OnUndelivered) -> Option<impl Fn(T) + Send + Sync + 'static> {
    let f = ud.ptr?;
    Some(move |v: T| {
        let m: PtrMsg = v.into();
        // SAFETY: the C caller registered `f` with this signature; the pointer is the one
        // it sent, handed back because nobody will receive it.
        unsafe { f(m.ptr, m.len, ud.arg as *mut c_void) }
    })
}

impl From<ZDesc> for PtrMsg {
    fn from(d: ZDesc) -> Self {
        PtrMsg { ptr: d.addr, len: d.len }
    }
}

impl Chan {
    fn new(
        kind: c_int,
        elem_sz: usize,
        capacity: usize,
        ptr_mode: bool,
        ud: OnUndelivered,
    ) -> Result<Chan, Error> {
        let (rust_kind, cap, reported) = shape(kind, capacity)?;
        fn copy<T: Elem>(kind: Kind, cap: usize, elem_sz: usize) -> Builder<T> {
            Builder::new(kind).capacity(cap).count_bytes_per_value(elem_sz)
        }
        let (ends, copy_ops) = if ptr_mode {
            let b = Builder::new(rust_kind).capacity(cap).count_payload_bytes();
            (Ends::Ptr(build(b, ptr_cb::<PtrMsg>(ud))), None)
        } else if elem_sz == 0 || elem_sz > MAX_ELEM_SZ {
            return Err(Error::Invalid("elem_sz must be 1..=16 MiB"));
        } else if elem_sz <= SMALL {
            let p = build(copy(rust_kind, cap, elem_sz), copy_cb(ud, elem_sz));
            (Ends::Small(p), Some(CopyOps::of::<Inline<SMALL>>(elem_sz)))
        } else if elem_sz <= MEDIUM {
            let p = build(copy(rust_kind, cap, elem_sz), copy_cb(ud, elem_sz));
            (Ends::Medium(p), Some(CopyOps::of::<Inline<MEDIUM>>(elem_sz)))
        } else {
            let p = build(copy(rust_kind, cap, elem_sz), copy_cb(ud, elem_sz));
            (Ends::Large(p), Some(CopyOps::of::<Heap>(elem_sz)))
        };
        Ok(Chan {
            kind: reported,
            elem_sz: if ptr_mode { size_of::<PtrMsg>() } else { elem_sz },
            capacity: cap,
            ptr_mode,
            ends,
            copy_ops,
            zc: OnceLock::new(),
            zc_lock: Mutex::new(()),
            ud,
            rust_kind,
            rust_cap: cap,
        })
    }

    /// A copy-mode channel with no undelivered callbacks (`kc_chan_make`).
    pub(crate) fn new_copy(kind: c_int, elem_sz: usize, capacity: usize) -> Result<Chan, Error> {
        Chan::new(kind, elem_sz, capacity, false, NO_UD)
    }

    /// A pointer-mode channel with no undelivered callbacks (`kc_chan_make_ptr`).
    pub(crate) fn new_ptr(kind: c_int, capacity: usize) -> Result<Chan, Error> {
        Chan::new(kind, 0, capacity, true, NO_UD)
    }

    /// Closes the channel through a clone of its sending end, so it works after the
    /// handle itself was destroyed.
    pub(crate) fn closer(&self) -> Box<dyn FnOnce() + Send> {
        match self.zc.get() {
            Some(p) => Self::close_by(p),
            None => each_pair!(&self.ends, p => Self::close_by(p)),
        }
    }

    fn close_by<T: Send + 'static>(p: &Pair<T>) -> Box<dyn FnOnce() + Send> {
        let tx = p.tx.clone();
        Box::new(move || {
            tx.close();
        })
    }

    /// The snapshot of whichever channel is active.
    pub(crate) fn snapshot(&self) -> Snapshot {
        match self.zc.get() {
            Some(p) => p.rx.snapshot(),
            None => each_pair!(&self.ends, p => p.rx.snapshot()),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self.zc.get() {
            Some(p) => p.rx.len(),
            None => each_pair!(&self.ends, p => p.rx.len()),
        }
    }

    pub(crate) fn close(&self) {
        match self.zc.get() {
            Some(p) => p.tx.close(),
            None => each_pair!(&self.ends, p => p.tx.close()),
        };
    }

    pub(crate) fn capabilities(&self) -> c_uint {
        match self.zc.get() {
            Some(p) => p.tx.capabilities() | CAP_PTR,
            None if self.ptr_mode => CAP_PTR,
            None => 0,
        }
    }

    /// Binds the channel to a zero-copy backend (idempotent for one already bound).
    pub(crate) fn enable_zero_copy(
        &self,
        backend: zcopy::BackendId,
        opts: *const c_void,
    ) -> Result<(), Error> {
        let _g = self.zc_lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.zc.get().is_some() {
            return Ok(());
        }
        let s = each_pair!(&self.ends, p => p.rx.snapshot());
        if s.sends + s.recvs + s.len as u64 > 0 || s.closed {
            return Err(Error::Invalid("zero copy must be enabled before the first operation"));
        }
        let mut b = Builder::<ZDesc>::new(self.rust_kind)
            .capacity(self.rust_cap)
            .zero_copy_with(backend, zcopy::AttachOpts(opts));
        // Descriptors dropped undelivered stop counting in flight, then go to the callback.
        let user_cb = ptr_cb::<ZDesc>(self.ud);
        b = b.on_undelivered(move |d: ZDesc| {
            crate::region::release(&d);
            if let Some(f) = &user_cb {
                f(d);
            }
        });
        let (tx, rx) = b.try_build().map_err(|e| Error::Runtime(e.code()))?;
        let _ = self.zc.set(Pair { tx, rx });
        Ok(())
    }
}

/// How long an operation may wait: `0` = try, `< 0` = forever, `> 0` = that many ms.
pub(crate) enum Wait {
    Try,
    Until(Option<Instant>),
}

pub(crate) fn wait_for(timeout_ms: c_long) -> Wait {
    match timeout_ms {
        0 => Wait::Try,
        ms if ms < 0 => Wait::Until(None),
        ms => Wait::Until(kcoro::now().checked_add(Duration::from_millis(ms as u64))),
    }
}

/// Sends `v`; cancellation is checked first, so it wins over a try or a timeout.
#[inline(always)]
pub(crate) fn send<T>(
    tx: &Sender<T>,
    v: T,
    timeout_ms: c_long,
    c: Option<&CancelToken>,
) -> Result<(), ChanError> {
    let r = match (c, timeout_ms) {
        // The common call, spelled as the Rust API's `send` so it gets the same code.
        (None, ms) if ms < 0 => tx.send(v),
        (Some(c), _) if c.is_cancelled() => return Err(ChanError::Canceled),
        _ => match wait_for(timeout_ms) {
            Wait::Try => tx.try_send(v),
            Wait::Until(deadline) => tx.send_with(v, deadline, c),
        },
    };
    r.map_err(|e| e.kind())
}

/// Receives one element; cancellation is checked first, as for [`send`].
#[inline(always)]
pub(crate) fn recv<T>(rx: &Receiver<T>, timeout_ms: c_long, c: Option<&CancelToken>) -> Result<T, ChanError> {
    match (c, timeout_ms) {
        // As in `send`.
        (None, ms) if ms < 0 => rx.recv(),
        (Some(c), _) if c.is_cancelled() => Err(ChanError::Canceled),
        _ => match wait_for(timeout_ms) {
            Wait::Try => rx.try_recv(),
            Wait::Until(deadline) => rx.recv_with(deadline, c),
        },
    }
}

/// The channel behind a handle.
///
/// # Safety
/// See [`handle::get`].
#[inline]
pub(crate) unsafe fn chan<'a>(ch: *const KcChan) -> Result<&'a Chan, Error> {
    // SAFETY: forwarded contract.
    unsafe { handle::get(ch) }
}

/// A copy-mode send specialised for one element type (see [`CopyOps`]).
type CopySend = unsafe fn(&Ends, *const u8, usize, c_long, Option<&CancelToken>) -> Result<(), ChanError>;
/// A copy-mode receive specialised for one element type.
type CopyRecv = unsafe fn(&Ends, *mut u8, usize, c_long, Option<&CancelToken>) -> Result<(), ChanError>;

/// The copy-mode send and receive of a channel's element type, picked when it is made:
/// each call then runs code built for that size class alone (one small frame), instead of
/// dispatching over every class with all their element types live in one frame.
#[derive(Clone, Copy)]
pub(crate) struct CopyOps {
    send: CopySend,
    recv: CopyRecv,
}

impl CopyOps {
    /// The operations for elements of type `T` and `elem_sz` bytes: the common sizes get
    /// their own copies of the code, in which the byte copy has a constant length.
    fn of<T: CopyElem>(elem_sz: usize) -> Self {
        fn sized<T: CopyElem, const K: usize>() -> CopyOps {
            CopyOps { send: send_as::<T, K>, recv: recv_as::<T, K> }
        }
        match elem_sz {
            4 => sized::<T, 4>(),
            8 => sized::<T, 8>(),
            16 => sized::<T, 16>(),
            32 => sized::<T, 32>(),
            64 => sized::<T, 64>(),
            _ => sized::<T, 0>(),
        }
    }
}

/// A copy-mode element type and the [`Ends`] variant that holds it.
trait CopyElem: Elem + Sized {
    fn pair(ends: &Ends) -> Option<&Pair<Self>>;
}

impl CopyElem for Inline<SMALL> {
    fn pair(ends: &Ends) -> Option<&Pair<Self>> {
        if let Ends::Small(p) = ends { Some(p) } else { None }
    }
}

impl CopyElem for Inline<MEDIUM> {
    fn pair(ends: &Ends) -> Option<&Pair<Self>> {
        if let Ends::Medium(p) = ends { Some(p) } else { None }
    }
}

impl CopyElem for Heap {
    fn pair(ends: &Ends) -> Option<&Pair<Self>> {
        if let Ends::Large(p) = ends { Some(p) } else { None }
    }
}

/// A send of `K`-byte elements (`K` = 0: `n` bytes).
///
/// # Safety
/// `src` readable for `n` bytes; `n` is the channel's `elem_sz`, which picked `T` and `K`.
unsafe fn send_as<T: CopyElem, const K: usize>(
    ends: &Ends,
    src: *const u8,
    n: usize,
    tmo: c_long,
    c: Option<&CancelToken>,
) -> Result<(), ChanError> {
    let n = if K == 0 { n } else { K };
    let p = T::pair(ends).unwrap_or_else(|| unreachable!("copy ops of another element type"));
    // SAFETY: the caller's contract: `src` holds `n` bytes, and `n` fits `T`.
    send(&p.tx, unsafe { T::read(src, n) }, tmo, c)
}

/// A receive of `K`-byte elements (`K` = 0: `n` bytes).
///
/// # Safety
/// `out` writable for `n` bytes; `n` is the channel's `elem_sz`, which picked `T` and `K`.
unsafe fn recv_as<T: CopyElem, const K: usize>(
    ends: &Ends,
    out: *mut u8,
    n: usize,
    tmo: c_long,
    c: Option<&CancelToken>,
) -> Result<(), ChanError> {
    let n = if K == 0 { n } else { K };
    let p = T::pair(ends).unwrap_or_else(|| unreachable!("copy ops of another element type"));
    let v = recv(&p.rx, tmo, c)?;
    // SAFETY: the caller's contract; every element of the channel was read with `n` bytes.
    unsafe { put(v, out.cast(), n) };
    Ok(())
}

/// The copy operations of `ch`, or `-EINVAL` for a pointer or zero-copy channel.
fn copy_ops(ch: &Chan) -> Result<CopyOps, Error> {
    match ch.copy_ops {
        Some(ops) if ch.zc.get().is_none() => Ok(ops),
        _ => Err(Error::Invalid("copy operation on a pointer or zero-copy channel")),
    }
}

/// Copy-mode send of `elem_sz` bytes at `msg`.
///
/// # Safety
/// `ch` as in [`chan`]; `msg` null or readable for the channel's `elem_sz` bytes; `c` null
/// or a cancel handle.
// Inlined into its entry points: returned through memory, the `Result` cost a
// store-forwarding stall per call (measured on `ptr_spsc_64k`).
#[inline(always)]
unsafe fn send_copy(
    ch: *mut KcChan,
    msg: *const c_void,
    tmo: c_long,
    c: *const KcCancel,
) -> Result<c_int, Error> {
    // SAFETY: forwarded contracts.
    let (ch, c) = unsafe { (chan(ch)?, cancel::optional(c)?) };
    if msg.is_null() {
        return Err(Error::Invalid("msg is NULL"));
    }
    let ops = copy_ops(ch)?;
    // SAFETY: `msg` is readable for `elem_sz` bytes (the C contract); `ops` were picked
    // for this channel's `elem_sz`.
    unsafe { (ops.send)(&ch.ends, msg.cast(), ch.elem_sz, tmo, c) }?;
    Ok(0)
}

/// Copy-mode receive into `out`.
///
/// # Safety
/// `ch`, `c` as in [`send_copy`]; `out` null or writable for `elem_sz` bytes.
// Inlined into its entry points: returned through memory, the `Result` cost a
// store-forwarding stall per call (measured on `ptr_spsc_64k`).
#[inline(always)]
unsafe fn recv_copy(
    ch: *mut KcChan,
    out: *mut c_void,
    tmo: c_long,
    c: *const KcCancel,
) -> Result<c_int, Error> {
    // SAFETY: forwarded contracts.
    let (ch, c) = unsafe { (chan(ch)?, cancel::optional(c)?) };
    if out.is_null() {
        return Err(Error::Invalid("out is NULL"));
    }
    let ops = copy_ops(ch)?;
    // SAFETY: `out` is writable for `elem_sz` bytes (the C contract); `ops` were picked
    // for this channel's `elem_sz`.
    unsafe { (ops.recv)(&ch.ends, out.cast(), ch.elem_sz, tmo, c) }?;
    Ok(0)
}

/// Copies a received copy-mode element out to C.
///
/// # Safety
/// `out` is writable for `elem_sz` bytes, and `elem_sz` is the length `v` was read with.
pub(crate) unsafe fn put<T: Elem>(v: T, out: *mut c_void, elem_sz: usize) {
    let b = v.bytes(elem_sz);
    // SAFETY: the caller's contract; `b` is exactly `elem_sz` bytes.
    unsafe { crate::elem::copy_bytes(b.as_ptr(), out.cast::<u8>(), b.len()) };
}

fn ptr_pair(ch: &Chan) -> Result<&Pair<PtrMsg>, Error> {
    match (&ch.ends, ch.zc.get()) {
        (Ends::Ptr(p), None) => Ok(p),
        _ => Err(Error::Invalid("pointer operation on a copy or zero-copy channel")),
    }
}

/// # Safety
/// `ch`, `c` as in [`send_copy`].
// Inlined into its entry points: returned through memory, the `Result` cost a
// store-forwarding stall per call (measured on `ptr_spsc_64k`).
#[inline(always)]
unsafe fn send_ptr(
    ch: *mut KcChan,
    ptr: *mut c_void,
    len: usize,
    tmo: c_long,
    c: *const KcCancel,
) -> Result<c_int, Error> {
    // SAFETY: forwarded contracts.
    let (ch, c) = unsafe { (chan(ch)?, cancel::optional(c)?) };
    send(&ptr_pair(ch)?.tx, PtrMsg { ptr, len }, tmo, c)?;
    Ok(0)
}

/// # Safety
/// `ch`, `c` as in [`send_copy`]; `out_ptr`, `out_len` null or writable.
// Inlined into its entry points: returned through memory, the `Result` cost a
// store-forwarding stall per call (measured on `ptr_spsc_64k`).
#[inline(always)]
unsafe fn recv_ptr(
    ch: *mut KcChan,
    out_ptr: *mut *mut c_void,
    out_len: *mut usize,
    tmo: c_long,
    c: *const KcCancel,
) -> Result<c_int, Error> {
    // SAFETY: forwarded contracts.
    let (ch, c) = unsafe { (chan(ch)?, cancel::optional(c)?) };
    if out_ptr.is_null() {
        return Err(Error::Invalid("out_ptr is NULL"));
    }
    let m = recv(&ptr_pair(ch)?.rx, tmo, c)?;
    // SAFETY: checked non-null; the C caller passes writable out-parameters.
    unsafe {
        out_ptr.write(m.ptr);
        ffi::store(out_len, m.len);
    }
    Ok(0)
}

fn make(out: *mut *mut KcChan, chan: Result<Chan, Error>) -> Result<c_int, Error> {
    if out.is_null() {
        return Err(Error::Invalid("out is NULL"));
    }
    let h = handle::into_raw(chan?);
    // SAFETY: checked non-null; the caller passes a writable `kc_chan_t **`.
    unsafe { out.write(h) };
    Ok(0)
}

const NO_UD: OnUndelivered = OnUndelivered { copy: None, ptr: None, arg: 0 };

/// `int kc_chan_make(kc_chan_t **out, int kind, size_t elem_sz, size_t capacity)`.
///
/// # Safety
/// `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_make(
    out: *mut *mut KcChan,
    kind: c_int,
    elem_sz: usize,
    capacity: usize,
) -> c_int {
    ffi::int(|| make(out, Chan::new_copy(kind, elem_sz, capacity)))
}

/// `kc_chan_make` with undelivered-element callbacks (copy mode uses `on_copy`).
///
/// # Safety
/// `out` NULL or writable; the callbacks callable with `arg` from any thread.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_make_ex(
    out: *mut *mut KcChan,
    kind: c_int,
    elem_sz: usize,
    capacity: usize,
    on_copy: Option<UndeliveredCopyFn>,
    on_ptr: Option<UndeliveredPtrFn>,
    arg: *mut c_void,
) -> c_int {
    let ud = OnUndelivered { copy: on_copy, ptr: on_ptr, arg: arg as usize };
    ffi::int(|| make(out, Chan::new(kind, elem_sz, capacity, false, ud)))
}

/// `int kc_chan_make_ptr(kc_chan_t **out, int kind, size_t capacity)`.
///
/// # Safety
/// `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_make_ptr(out: *mut *mut KcChan, kind: c_int, capacity: usize) -> c_int {
    ffi::int(|| make(out, Chan::new_ptr(kind, capacity)))
}

/// Closes (if still open), then frees. Buffered elements go to the undelivered callback.
///
/// # Safety
/// No operation on `ch` may be running or start later.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_destroy(ch: *mut KcChan) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { handle::destroy(ch) })
}

/// Closes the channel: sends fail with `KC_EPIPE`; receivers drain, then get `KC_EPIPE`.
///
/// # Safety
/// `ch` is a live handle (or NULL: ignored).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_close(ch: *mut KcChan) {
    // SAFETY: the C contract above.
    ffi::void(|| unsafe { chan(ch) }.map(Chan::close))
}

/// Elements buffered now (0 for a bad handle).
///
/// # Safety
/// As [`kc_chan_close`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_len(ch: *mut KcChan) -> c_uint {
    // SAFETY: the C contract above.
    ffi::value(0, || unsafe { chan(ch) }.map(|c| c.len().min(c_uint::MAX as usize) as c_uint))
}

/// `KC_CHAN_CAP_*` bits (0 for a bad handle).
///
/// # Safety
/// As [`kc_chan_close`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_capabilities(ch: *mut KcChan) -> c_uint {
    // SAFETY: the C contract above.
    ffi::value(0, || unsafe { chan(ch) }.map(Chan::capabilities))
}

/// Copy-mode send.
///
/// # Safety
/// `ch` live; `msg` readable for `elem_sz` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_send(ch: *mut KcChan, msg: *const c_void, timeout_ms: c_long) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { send_copy(ch, msg, timeout_ms, std::ptr::null()) })
}

/// Copy-mode receive.
///
/// # Safety
/// `ch` live; `out` writable for `elem_sz` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_recv(ch: *mut KcChan, out: *mut c_void, timeout_ms: c_long) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { recv_copy(ch, out, timeout_ms, std::ptr::null()) })
}

/// Cancellable copy-mode send (`c` may be NULL).
///
/// # Safety
/// As [`kc_chan_send`]; `c` NULL or a live cancel token.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_send_c(
    ch: *mut KcChan,
    msg: *const c_void,
    timeout_ms: c_long,
    c: *const KcCancel,
) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { send_copy(ch, msg, timeout_ms, c) })
}

/// Cancellable copy-mode receive (`c` may be NULL).
///
/// # Safety
/// As [`kc_chan_recv`]; `c` NULL or a live cancel token.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_recv_c(
    ch: *mut KcChan,
    out: *mut c_void,
    timeout_ms: c_long,
    c: *const KcCancel,
) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { recv_copy(ch, out, timeout_ms, c) })
}

/// Pointer-mode send: `(ptr, len)` moves; ownership passes only on success.
///
/// # Safety
/// `ch` live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_send_ptr(
    ch: *mut KcChan,
    ptr: *mut c_void,
    len: usize,
    timeout_ms: c_long,
) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { send_ptr(ch, ptr, len, timeout_ms, std::ptr::null()) })
}

/// Pointer-mode receive.
///
/// # Safety
/// `ch` live; `out_ptr` writable; `out_len` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_recv_ptr(
    ch: *mut KcChan,
    out_ptr: *mut *mut c_void,
    out_len: *mut usize,
    timeout_ms: c_long,
) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { recv_ptr(ch, out_ptr, out_len, timeout_ms, std::ptr::null()) })
}

/// Cancellable pointer-mode send.
///
/// # Safety
/// As [`kc_chan_send_ptr`]; `c` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_send_ptr_c(
    ch: *mut KcChan,
    ptr: *mut c_void,
    len: usize,
    timeout_ms: c_long,
    c: *const KcCancel,
) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { send_ptr(ch, ptr, len, timeout_ms, c) })
}

/// Cancellable pointer-mode receive.
///
/// # Safety
/// As [`kc_chan_recv_ptr`]; `c` NULL or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_recv_ptr_c(
    ch: *mut KcChan,
    out_ptr: *mut *mut c_void,
    out_len: *mut usize,
    timeout_ms: c_long,
    c: *const KcCancel,
) -> c_int {
    // SAFETY: the C contract above.
    ffi::int(|| unsafe { recv_ptr(ch, out_ptr, out_len, timeout_ms, c) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_capacities_follow_the_c_rules() {
        assert_eq!(shape(KC_BUFFERED, 0).unwrap(), (Kind::Buffered, 64, KC_BUFFERED));
        assert_eq!(shape(5, 0).unwrap(), (Kind::Buffered, 5, KC_BUFFERED));
        assert_eq!(shape(5, 9).unwrap(), (Kind::Buffered, 9, KC_BUFFERED));
        assert_eq!(shape(KC_CONFLATED, 7).unwrap().1, 1);
        assert!(shape(-3, 0).is_err());
    }
}
