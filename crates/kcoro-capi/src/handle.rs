//! Opaque handles: a C `kc_chan_t *` (and its siblings) is a `Box<Tagged<T>>` whose first
//! word is a per-type magic number.
//!
//! The magic lets entry points refuse null pointers, pointers to something else, and
//! handles already destroyed, with `-EINVAL` instead of undefined behaviour. Destroy
//! flips the word to [`DEAD`] with a CAS before freeing, so a double destroy from two
//! threads frees once. A destroyed handle whose memory was reused can no longer be told
//! apart; the docs say handles must not be used after destroy, and this check is a net,
//! not a licence.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// The word a destroyed handle carries until its memory is reused.
const DEAD: u64 = 0xdead_dead_dead_dead;

/// A type that C holds through an opaque handle.
pub(crate) trait Handle: Sized {
    /// Magic word of a live handle of this type.
    const MAGIC: u64;
    /// What the type is called in error messages.
    const WHAT: &'static str;
}

/// The box behind a handle (what C's opaque pointer points to): the magic word, then the
/// value. Only this crate looks inside.
#[repr(C)]
pub struct Tagged<T> {
    magic: AtomicU64,
    value: T,
}

/// Boxes `value` and returns the handle C keeps.
pub(crate) fn into_raw<T: Handle>(value: T) -> *mut Tagged<T> {
    Box::into_raw(Box::new(Tagged { magic: AtomicU64::new(T::MAGIC), value }))
}

/// The value behind a handle.
///
/// # Safety
/// `p` is null or points to memory that was a `Tagged<T>` made by [`into_raw`] (live or
/// destroyed but not yet reused), and the handle is not destroyed while the returned
/// reference lives (the C contract: no destroy while an operation is running).
#[inline]
pub(crate) unsafe fn get<'a, T: Handle>(p: *const Tagged<T>) -> Result<&'a T, Error> {
    if p.is_null() || !p.is_aligned() {
        return Err(Error::Invalid(T::WHAT));
    }
    // SAFETY: non-null and aligned; the caller promises it is (or was) a `Tagged<T>`,
    // whose first field is the atomic magic word.
    let tagged = unsafe { &*p };
    // Acquire: pairs with nothing but keeps the value's reads after the check.
    if tagged.magic.load(Ordering::Acquire) != T::MAGIC {
        return Err(Error::Invalid(T::WHAT));
    }
    Ok(&tagged.value)
}

/// Destroys a handle: marks it dead, then drops the value and frees the box.
///
/// # Safety
/// As [`get`]; afterwards no reference obtained from `p` may be used.
pub(crate) unsafe fn destroy<T: Handle>(p: *mut Tagged<T>) -> Result<(), Error> {
    // SAFETY: as in `get`.
    unsafe { get(p) }?;
    // SAFETY: `get` checked `p`; the magic word is an atomic shared by racing destroys.
    let magic = unsafe { &(*p).magic };
    if magic.compare_exchange(T::MAGIC, DEAD, Ordering::AcqRel, Ordering::Acquire).is_err() {
        return Err(Error::Invalid(T::WHAT));
    }
    // SAFETY: `p` came from `Box::into_raw` in `into_raw`, and the CAS above made this
    // call the only one to free it.
    drop(unsafe { Box::from_raw(p) });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Probe(u32);
    impl Handle for Probe {
        const MAGIC: u64 = 0x1234;
        const WHAT: &'static str = "probe";
    }
    struct Other;
    impl Handle for Other {
        const MAGIC: u64 = 0x5678;
        const WHAT: &'static str = "other";
    }

    #[test]
    fn refuses_null_foreign_and_double_destroy() {
        let p = into_raw(Probe(7));
        // SAFETY: `p` is live.
        assert_eq!(unsafe { get(p) }.map(|v| v.0), Ok(7));
        // SAFETY: null is allowed.
        assert!(unsafe { get::<Probe>(std::ptr::null()) }.is_err());
        let o = into_raw(Other);
        // SAFETY: a live handle of another type: the magic differs, nothing else is read.
        assert!(unsafe { get::<Probe>(o.cast()) }.is_err());
        // SAFETY: both live, destroyed once each.
        unsafe {
            assert!(destroy(p).is_ok());
            assert!(destroy(o).is_ok());
        }
    }
}
