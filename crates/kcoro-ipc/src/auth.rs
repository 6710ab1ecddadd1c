//! The shared-secret handshake: HMAC-SHA256 challenge and response, both ways.
//!
//! # Protocol
//! 1. The server's HELLO reply carries `AUTH_REQUIRED = 1` and a random 32-byte `NONCE`
//!    (`s`).
//! 2. The client sends AUTH with its own random `NONCE` (`c`) and
//!    `MAC = HMAC(secret, "kcoro-ipc client" || s || c)`.
//! 3. The server checks the MAC (constant-time) and replies `RESULT = 0` with
//!    `MAC = HMAC(secret, "kcoro-ipc server" || c || s)`, which the client checks: each side
//!    proves it knows the secret without sending it, and neither answer can be replayed
//!    into the other direction or another connection. A wrong MAC is answered `-EACCES` and
//!    the connection closed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::IpcError;

/// Bytes of a nonce and of a MAC.
pub const NONCE_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

const CLIENT: &[u8] = b"kcoro-ipc client";
const SERVER: &[u8] = b"kcoro-ipc server";

/// A fresh random nonce.
pub(crate) fn nonce() -> Result<[u8; NONCE_LEN], IpcError> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n).map_err(|e| IpcError::Auth(format!("no randomness: {e}")))?;
    Ok(n)
}

fn mac(secret: &[u8], label: &[u8], a: &[u8], b: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length; this cannot fail.
    let mut m =
        <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("HMAC accepts any key"));
    m.update(label);
    m.update(a);
    m.update(b);
    m
}

/// The client's answer to the server nonce `s`, with its own nonce `c`.
pub(crate) fn client_mac(secret: &[u8], s: &[u8], c: &[u8]) -> Vec<u8> {
    mac(secret, CLIENT, s, c).finalize().into_bytes().to_vec()
}

/// The server's answer to the client nonce `c`.
pub(crate) fn server_mac(secret: &[u8], c: &[u8], s: &[u8]) -> Vec<u8> {
    mac(secret, SERVER, c, s).finalize().into_bytes().to_vec()
}

/// Checks a client answer in constant time.
pub(crate) fn check_client(secret: &[u8], s: &[u8], c: &[u8], answer: &[u8]) -> bool {
    mac(secret, CLIENT, s, c).verify_slice(answer).is_ok()
}

/// Checks a server answer in constant time.
pub(crate) fn check_server(secret: &[u8], c: &[u8], s: &[u8], answer: &[u8]) -> bool {
    mac(secret, SERVER, c, s).verify_slice(answer).is_ok()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn answers_check_only_with_the_same_secret_and_direction() {
        let (s, c) = (nonce().unwrap(), nonce().unwrap());
        assert_ne!(s, c);
        let a = client_mac(b"secret", &s, &c);
        assert!(check_client(b"secret", &s, &c, &a));
        assert!(!check_client(b"other", &s, &c, &a));
        assert!(!check_client(b"secret", &c, &s, &a), "nonces swapped");
        assert!(!check_server(b"secret", &c, &s, &a), "a client answer is not a server answer");
        let b = server_mac(b"secret", &c, &s);
        assert!(check_server(b"secret", &c, &s, &b));
        assert!(!check_server(b"secret", &c, &s, &b[..31]));
    }
}
