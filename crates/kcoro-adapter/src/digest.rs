//! Digests: SHA-256 for the capability hash (the spec fixes it), and a fast 64-bit
//! streaming digest for payload bytes (the sink compares it per flow against the source).
//!
//! SHA-256 comes from RustCrypto's `sha2`. The payload digest is ours: it runs over every
//! byte of every run, so it consumes 8-byte words: each word is xored into the state,
//! multiplied by an odd constant and rotated, and the tail is padded with its length.
//! Chunk boundaries do not matter: feeding `ab` then `c` equals feeding `abc`.

use sha2::{Digest, Sha256};

/// SHA-256 of `data`, as 64 lowercase hex digits.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Multiplier of the payload digest: an odd 64-bit constant with well-spread bits.
const PAYLOAD_MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// A streaming 64-bit digest of payload bytes. Not cryptographic: it detects lost,
/// duplicated, reordered or corrupted bytes in our own pipeline, quickly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadDigest {
    state: u64,
    len: u64,
    tail: [u8; 8],
    tail_len: usize,
}

impl PayloadDigest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.tail_len > 0 {
            let take = (8 - self.tail_len).min(bytes.len());
            self.tail[self.tail_len..self.tail_len + take].copy_from_slice(&bytes[..take]);
            self.tail_len += take;
            bytes = &bytes[take..];
            if self.tail_len < 8 {
                return;
            }
            self.word(u64::from_le_bytes(self.tail));
            self.tail_len = 0;
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            self.word(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        self.tail[..rest.len()].copy_from_slice(rest);
        self.tail_len = rest.len();
    }

    #[inline]
    fn word(&mut self, w: u64) {
        self.state = (self.state ^ w).wrapping_mul(PAYLOAD_MUL).rotate_left(29);
    }

    /// The digest of everything fed so far (feeding may continue).
    pub fn value(&self) -> u64 {
        let mut last = [0u8; 8];
        last[..self.tail_len].copy_from_slice(&self.tail[..self.tail_len]);
        let s = (self.state ^ u64::from_le_bytes(last)).wrapping_mul(PAYLOAD_MUL);
        crate::rng::mix64(s ^ self.len)
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Nothing fed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn sha256_known_answers() {
        assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let two_blocks = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(
            sha256_hex(two_blocks),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn payload_digest_ignores_chunking_but_not_content() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut whole = PayloadDigest::new();
        whole.update(&data);
        for split in [0, 1, 7, 8, 9, 500, 999, 1000] {
            let mut parts = PayloadDigest::new();
            parts.update(&data[..split]);
            parts.update(&data[split..]);
            assert_eq!(parts.value(), whole.value(), "split at {split}");
        }
        let mut changed = data.clone();
        changed[500] ^= 1;
        let mut other = PayloadDigest::new();
        other.update(&changed);
        assert_ne!(other.value(), whole.value());
        let mut shorter = PayloadDigest::new();
        shorter.update(&data[..999]);
        assert_ne!(shorter.value(), whole.value());
        let mut zero_tail = PayloadDigest::new();
        zero_tail.update(&[0u8; 3]);
        let mut zero_tail2 = PayloadDigest::new();
        zero_tail2.update(&[0u8; 4]);
        assert_ne!(zero_tail.value(), zero_tail2.value(), "length is part of the digest");
    }
}
