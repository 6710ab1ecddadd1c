//! Values on the wire: framed postcard payloads, the end marker, and name rules.
//!
//! A bridged channel carries any `T: Serialize + DeserializeOwned` as a frame: the magic
//! bytes [`MAGIC`], an 8-byte tag naming the element type, then the postcard encoding of
//! the value (postcard 1.0 wire format: varints, no field names, the codec kcoro-ipc
//! uses). A payload decodes only if the magic and the tag match and postcard consumes it
//! to the last byte, so a foreign publish (random bytes, another channel's values, a value
//! with bytes appended) is a codec error, never a value. The end marker of the kinds that
//! still use one is a message with the [`END_HEADER`] header and, as its payload, a frame
//! header of a type of its own ([`end_payload`]): a message with the header alone (a foreign
//! publish, another program's convention) is not an end, so it cannot close anyone's
//! channel by accident. It is not a signature: a program that writes this format on purpose
//! can still close the channel; keeping others off a subject is NATS permissions' job.

use std::any::{Any, TypeId, type_name};

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::NatsError;

/// The header that marks a message as the end of a channel (its close).
pub const END_HEADER: &str = "Kcoro-End";

/// The first bytes of every value's payload: "KC" and the frame version.
pub const MAGIC: [u8; 3] = *b"KC1";

/// Bytes before the value: the magic and the type tag.
const FRAME_HEAD: usize = MAGIC.len() + 8;

/// The tag of values of type `T`: FNV-1a (64 bit) of the type's Rust path. Two programs
/// exchange values when they name the type by the same path (they share the crate that
/// defines it); a structurally equal type under another path is a different type here.
pub(crate) fn type_tag<T: ?Sized>() -> u64 {
    type_name::<T>()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Encodes a value as a frame, cut from the thread's block when small
/// ([`kcoro::buf::small_filled`]: frames are made on the sender's thread and freed on the
/// client's, where an allocation each cost both threads a tenth of their time). `Bytes`
/// values are framed by hand, with the bytes the codec would write (a varint length, then
/// the bytes) and one copy.
pub(crate) fn encode<T: Serialize + 'static>(value: &T) -> Result<Bytes, NatsError> {
    let codec = |e: postcard::Error| NatsError::Codec(e.to_string());
    let head = frame_head::<T>();
    if let Some(bytes) = (value as &dyn Any).downcast_ref::<Bytes>() {
        // The length through the codec, so its varint is the one `decode` reads.
        let mut varint = [0u8; 10];
        let varint = postcard::to_slice(&(bytes.len() as u64), &mut varint).map_err(codec)?;
        return kcoro::buf::small_filled(FRAME_HEAD + varint.len() + bytes.len(), |out| {
            let (out_head, rest) = out.split_at_mut(FRAME_HEAD);
            let (out_len, out_bytes) = rest.split_at_mut(varint.len());
            out_head.copy_from_slice(&head);
            out_len.copy_from_slice(varint);
            out_bytes.copy_from_slice(bytes);
            Ok(())
        });
    }
    // Sized first, so the frame is cut at its size, then written as a slice: postcard
    // writes a `Vec<u8>` element by element, and into a slice each byte is a bounds check
    // and a store, where `to_extend` made a call per byte (6.0 against 0.4 µs for a 4 KiB
    // `Vec<u8>`).
    let size = postcard::experimental::serialized_size(value).map_err(codec)?;
    let mut written = 0;
    let mut frame = kcoro::buf::small_filled(FRAME_HEAD + size, |out| {
        out[..FRAME_HEAD].copy_from_slice(&head);
        written = postcard::to_slice(value, &mut out[FRAME_HEAD..]).map_err(codec)?.len();
        Ok::<(), NatsError>(())
    })?;
    frame.truncate(FRAME_HEAD + written);
    Ok(frame)
}

/// The bytes every frame of a `T` starts with: the magic, then `T`'s tag.
fn frame_head<T: ?Sized>() -> [u8; FRAME_HEAD] {
    let mut head = [0u8; FRAME_HEAD];
    head[..MAGIC.len()].copy_from_slice(&MAGIC);
    head[MAGIC.len()..].copy_from_slice(&type_tag::<T>().to_le_bytes());
    head
}

/// Decodes a frame: the magic, `T`'s tag, and a value that ends where the payload ends.
/// A `Bytes` value is a slice of `payload`, not a copy.
pub(crate) fn decode<T: DeserializeOwned + 'static>(payload: &Bytes) -> Result<T, NatsError> {
    let body = body_of::<T>(payload)?;
    if TypeId::of::<T>() != TypeId::of::<Bytes>() {
        return decode_body(body);
    }
    // The length as the codec reads it (the same varint rules), then the bytes to the end.
    let (len, rest) = postcard::take_from_bytes::<u64>(body).map_err(|e| NatsError::Codec(e.to_string()))?;
    if len != rest.len() as u64 {
        return Err(NatsError::Codec(format!("{len} bytes announced, {} in the payload", rest.len())));
    }
    let mut value = Some(payload.slice(payload.len() - rest.len()..));
    (&mut value as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
        .ok_or_else(|| NatsError::Codec("not Bytes".to_string()))
}

/// What follows the frame header, once the magic and `T`'s tag are checked.
fn body_of<T: ?Sized>(payload: &[u8]) -> Result<&[u8], NatsError> {
    let bad = |why: &str| Err(NatsError::Codec(why.to_string()));
    let Some((head, body)) = payload.split_at_checked(FRAME_HEAD) else {
        return bad("payload shorter than a frame header (not a kcoro value)");
    };
    if head[..MAGIC.len()] != MAGIC {
        return bad("no kcoro frame magic (not a kcoro value)");
    }
    if head[MAGIC.len()..] != type_tag::<T>().to_le_bytes() {
        return bad("type tag differs (a value of another type)");
    }
    Ok(body)
}

/// A value through the codec that ends where `body` ends.
fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, NatsError> {
    match postcard::take_from_bytes::<T>(body) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(NatsError::Codec(format!("{} bytes after the value", rest.len()))),
        Err(e) => Err(NatsError::Codec(e.to_string())),
    }
}

/// [`decode`] always through the codec, without the `Bytes` shortcut: what the shortcut
/// must agree with (the fuzz target compares them).
pub(crate) fn decode_by_codec<T: DeserializeOwned>(payload: &[u8]) -> Result<T, NatsError> {
    decode_body(body_of::<T>(payload)?)
}

/// Headers of an end marker.
pub(crate) fn end_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(END_HEADER, "1");
    h
}

/// The type whose tag the end marker's payload carries (no value of it is ever sent).
struct EndMarker;

/// Payload of an end marker: the frame magic and [`EndMarker`]'s tag, nothing after.
pub(crate) fn end_payload() -> Bytes {
    Bytes::copy_from_slice(&frame_head::<EndMarker>())
}

/// True if a message with these headers and this payload marks the end of the channel:
/// the header and the marker's payload, both.
pub(crate) fn is_end(headers: Option<&HeaderMap>, payload: &[u8]) -> bool {
    headers.is_some_and(|h| h.get(END_HEADER).is_some()) && payload == frame_head::<EndMarker>()
}

/// Checks a subject to publish or subscribe on: non-empty tokens separated by `.`, no
/// whitespace; wildcards (`*`, `>` as whole tokens, `>` last) only where `wildcards`.
pub(crate) fn check_subject(subject: &str, wildcards: bool) -> Result<(), NatsError> {
    let bad = |why| Err(NatsError::BadName { what: "subject", name: subject.to_string(), why });
    if subject.is_empty() {
        return bad("empty");
    }
    if subject.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains whitespace or control characters");
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return bad("has an empty token (leading, trailing or doubled '.')");
        }
        let wild = *token == "*" || *token == ">";
        if !wild && (token.contains('*') || token.contains('>')) {
            return bad("'*' and '>' must be whole tokens");
        }
        if wild && !wildcards {
            return bad("wildcards cannot be published to");
        }
        if *token == ">" && i + 1 != tokens.len() {
            return bad("'>' must be the last token");
        }
    }
    Ok(())
}

/// Checks a stream or bucket name: 1..=64 characters from `A-Za-z0-9_-` (so it is also a
/// single subject token and a file name on the server).
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), NatsError> {
    let bad = |why| Err(NatsError::BadName { what, name: name.to_string(), why });
    if name.is_empty() || name.len() > 64 {
        return bad("must be 1 to 64 characters");
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return bad("may hold only A-Z a-z 0-9 _ -");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded<T: DeserializeOwned + 'static>(payload: &[u8]) -> Result<T, NatsError> {
        decode(&Bytes::copy_from_slice(payload))
    }

    #[test]
    fn values_round_trip() {
        let v = (7u32, "seven".to_string(), vec![1u8, 2, 3]);
        let b = encode(&v).unwrap();
        assert_eq!(&b[..3], b"KC1");
        assert_eq!(decoded::<(u32, String, Vec<u8>)>(&b).unwrap(), v);
        for cut in [0, 2, FRAME_HEAD, b.len() - 1] {
            assert!(
                matches!(decoded::<(u32, String, Vec<u8>)>(&b[..cut]), Err(NatsError::Codec(_))),
                "{cut}"
            );
        }
    }

    #[test]
    fn foreign_payloads_are_codec_errors() {
        let b = encode(&7u64).unwrap();
        // Another type, even one postcard would read from these bytes.
        assert!(matches!(decoded::<u32>(&b), Err(NatsError::Codec(_))));
        // Trailing bytes.
        let mut longer = b.to_vec();
        longer.push(0);
        assert!(matches!(decoded::<u64>(&longer), Err(NatsError::Codec(_))));
        // The bare postcard encoding, and an empty payload (an old end marker).
        assert!(decoded::<u64>(&postcard::to_stdvec(&7u64).unwrap()).is_err());
        assert!(decoded::<u64>(&[]).is_err());
        // Random bytes: a deterministic generator, so a failure reproduces.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..10_000 {
            let blob: Vec<u8> = (0..100)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            assert!(decoded::<(u64, String)>(&blob).is_err());
            // Even behind a valid header, random bytes are not a value that ends there.
            let mut framed = encode(&(0u64, String::new())).unwrap()[..FRAME_HEAD].to_vec();
            framed.extend_from_slice(&blob);
            assert!(decoded::<(u64, String)>(&framed).is_err());
        }
    }

    #[test]
    fn bytes_are_framed_as_the_codec_frames_them_and_received_without_a_copy() {
        for len in [0, 1, 127, 128, 16_383, 16_384, 70_000] {
            let value = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            let framed = encode(&value).unwrap();
            let mut by_codec = framed[..FRAME_HEAD].to_vec();
            by_codec.extend_from_slice(&postcard::to_stdvec(&value).unwrap());
            assert_eq!(framed[..], by_codec[..], "{len} bytes");
            let back = decode::<Bytes>(&framed).unwrap();
            assert_eq!(back, value);
            assert_eq!(decode_by_codec::<Bytes>(&framed).unwrap(), value);
            if len > 0 {
                let inside = framed.as_ptr_range();
                assert!(inside.contains(&back.as_ptr()), "a view of the payload, not a copy");
            }
        }
    }

    #[test]
    fn bytes_with_a_wrong_length_are_refused_as_the_codec_refuses_them() {
        let framed = encode(&Bytes::from_static(b"twelve bytes")).unwrap();
        let mut longer = framed.to_vec();
        longer.push(b'!');
        let shorter = framed.slice(..framed.len() - 1);
        for bad in [Bytes::from(longer), shorter, framed.slice(..FRAME_HEAD)] {
            assert!(matches!(decode::<Bytes>(&bad), Err(NatsError::Codec(_))), "{bad:?}");
            assert!(decode_by_codec::<Bytes>(&bad).is_err(), "{bad:?}");
        }
        // Another byte type's frame is another type.
        assert!(decode::<Bytes>(&encode(&b"twelve bytes".to_vec()).unwrap()).is_err());
    }

    #[test]
    fn subjects_follow_the_rules() {
        for good in ["a", "ticks.eu", "a.b-c.d_e", "x.y.z"] {
            assert!(check_subject(good, false).is_ok(), "{good}");
        }
        for good in ["a.*", "a.>", "*.b"] {
            assert!(check_subject(good, true).is_ok(), "{good}");
            assert!(check_subject(good, false).is_err(), "{good}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a.>.b", "a*", "t\tx"] {
            assert!(matches!(check_subject(bad, true), Err(NatsError::BadName { .. })), "{bad:?}");
        }
    }

    #[test]
    fn names_follow_the_rules() {
        assert!(check_name("stream name", "jobs_1-a").is_ok());
        for bad in ["", "a.b", "a b", "a*", &"x".repeat(65)] {
            assert!(check_name("stream name", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn end_marker_needs_its_header_and_its_payload() {
        let payload = end_payload();
        assert!(is_end(Some(&end_headers()), &payload));
        assert!(!is_end(Some(&HeaderMap::new()), &payload));
        assert!(!is_end(None, &payload));
        // The header alone, or with any other payload, is not an end.
        assert!(!is_end(Some(&end_headers()), b""));
        assert!(!is_end(Some(&end_headers()), &payload[..FRAME_HEAD - 1]));
        assert!(!is_end(Some(&end_headers()), &[&payload[..], b"x"].concat()));
        assert!(!is_end(Some(&end_headers()), &encode(&0u64).unwrap()));
        // No value of any type decodes from it.
        assert!(decode::<u64>(&payload).is_err());
        assert!(decode::<Bytes>(&payload).is_err());
    }
}
