//! The `ZDESC` attribute's value: where a shared element lies (IPC_PROTOCOL.md, "Shared
//! memory"). Every frame that carries one packs or parses it here.

use kcoro::zcopy::ZDesc;

use super::{Attr, ProtoError};

/// Bytes of a `ZDESC` value: region id, offset and length, each a big-endian `u64`.
pub(crate) const LEN: usize = 24;

/// `d` as a `ZDESC` value.
pub(crate) fn encode(d: &ZDesc) -> [u8; LEN] {
    let mut z = [0u8; LEN];
    z[..8].copy_from_slice(&d.region_id.to_be_bytes());
    z[8..16].copy_from_slice(&d.offset.to_be_bytes());
    z[16..].copy_from_slice(&(d.len as u64).to_be_bytes());
    z
}

/// A `ZDESC` value; anything but exactly [`LEN`] bytes, or a length this machine cannot
/// address, is refused. Whether the span exists is the region table's question.
pub(crate) fn decode(v: &[u8]) -> Result<ZDesc, ProtoError> {
    let bad = || ProtoError::BadValue(Attr::ZDESC.0);
    let z: &[u8; LEN] = v.try_into().map_err(|_| bad())?;
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&z[i..i + 8]);
        u64::from_be_bytes(w)
    };
    let len = usize::try_from(word(16)).map_err(|_| bad())?;
    Ok(ZDesc::in_region(word(0), word(8), len))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_descriptor_survives_its_encoding() {
        for (id, offset, len) in [(0, 0, 0), (1 << 40 | 7, 4096, 65_536), (u64::MAX, u64::MAX, 1)] {
            let d = ZDesc::in_region(id, offset, len);
            let back = decode(&encode(&d)).unwrap();
            assert_eq!((back.region_id, back.offset, back.len), (id, offset, len));
        }
    }

    #[test]
    fn only_exactly_24_bytes_decode() {
        for n in [0, 8, 16, 23, 25, 48] {
            assert!(
                matches!(decode(&vec![0u8; n]), Err(ProtoError::BadValue(a)) if a == Attr::ZDESC.0),
                "{n} bytes"
            );
        }
        let z = encode(&ZDesc::in_region(3, 8, 16));
        assert_eq!(&z[..8], &3u64.to_be_bytes(), "big-endian, id first");
        assert_eq!(&z[16..], &16u64.to_be_bytes());
    }
}
