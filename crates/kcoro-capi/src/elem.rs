//! What a C channel carries: its elements as Rust values.
//!
//! Copy-mode elements are `elem_sz` bytes copied in on send and out on receive. Small
//! ones live inline ([`Inline<8>`], [`Inline<64>`]) so a send allocates nothing; larger
//! ones are boxed ([`Heap`]). Pointer-mode elements are `(ptr, len)` pairs ([`PtrMsg`]):
//! the pointer moves, the payload does not. Each reports its true length to the byte
//! counters ([`ByteLen`]), so `total_bytes_sent` is `elem_sz` (or `len`) per message.

use std::ffi::c_void;

use kcoro::chan::ByteLen;

/// A copy-mode element.
pub(crate) trait Elem: ByteLen + Send + 'static {
    /// Makes an element from exactly `len` bytes at `src`.
    ///
    /// # Safety
    /// `src` is readable for `len` bytes, and `len` fits the variant chosen for it.
    unsafe fn read(src: *const u8, len: usize) -> Self;
    /// The element's bytes.
    fn bytes(&self) -> &[u8];
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

/// Up to `N` bytes stored in place.
pub(crate) struct Inline<const N: usize> {
    len: u32,
    buf: [u8; N],
}

impl<const N: usize> Elem for Inline<N> {
    unsafe fn read(src: *const u8, len: usize) -> Self {
        debug_assert!(len <= N);
        let mut buf = [0u8; N];
        // SAFETY: the caller promises `src` readable for `len <= N` bytes; `buf` is ours.
        unsafe { copy_bytes(src, buf.as_mut_ptr(), len) };
        Inline { len: len as u32, buf }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl<const N: usize> ByteLen for Inline<N> {
    fn byte_len(&self) -> usize {
        self.len as usize
    }
}

/// More bytes than the inline forms hold.
pub(crate) struct Heap(Box<[u8]>);

impl Elem for Heap {
    unsafe fn read(src: *const u8, len: usize) -> Self {
        // SAFETY: the caller promises `src` readable for `len` bytes.
        Heap(unsafe { std::slice::from_raw_parts(src, len) }.into())
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl ByteLen for Heap {
    fn byte_len(&self) -> usize {
        self.0.len()
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
        assert_eq!((i.bytes(), i.byte_len()), (&src[..], 5));
        assert_eq!((h.bytes(), h.byte_len()), (&src[..], 5));
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
