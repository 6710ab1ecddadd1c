//! Reply bytes: copied into a `Vec`, or a plugin's own buffer kept without copying (kcoro's
//! `send_owned`, nylon-ring's owned `NrVec` and `NrOwnedBytes`).

use std::ffi::c_void;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use kcoro_abi::nylon::{NrOwnedReleaseFn, NrVecDropFn};
use kcoro_abi::{KcReleaseFn, NrStatus};

use crate::library::Library;

/// The bytes of a reply or frame. Derefs to `[u8]`.
pub struct Payload(Repr);

enum Repr {
    Vec(Vec<u8>),
    /// Boxed: keeps `Payload` (and every reply) the size of a `Vec`.
    Owned(Box<Owned>),
}

/// How a plugin buffer is given back, one variant per ABI that lends buffers.
pub(crate) enum Release {
    /// Nothing to free (static data, or a buffer handed back to the plugin).
    Nothing,
    /// kcoro's `send_owned`: `release(ctx)`.
    Kcoro(KcReleaseFn, *mut c_void),
    /// nylon-ring's owned `NrVec`: `drop_fn(ptr, len, cap)`.
    NyVec(NrVecDropFn, usize),
    /// nylon-ring 0.2's `NrOwnedBytes`: `release(owner_ctx, ptr, len)`.
    NyOwned(NrOwnedReleaseFn, *mut c_void),
}

/// A plugin's buffer, handed over without a copy; released exactly once, on drop.
pub(crate) struct Owned {
    ptr: *const u8,
    len: usize,
    release: Release,
    /// The plugin's code, kept mapped until `release` has run (`None` when the library is
    /// never unmapped).
    _lib: Option<Arc<Library>>,
}

// SAFETY: every ABI's contract: the buffer is immutable once sent and its release may be
// called from any thread.
unsafe impl Send for Owned {}
// SAFETY: shared access only reads the immutable buffer.
unsafe impl Sync for Owned {}

impl Owned {
    /// # Safety
    /// `ptr` must point to `len` bytes that stay valid and unchanged until `release` runs
    /// (forever, for [`Release::Nothing`]).
    pub(crate) unsafe fn new(ptr: *const u8, len: usize, release: Release) -> Owned {
        Owned { ptr, len, release, _lib: None }
    }

    /// Keeps `lib` mapped until this buffer is released.
    pub(crate) fn keep_mapped(mut self, lib: Option<Arc<Library>>) -> Owned {
        self._lib = lib;
        self
    }

    /// Gives the buffer back to the plugin without releasing it (the host refused it).
    pub(crate) fn disown(mut self) {
        self.release = Release::Nothing;
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        // A panic inside a release cannot cross: the SDKs' release functions catch their
        // own, and an `extern "C"` function that unwinds aborts.
        match self.release {
            Release::Nothing => {}
            // SAFETY: called exactly once, with the context the plugin gave.
            Release::Kcoro(f, ctx) => unsafe { f(ctx) },
            // SAFETY: nylon-ring's contract for an owned `NrVec`: freed once through its
            // own `drop_fn`, with the parts it was sent with.
            Release::NyVec(f, cap) => unsafe { f(self.ptr as *mut u8, self.len, cap) },
            // SAFETY: nylon-ring 0.2's contract for `NrOwnedBytes`: released exactly once.
            Release::NyOwned(f, ctx) => unsafe { f(ctx, self.ptr, self.len as u64) },
        }
    }
}

impl Payload {
    pub const fn empty() -> Payload {
        Payload(Repr::Vec(Vec::new()))
    }

    pub(crate) fn owned(o: Owned) -> Payload {
        Payload(Repr::Owned(Box::new(o)))
    }

    /// A copy of bytes the plugin lends for the length of a call (no allocation when empty).
    #[inline]
    pub(crate) fn copy_of(b: &[u8]) -> Payload {
        if b.is_empty() { Payload::empty() } else { Payload::from(b.to_vec()) }
    }

    /// The plugin buffer inside, if this payload is one.
    pub(crate) fn into_owned(self) -> Option<Owned> {
        match self.0 {
            Repr::Owned(o) => Some(*o),
            Repr::Vec(_) => None,
        }
    }

    /// Whether the bytes are the plugin's own buffer (no copy was made).
    pub fn is_zero_copy(&self) -> bool {
        matches!(self.0, Repr::Owned(_))
    }

    /// The bytes as a `Vec` (copies a plugin-owned buffer, then releases it).
    pub fn into_vec(self) -> Vec<u8> {
        match self.0 {
            Repr::Vec(v) => v,
            Repr::Owned(ref o) => {
                let v = self_bytes(o).to_vec();
                drop(self);
                v
            }
        }
    }
}

fn self_bytes(o: &Owned) -> &[u8] {
    if o.ptr.is_null() || o.len == 0 {
        return &[];
    }
    // SAFETY: `Owned::new`'s contract: `len` bytes valid until released, which happens
    // only when `o` drops.
    unsafe { std::slice::from_raw_parts(o.ptr, o.len) }
}

impl Default for Payload {
    fn default() -> Payload {
        Payload::empty()
    }
}

impl From<Vec<u8>> for Payload {
    fn from(v: Vec<u8>) -> Payload {
        Payload(Repr::Vec(v))
    }
}

impl Deref for Payload {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Vec(v) => v,
            Repr::Owned(o) => self_bytes(o),
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq<[u8]> for Payload {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self) {
            Ok(s) if s.len() <= 64 => write!(f, "{s:?}"),
            _ => write!(f, "<{} bytes>", self.len()),
        }
    }
}

/// A unary reply or one stream frame.
#[derive(Debug)]
pub struct Frame {
    pub status: NrStatus,
    pub data: Payload,
}

impl Frame {
    /// Whether this frame ends its stream.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}
