//! The TLS settings every https server of the `net` suite uses, whatever its runtime: one
//! certificate and key (`bench/tls/`, self-signed for `localhost` and `127.0.0.1`, built
//! into the binary), one rustls [`ServerConfig`] from one builder: the ring provider with
//! its default cipher suites and key exchanges, TLS 1.3 (the only version this build of
//! rustls has), no client authentication. The kcoro server drives it with rustls'
//! blocking `StreamOwned`, the tokio server with tokio-rustls; only the I/O around the
//! session differs.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The server's certificate (PEM), also the one certificate a test client trusts.
pub const CERT_PEM: &[u8] = include_bytes!("../../tls/cert.pem");

/// The certificate's private key (PEM, PKCS#8).
pub const KEY_PEM: &[u8] = include_bytes!("../../tls/key.pem");

/// The ring provider, named once so server and client cannot drift apart.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain (one self-signed certificate).
fn certs() -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(CERT_PEM)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bench/tls/cert.pem: {e}"))
}

/// The server configuration both runtimes share.
pub fn server_config() -> Result<Arc<ServerConfig>, String> {
    let key = PrivateKeyDer::from_pem_slice(KEY_PEM).map_err(|e| format!("bench/tls/key.pem: {e}"))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs()?, key)
        .map_err(|e| format!("rustls server config: {e}"))?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts exactly the suite's certificate (for tests; the
/// load, `wrk`, checks no certificate).
#[cfg(test)]
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs()? {
        roots.add(cert).map_err(|e| format!("trust bench/tls/cert.pem: {e}"))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("rustls versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection, StreamOwned};

    use super::*;

    /// Accepts one loopback connection on a thread and hands `f` its server-side session.
    fn serve_one<R: Send + 'static>(
        f: impl FnOnce(StreamOwned<ServerConnection, std::net::TcpStream>) -> R + Send + 'static,
    ) -> (std::net::SocketAddr, std::thread::JoinHandle<R>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let conn = ServerConnection::new(server_config().unwrap()).unwrap();
            f(StreamOwned::new(conn, sock))
        });
        (addr, server)
    }

    /// A handshake between the two configurations over loopback: the certificate parses,
    /// is valid for `localhost`, and the session carries bytes both ways.
    #[test]
    fn client_trusts_the_server_certificate() {
        let (addr, server) = serve_one(|mut tls| {
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).unwrap();
            tls.write_all(&buf).unwrap();
            tls.flush().unwrap();
            tls.conn.negotiated_cipher_suite().map(|s| s.suite())
        });
        let name = "localhost".try_into().unwrap();
        let conn = ClientConnection::new(client_config().unwrap(), name).unwrap();
        let mut tls = StreamOwned::new(conn, std::net::TcpStream::connect(addr).unwrap());
        tls.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        tls.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
        assert_eq!(tls.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        let suite = server.join().unwrap();
        assert_eq!(suite, tls.conn.negotiated_cipher_suite().map(|s| s.suite()));
    }

    /// A client that trusts nothing refuses the server: the client really checks.
    #[test]
    fn an_untrusting_client_refuses_the_server() {
        let (addr, server) = serve_one(|mut tls| {
            let mut buf = [0u8; 1];
            tls.read(&mut buf).is_err()
        });
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        let conn = ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
        let mut tls = StreamOwned::new(conn, std::net::TcpStream::connect(addr).unwrap());
        assert!(tls.write_all(b"x").and_then(|()| tls.flush()).is_err());
        assert!(server.join().unwrap(), "the server saw the client's alert as an error");
    }
}
