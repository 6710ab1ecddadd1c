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
    /// shared with other small elements (see `kcoro::buf::small_copy`), not into an allocation of its
    /// own.
    #[doc(hidden)]
    const KEEPS_VIEWS: bool = false;
    /// True for a type whose [`decode_shared`](Self::decode_shared) keeps the view of the
    /// sender's region instead of copying it: a server then counts such elements queued
    /// for its channels as the sender's memory, not its own (see `Attr::COPIES_SHARED`).
    /// A type that copies must leave it false, or its copies escape the server's window.
    const KEEPS_SHARED_VIEWS: bool = false;
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
    const KEEPS_SHARED_VIEWS: bool = true;
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

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn only_types_that_keep_views_take_small_copies() {
        const { assert!(<bytes::Bytes as Element>::KEEPS_VIEWS) };
        const { assert!(!<Vec<u8> as Element>::KEEPS_VIEWS) };
    }
}
