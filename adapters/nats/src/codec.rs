//! Values on the wire: postcard-encoded payloads, the end marker, and name rules.
//!
//! A bridged channel carries any `T: Serialize + DeserializeOwned` as the postcard
//! encoding of the value (postcard 1.0 wire format: varints, no field names), the same
//! codec kcoro-ipc uses. The end marker is a message with the [`END_HEADER`] header and an
//! empty payload; nothing else is decoded by hand.

use async_nats::HeaderMap;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::NatsError;

/// The header that marks a message as the end of a channel (its close).
pub const END_HEADER: &str = "Kcoro-End";

/// Encodes a value.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes, NatsError> {
    postcard::to_stdvec(value).map(Bytes::from).map_err(|e| NatsError::Codec(e.to_string()))
}

/// Decodes a payload.
pub(crate) fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, NatsError> {
    postcard::from_bytes(payload).map_err(|e| NatsError::Codec(e.to_string()))
}

/// Headers of an end marker.
pub(crate) fn end_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(END_HEADER, "1");
    h
}

/// True if these headers mark the end of the channel.
pub(crate) fn is_end(headers: Option<&HeaderMap>) -> bool {
    headers.is_some_and(|h| h.get(END_HEADER).is_some())
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

    #[test]
    fn values_round_trip() {
        let v = (7u32, "seven".to_string(), vec![1u8, 2, 3]);
        let b = encode(&v).unwrap();
        assert_eq!(decode::<(u32, String, Vec<u8>)>(&b).unwrap(), v);
        assert!(matches!(decode::<(u32, String)>(&b[..2]), Err(NatsError::Codec(_))));
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
    fn end_marker_is_recognised() {
        assert!(is_end(Some(&end_headers())));
        assert!(!is_end(Some(&HeaderMap::new())));
        assert!(!is_end(None));
    }
}
