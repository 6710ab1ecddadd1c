//! Elements: how a value becomes the bytes of an `ELEMENT` attribute and back.
//!
//! Raw bytes are the default: `Vec<u8>`, `Box<[u8]>`, `String` and `bytes::Bytes` travel
//! as they are. Any other type goes through one codec, postcard (a specified, compact,
//! non-self-describing format): implement it for your type with [`postcard_element!`](crate::postcard_element)
//! (one line), or wrap a foreign type in [`Postcard`].
//!
//! ```
//! #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
//! struct Job { id: u64, name: String }
//! kcoro_ipc::postcard_element!(Job);
//!
//! use kcoro_ipc::Element;
//! let job = Job { id: 7, name: "resize".into() };
//! let mut wire = vec![0; job.encoded_len()];
//! job.encode_into(&mut wire);
//! assert_eq!(Job::decode(&wire).unwrap(), job);
//! ```

/// A value a remote channel carries.
pub trait Element: Sized + Send + 'static {
    /// Exact length of the encoding.
    fn encoded_len(&self) -> usize;
    /// Writes the encoding into `out`, which is exactly `encoded_len()` bytes.
    fn encode_into(&self, out: &mut [u8]);
    /// Decodes one value from all of `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError>;
    /// Decodes a value that arrived through shared memory, from a view of the sender's
    /// region. The default copies it out ([`decode`](Self::decode)); a type that can hold
    /// the view instead (`bytes::Bytes`) keeps it and skips the copy. The sender cannot
    /// reuse the span until the view is dropped.
    fn decode_shared(view: SharedView) -> Result<Self, DecodeError> {
        Self::decode(&view)
    }
    /// Decodes a value that arrived inline, from a view of the frame it came in (a
    /// reply's payload, received once into its own buffer). The default copies it out
    /// ([`decode`](Self::decode)); `bytes::Bytes` keeps the view, so a received element
    /// costs no copy beyond the frame's, and holds the frame's memory (the element and a
    /// few header bytes) while it lives.
    fn decode_view(bytes: bytes::Bytes) -> Result<Self, DecodeError> {
        Self::decode(&bytes)
    }
    /// True for a type whose [`decode_view`](Self::decode_view) keeps the view: then a
    /// small element that arrives in a buffer the connection reuses is copied into a block
    /// shared with other small elements (see `small_copy`), not into an allocation of its
    /// own.
    #[doc(hidden)]
    const KEEPS_VIEWS: bool = false;
}

/// Largest element [`small_copy`] takes: above it, an allocation per element costs little
/// beside its copy, and a kept element must not hold much memory it does not use.
pub(crate) const SMALL_COPY_MAX: usize = 512;

/// Size of the blocks [`small_copy`] copies into.
const SMALL_COPY_BLOCK: usize = 8 << 10;

thread_local! {
    static SMALL_COPIES: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::with_capacity(SMALL_COPY_BLOCK));
}

/// A copy of `bytes` (at most [`SMALL_COPY_MAX`]) in a block this thread shares between
/// small elements: one allocation per block instead of one per element, which matters
/// where elements are decoded on one thread and dropped on another (the allocator's
/// per-thread caches do not help then). A block is reused once every copy in it has been
/// dropped, and freed with the last one otherwise; a copy kept alive keeps its block
/// (at most 8 KiB).
pub(crate) fn small_copy(bytes: &[u8]) -> bytes::Bytes {
    debug_assert!(bytes.len() <= SMALL_COPY_MAX);
    let pooled = SMALL_COPIES.try_with(|block| {
        let mut block = block.try_borrow_mut().ok()?; // not reentered today
        // Room in this block, or the whole block back if every copy of it has gone
        // (`reserve` reclaims it then), or a new block of the same size.
        block.reserve(bytes.len());
        block.extend_from_slice(bytes);
        Some(block.split().freeze())
    });
    // A plain copy is never wrong: while the thread's locals are being torn down, say.
    pooled.ok().flatten().unwrap_or_else(|| bytes::Bytes::copy_from_slice(bytes))
}

pub use crate::shm::SharedView;

/// Bytes that do not decode as the channel's element type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("element does not decode: {0}")]
pub struct DecodeError(pub String);

impl Element for Vec<u8> {
    fn encoded_len(&self) -> usize {
        self.len()
    }
    fn encode_into(&self, out: &mut [u8]) {
        out.copy_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes.to_vec())
    }
}

impl Element for Box<[u8]> {
    fn encoded_len(&self) -> usize {
        self.len()
    }
    fn encode_into(&self, out: &mut [u8]) {
        out.copy_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes.into())
    }
}

impl Element for String {
    fn encoded_len(&self) -> usize {
        self.len()
    }
    fn encode_into(&self, out: &mut [u8]) {
        out.copy_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        String::from_utf8(bytes.to_vec()).map_err(|e| DecodeError(e.to_string()))
    }
}

impl Element for bytes::Bytes {
    fn encoded_len(&self) -> usize {
        self.len()
    }
    fn encode_into(&self, out: &mut [u8]) {
        out.copy_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Ok(bytes::Bytes::copy_from_slice(bytes))
    }
    fn decode_shared(view: SharedView) -> Result<Self, DecodeError> {
        Ok(bytes::Bytes::from_owner(view))
    }
    fn decode_view(bytes: bytes::Bytes) -> Result<Self, DecodeError> {
        Ok(bytes)
    }
    const KEEPS_VIEWS: bool = true;
}

/// A value of any serde type, carried with postcard (for types of other crates, which
/// [`postcard_element!`](crate::postcard_element) cannot reach).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Postcard<T>(pub T);

impl<T> Element for Postcard<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    fn encoded_len(&self) -> usize {
        postcard_len(&self.0)
    }
    fn encode_into(&self, out: &mut [u8]) {
        postcard_encode(&self.0, out)
    }
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        postcard_decode(bytes).map(Postcard)
    }
}

/// Implements [`Element`] for a serde type of your crate, through postcard.
#[macro_export]
macro_rules! postcard_element {
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::Element for $t {
            fn encoded_len(&self) -> usize {
                $crate::element::postcard_len(self)
            }
            fn encode_into(&self, out: &mut [u8]) {
                $crate::element::postcard_encode(self, out)
            }
            fn decode(bytes: &[u8]) -> ::core::result::Result<Self, $crate::DecodeError> {
                $crate::element::postcard_decode(bytes)
            }
        }
    )+};
}

/// Length of `v`'s postcard encoding (used by [`postcard_element!`](crate::postcard_element)).
#[doc(hidden)]
pub fn postcard_len<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    postcard::experimental::serialized_size(v).unwrap_or(0)
}

/// Encodes `v` into `out` (used by [`postcard_element!`](crate::postcard_element)). A type whose `Serialize` fails
/// or changes its length between the two calls is a bug in that type: the bytes are left
/// zero, and the receiver's decode reports it.
#[doc(hidden)]
pub fn postcard_encode<T: serde::Serialize + ?Sized>(v: &T, out: &mut [u8]) {
    let _ = postcard::to_slice(v, out);
}

/// Decodes a postcard value that must use all of `bytes` (used by [`postcard_element!`](crate::postcard_element)).
#[doc(hidden)]
pub fn postcard_decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes(bytes) {
        Ok((v, [])) => Ok(v),
        Ok((_, rest)) => Err(DecodeError(format!("{} trailing bytes", rest.len()))),
        Err(e) => Err(DecodeError(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own: a fresh block.
    fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().unwrap();
    }

    #[test]
    fn small_copies_are_neighbours_in_one_block_and_hold_their_bytes() {
        on_fresh_thread(|| {
            let value =
                |i: usize| (0..1 + i % SMALL_COPY_MAX).map(|j| (i * 13 + j) as u8).collect::<Vec<u8>>();
            let mut kept = Vec::new();
            for i in 0..20_000 {
                let copy = small_copy(&value(i));
                assert_eq!(copy, value(i));
                if i % 97 == 0 {
                    kept.push((i, copy));
                }
            }
            for (i, copy) in &kept {
                assert_eq!(*copy, value(*i), "kept copy {i}, after thousands more");
            }
            let (a, b) = (small_copy(b"first"), small_copy(b"second"));
            assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr(), "one block, one after the other");
        });
    }

    #[test]
    fn a_block_whose_copies_have_all_gone_is_taken_back() {
        on_fresh_thread(|| {
            let base = small_copy(&[1; 100]).as_ptr(); // dropped at once
            let full = [2u8; SMALL_COPY_MAX];
            let back =
                (0..=SMALL_COPY_BLOCK / SMALL_COPY_MAX + 1).any(|_| small_copy(&full).as_ptr() == base);
            assert!(back, "the block's start was not used again");
        });
    }

    #[test]
    fn a_kept_copy_keeps_its_bytes_when_the_block_fills_up() {
        on_fresh_thread(|| {
            let keep = small_copy(&[9; 100]);
            let span = keep.as_ptr() as usize..keep.as_ptr() as usize + keep.len();
            for _ in 0..4 * SMALL_COPY_BLOCK / SMALL_COPY_MAX {
                let other = small_copy(&[3u8; SMALL_COPY_MAX]);
                let at = other.as_ptr() as usize;
                assert!(at + other.len() <= span.start || at >= span.end, "written over a kept copy");
            }
            assert_eq!(keep, [9u8; 100][..]);
        });
    }

    #[test]
    fn only_types_that_keep_views_take_small_copies() {
        const { assert!(<bytes::Bytes as Element>::KEEPS_VIEWS) };
        const { assert!(!<Vec<u8> as Element>::KEEPS_VIEWS) };
    }
}
