//! What a C channel carries: its elements as Rust values.
//!
//! Copy-mode elements are `elem_sz` bytes copied in on send and out on receive. Small
//! ones live inline ([`Inline<8>`], [`Inline<64>`]) so a send allocates nothing; larger
//! ones are boxed ([`Heap`]). Every element of a copy-mode channel has the channel's
//! `elem_sz`, so the inline forms do not store a length: the channel counts `elem_sz`
//! bytes per message and passes it back where the bytes are read. Pointer-mode elements
//! are `(ptr, len)` pairs ([`PtrMsg`]): the pointer moves, the payload does not, and each
//! reports its own `len` to the byte counters ([`ByteLen`]).

use std::ffi::c_void;

use kcoro::chan::ByteLen;

/// A copy-mode element.
pub(crate) trait Elem: Send + 'static {
    /// Makes an element from exactly `len` bytes at `src`.
    ///
    /// # Safety
    /// `src` is readable for `len` bytes, and `len` fits the variant chosen for it.
    unsafe fn read(src: *const u8, len: usize) -> Self;
    /// The element's bytes; `len` is the one it was read with (the channel's `elem_sz`).
    fn bytes(&self, len: usize) -> &[u8];
}

/// Copies `n` bytes; the common element sizes get a fixed-size copy the compiler inlines
/// as a few moves, instead of a call into `memcpy` with a run-time length.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes; they do not overlap.
#[inline(always)]
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, n: usize) {
    /// # Safety
    /// `src` readable and `dst` writable for `K` bytes.
    #[inline(always)]
    unsafe fn fixed<const K: usize>(src: *const u8, dst: *mut u8) {
        // SAFETY: the caller's contract, for `K` bytes; unaligned reads and writes.
        unsafe { dst.cast::<[u8; K]>().write_unaligned(src.cast::<[u8; K]>().read_unaligned()) }
    }
    // SAFETY: the caller's contract; each arm copies exactly `n` bytes.
    unsafe {
        match n {
            4 => fixed::<4>(src, dst),
            8 => fixed::<8>(src, dst),
            16 => fixed::<16>(src, dst),
            32 => fixed::<32>(src, dst),
            64 => fixed::<64>(src, dst),
            _ => std::ptr::copy_nonoverlapping(src, dst, n),
        }
    }
}

/// Up to `N` bytes stored in place (the rest zero). Aligned to 8: with byte alignment the
/// bytes sat one past the tag of the `Result` a receive returns, and copying them out
/// through misaligned 16-byte moves stalled store forwarding (a third of `recv_as`'s
/// samples on `spsc_1024_64b`).
#[repr(C, align(8))]
pub(crate) struct Inline<const N: usize>([u8; N]);

impl<const N: usize> Elem for Inline<N> {
    #[inline(always)]
    unsafe fn read(src: *const u8, len: usize) -> Self {
        debug_assert!(len <= N);
        let mut buf = [0u8; N];
        // SAFETY: the caller promises `src` readable for `len <= N` bytes; `buf` is ours.
        unsafe { copy_bytes(src, buf.as_mut_ptr(), len) };
        Inline(buf)
    }

    #[inline(always)]
    fn bytes(&self, len: usize) -> &[u8] {
        &self.0[..len.min(N)]
    }
}

/// More bytes than the inline forms hold.
pub(crate) struct Heap(Box<[u8]>);

impl Elem for Heap {
    unsafe fn read(src: *const u8, len: usize) -> Self {
        // SAFETY: the caller promises `src` readable for `len` bytes.
        Heap(unsafe { std::slice::from_raw_parts(src, len) }.into())
    }

    fn bytes(&self, _len: usize) -> &[u8] {
        &self.0
    }
}

/// A pointer-mode element: `struct kc_chan_ptrmsg`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtrMsg {
    /// The caller's pointer, never dereferenced by the library.
    pub ptr: *mut c_void,
    /// The length the caller gave with it.
    pub len: usize,
}

// SAFETY: the library never dereferences `ptr`; it moves the pair between C threads,
// which own what it points to under their own protocol (ownership passes with the send).
unsafe impl Send for PtrMsg {}

impl ByteLen for PtrMsg {
    fn byte_len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_keep_bytes_and_lengths() {
        let src = [1u8, 2, 3, 4, 5];
        // SAFETY: `src` holds 5 readable bytes; 5 fits both forms.
        let (i, h) = unsafe { (Inline::<8>::read(src.as_ptr(), 5), Heap::read(src.as_ptr(), 5)) };
        assert_eq!((i.bytes(5), h.bytes(5)), (&src[..], &src[..]));
        assert_eq!(i.0[5..], [0, 0, 0], "the bytes past the element stay zero");
        assert_eq!(PtrMsg { ptr: std::ptr::null_mut(), len: 9 }.byte_len(), 9);
        let big: Vec<u8> = (0..100).collect();
        for n in [1, 4, 8, 13, 16, 32, 64, 100] {
            let mut out = vec![0u8; n];
            // SAFETY: both buffers hold `n` bytes and are distinct.
            unsafe { copy_bytes(big.as_ptr(), out.as_mut_ptr(), n) };
            assert_eq!(&out[..], &big[..n]);
        }
    }
}
