//! The PROXY protocol header (HAProxy's specification, versions 1 and 2) that tells a
//! backend who the client was: sent once, before any of the client's bytes.

use std::net::SocketAddr;

use crate::config::ProxyProtocol;

/// The version 2 signature, the first 12 bytes of every v2 header.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY.
const V2_PROXY: u8 = 0x21;
/// Address family and transport: TCP over IPv4 or IPv6.
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;

/// The header for a connection from `client` that arrived at `local`.
pub(crate) fn header(version: ProxyProtocol, client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    // Mixed families (an IPv4 client on an IPv6 socket) are written as IPv6.
    let (client, local) = match (client, local) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => (client, local),
        _ => (as_v6(client), as_v6(local)),
    };
    match version {
        ProxyProtocol::V1 => v1(client, local),
        ProxyProtocol::V2 => v2(client, local),
    }
}

fn as_v6(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V4(v4) => SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port())),
        v6 => v6,
    }
}

fn v1(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {family} {} {} {} {}\r\n", client.ip(), local.ip(), client.port(), local.port())
        .into_bytes()
}

fn v2(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let mut h = Vec::with_capacity(16 + 36);
    h.extend_from_slice(&V2_SIGNATURE);
    h.push(V2_PROXY);
    match (client, local) {
        (SocketAddr::V4(c), SocketAddr::V4(l)) => {
            h.push(V2_TCP4);
            h.extend_from_slice(&12u16.to_be_bytes());
            h.extend_from_slice(&c.ip().octets());
            h.extend_from_slice(&l.ip().octets());
        }
        (SocketAddr::V6(c), SocketAddr::V6(l)) => {
            h.push(V2_TCP6);
            h.extend_from_slice(&36u16.to_be_bytes());
            h.extend_from_slice(&c.ip().octets());
            h.extend_from_slice(&l.ip().octets());
        }
        _ => unreachable!("header() makes both addresses one family"),
    }
    h.extend_from_slice(&client.port().to_be_bytes());
    h.extend_from_slice(&local.port().to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_is_one_text_line() {
        let h = header(ProxyProtocol::V1, addr("192.168.0.1:56324"), addr("192.168.0.11:443"));
        assert_eq!(h, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        let h = header(ProxyProtocol::V1, addr("[::1]:5000"), addr("[2001:db8::2]:80"));
        assert_eq!(h, b"PROXY TCP6 ::1 2001:db8::2 5000 80\r\n");
    }

    #[test]
    fn v2_is_the_signature_then_addresses_in_network_order() {
        let h = header(ProxyProtocol::V2, addr("10.0.0.1:1234"), addr("10.0.0.2:80"));
        let mut want = V2_SIGNATURE.to_vec();
        want.extend_from_slice(&[0x21, 0x11, 0, 12, 10, 0, 0, 1, 10, 0, 0, 2, 0x04, 0xd2, 0, 80]);
        assert_eq!(h, want);
        let h = header(ProxyProtocol::V2, addr("[::1]:1"), addr("[::2]:2"));
        assert_eq!((h[13], u16::from_be_bytes([h[14], h[15]]), h.len()), (0x21, 36, 16 + 36));
    }

    #[test]
    fn mixed_families_are_written_as_ipv6() {
        let h = header(ProxyProtocol::V1, addr("10.0.0.1:1"), addr("[::1]:2"));
        assert_eq!(h, b"PROXY TCP6 ::ffff:10.0.0.1 ::1 1 2\r\n");
    }
}
