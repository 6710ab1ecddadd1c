//! The `net` suite's servers on kcoro: a runtime of the requested worker count,
//! `kcoro::net` sockets, one coroutine per connection spawned by one accept loop (and a
//! second coroutine per proxied connection for the way back), written as a new user
//! would write them with blocking-style calls: `accept`, then a plain `kcoro::spawn`.
//! With two workers the connections share them: the spawn right after an accept starts on
//! the workers in turn (started coroutines never move), without `SpawnOptions::spread()`.
//!
//! The `big` server (the load balancers' throughput rows) is the http one answering with
//! [`proto::big_response`], 1 MiB of body per `GET`.
//!
//! The https server is the http one inside rustls' blocking `StreamOwned`: the handshake
//! and every record are read and written on the connection's coroutine, which parks on
//! the socket like any other blocking-style read; no async, no second runtime.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;

use kcoro::net::{TcpListener, TcpStream};

use super::proto::{self, CONN_BUF, RESPONSE};
use super::{OnListen, Service, tls};

/// Runs `service` on a runtime of `workers` workers; calls `on_listen` with its address
/// once it listens, then serves until the process exits.
pub fn serve(service: Service, workers: usize, on_listen: OnListen) -> Result<(), String> {
    let rt = kcoro::Runtime::builder()
        .workers(workers)
        .name("net")
        .build()
        .map_err(|e| format!("kcoro runtime: {e}"))?;
    rt.block_on(move || -> Result<(), String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let handler = match service {
            Service::Http => Handler::Http(RESPONSE),
            Service::Big => Handler::Http(proto::big_response()),
            Service::Https => Handler::Https(tls::server_config()?),
            Service::Echo => Handler::Echo,
            Service::Proxy => Handler::Proxy(start_backend()?),
        };
        on_listen(listener.local_addr().map_err(|e| format!("local_addr: {e}"))?);
        loop {
            let (stream, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
            let handler = handler.clone();
            kcoro::spawn(move || handler.serve(stream));
        }
    })
}

/// What a connection's coroutine runs, with what it needs.
#[derive(Clone)]
enum Handler {
    /// HTTP with this one response.
    Http(&'static [u8]),
    Https(Arc<rustls::ServerConfig>),
    Echo,
    Proxy(SocketAddr),
}

impl Handler {
    fn serve(self, stream: TcpStream) {
        match self {
            Handler::Http(response) => http(stream, response),
            Handler::Https(config) => https(stream, config),
            Handler::Echo => echo(stream),
            Handler::Proxy(backend) => proxy(stream, backend),
        }
    }
}

/// The proxy's echo backend: its own listener and accept loop on the same runtime.
fn start_backend() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind backend: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("backend local_addr: {e}"))?;
    kcoro::spawn(move || {
        while let Ok((stream, _)) = listener.accept() {
            kcoro::spawn(move || echo(stream));
        }
    });
    Ok(addr)
}

/// HTTP/1.1 keep-alive on a plain connection.
fn http(stream: TcpStream, response: &'static [u8]) {
    let _ = stream.set_nodelay(true);
    exchange(stream, response);
}

/// HTTP/1.1 keep-alive inside a TLS session; the handshake happens on the first read.
fn https(stream: TcpStream, config: Arc<rustls::ServerConfig>) {
    let _ = stream.set_nodelay(true);
    let Ok(session) = rustls::ServerConnection::new(config) else { return };
    exchange(rustls::StreamOwned::new(session, stream), RESPONSE);
}

/// The hello exchange: answer every complete request head with `response`, one request
/// straight from the static bytes, pipelined ones in one write (flushed, so a TLS session
/// seals and sends its records before the next read).
fn exchange(mut io: impl Read + Write, response: &'static [u8]) {
    let mut buf = [0u8; CONN_BUF];
    let mut len = 0;
    let mut out = Vec::new();
    loop {
        match io.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
        let (requests, used) = proto::take_requests(&buf[..len]);
        if requests == 0 {
            if len == buf.len() {
                return; // a head larger than the buffer: not our load
            }
            continue;
        }
        buf.copy_within(used..len, 0);
        len -= used;
        proto::count(requests as u64);
        let answer = if requests == 1 {
            response
        } else {
            out.clear();
            for _ in 0..requests {
                out.extend_from_slice(response);
            }
            &out
        };
        if io.write_all(answer).and_then(|()| io.flush()).is_err() {
            return;
        }
    }
}

/// Echo: write back whatever arrives.
fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; CONN_BUF];
    loop {
        let n = match (&stream).read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        proto::count(1);
        if (&stream).write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

/// Proxy: connect to the backend, then copy each way, the way back on its own coroutine.
fn proxy(client: TcpStream, backend: SocketAddr) {
    let Ok(upstream) = TcpStream::connect(backend) else { return };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client, upstream) = (Arc::new(client), Arc::new(upstream));
    let back = {
        let (client, upstream) = (Arc::clone(&client), Arc::clone(&upstream));
        kcoro::spawn(move || pipe(&upstream, &client, false))
    };
    pipe(&client, &upstream, true);
    let _ = back.join();
}

/// Copies `from` to `to` until `from` ends, then half-closes `to`. `count`: whether each
/// forwarded read counts as a request (the client-to-backend way does).
fn pipe(from: &TcpStream, to: &TcpStream, count: bool) {
    let mut buf = [0u8; CONN_BUF];
    loop {
        let n = match (&*from).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if count {
            proto::count(1);
        }
        if (&*to).write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
