//! A TLS echo server on `kcoro::net` with rustls' blocking `StreamOwned`, and no async
//! runtime anywhere: each connection's coroutine runs the handshake and every record, and
//! a read or write that would block parks that coroutine, not its worker. Client
//! coroutines connect over TLS, trust exactly the test certificate in `bench/tls/`, send
//! their messages and check every echoed byte.
//!
//! ```sh
//! cargo run --release -p kcoro-bench --example tls_echo            # 100 connections x 100 messages
//! cargo run --release -p kcoro-bench --example tls_echo -- 10 20   # CONNECTIONS MESSAGES
//! ```

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use kcoro::net::{TcpListener, TcpStream};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Built into the binary, so the example runs from any directory. Self-signed for
/// `localhost`; see bench/tls/README.md (a test key: never trust it elsewhere).
const CERT_PEM: &[u8] = include_bytes!("../tls/cert.pem");
const KEY_PEM: &[u8] = include_bytes!("../tls/key.pem");

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config() -> Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_slice_iter(CERT_PEM).collect::<std::result::Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_slice(KEY_PEM)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// Trusts the test certificate and nothing else: a wrong certificate fails the handshake.
fn client_config() -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(CERT_PEM) {
        roots.add(cert?)?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Echoes until the client ends the session.
fn serve(stream: TcpStream, config: Arc<ServerConfig>) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut tls = StreamOwned::new(ServerConnection::new(config)?, stream);
    let mut buf = [0u8; 4096];
    loop {
        let n = match tls.read(&mut buf) {
            Ok(0) => return Ok(()), // the client's close_notify
            Ok(n) => n,
            // A client that hangs up without close_notify: an ending, not a failure here.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        tls.write_all(&buf[..n])?;
        // rustls seals the bytes into records; flush makes sure they are on the socket.
        tls.flush()?;
    }
}

fn accept_loop(listener: TcpListener, config: Arc<ServerConfig>) {
    while let Ok((stream, _)) = listener.accept() {
        let config = Arc::clone(&config);
        // `spread`: connections start on the workers in turn; a dropped handle detaches.
        let spawned = kcoro::spawn_with(kcoro::SpawnOptions::new().spread(), move || {
            if let Err(e) = serve(stream, config) {
                eprintln!("tls_echo: connection: {e}");
            }
        });
        if let Err(e) = spawned {
            eprintln!("tls_echo: spawn: {e}");
        }
    }
}

/// One connection: `messages` round trips, each checked; returns the version and cipher
/// suite the session used.
fn client(addr: SocketAddr, config: Arc<ClientConfig>, id: usize, messages: usize) -> Result<String> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let session = ClientConnection::new(config, ServerName::try_from("localhost")?)?;
    let mut tls = StreamOwned::new(session, stream);
    for i in 0..messages {
        let msg = format!("client {id} message {i}\n");
        tls.write_all(msg.as_bytes())?;
        tls.flush()?;
        let mut back = vec![0u8; msg.len()];
        tls.read_exact(&mut back)?;
        if back != msg.as_bytes() {
            return Err(format!("client {id}: sent {msg:?}, got {:?}", String::from_utf8_lossy(&back)).into());
        }
    }
    let version = match tls.conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
        other => format!("{other:?}"),
    };
    let suite = tls.conn.negotiated_cipher_suite().ok_or("no cipher suite negotiated")?.suite();
    tls.conn.send_close_notify();
    tls.flush()?;
    Ok(format!("{version} ({suite:?})"))
}

/// `[CONNECTIONS [MESSAGES]]`, default 100 and 100.
fn args() -> Result<(usize, usize)> {
    let mut args = std::env::args().skip(1);
    let mut next = |default: usize| -> Result<usize> {
        Ok(args.next().map(|a| a.parse()).transpose()?.unwrap_or(default))
    };
    Ok((next(100)?, next(100)?))
}

fn main() -> Result<()> {
    let (connections, messages) = args()?;
    let (server, client_config) = (server_config()?, client_config()?);
    kcoro::run(move || {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        drop(kcoro::spawn(move || accept_loop(listener, server))); // ends with the runtime
        let clients: Vec<_> = (0..connections)
            .map(|id| {
                let config = Arc::clone(&client_config);
                kcoro::spawn(move || client(addr, config, id, messages))
            })
            .collect();
        let mut sessions = BTreeSet::new();
        for c in clients {
            sessions.insert(c.join().map_err(|e| format!("client coroutine: {e}"))??);
        }
        let sessions: Vec<_> = sessions.into_iter().collect();
        println!(
            "tls_echo: {connections} connections x {messages} messages echoed exactly over {}",
            sessions.join(", ")
        );
        Ok(())
    })
}
