//! The `net` suite's servers on tokio: a multi-thread runtime of the requested worker
//! count, the accept loop as a spawned task, one task per connection (and a second task
//! per proxied connection for the way back), the same logic as the kcoro servers. The
//! https server is the http one inside tokio-rustls, with the kcoro server's rustls
//! configuration.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::proto::{self, CONN_BUF, RESPONSE};
use super::{OnListen, Service, tls};

/// Runs `service` on a runtime of `workers` workers; calls `on_listen` with its address
/// once it listens, then serves until the process exits.
pub fn serve(service: Service, workers: usize, on_listen: OnListen) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    rt.block_on(async move {
        // Spawned, so the accept loop runs on a worker as the connections do, not on the
        // thread that called `block_on`.
        tokio::spawn(accept_loop(service, on_listen)).await.map_err(|e| format!("accept task: {e}"))?
    })
}

async fn accept_loop(service: Service, on_listen: OnListen) -> Result<(), String> {
    // Only kcoro backs the load balancers' 1 MiB rows; say so before listening.
    if service == Service::Big {
        return Err("the tokio servers have no `big` service".to_string());
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("bind: {e}"))?;
    let backend = match service {
        Service::Proxy => Some(start_backend().await?),
        _ => None,
    };
    let acceptor = match service {
        Service::Https => Some(tokio_rustls::TlsAcceptor::from(tls::server_config()?)),
        _ => None,
    };
    on_listen(listener.local_addr().map_err(|e| format!("local_addr: {e}"))?);
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| format!("accept: {e}"))?;
        match (service, backend, &acceptor) {
            (Service::Http, _, _) => tokio::spawn(http(stream)),
            (Service::Https, _, Some(a)) => tokio::spawn(https(stream, a.clone())),
            (Service::Echo, _, _) => tokio::spawn(echo(stream)),
            (Service::Proxy, Some(b), _) => tokio::spawn(proxy(stream, b)),
            (Service::Big, _, _) | (Service::Proxy, None, _) | (Service::Https, _, None) => {
                return Err(format!("{service:?} without its backend or TLS acceptor"));
            }
        };
    }
}

/// The proxy's echo backend: its own listener and accept task on the same runtime.
async fn start_backend() -> Result<SocketAddr, String> {
    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("bind backend: {e}"))?;
    let addr = listener.local_addr().map_err(|e| format!("backend local_addr: {e}"))?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(echo(stream));
        }
    });
    Ok(addr)
}

/// HTTP/1.1 keep-alive on a plain connection.
async fn http(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    exchange(stream).await;
}

/// HTTP/1.1 keep-alive inside a TLS session, after the handshake.
async fn https(stream: TcpStream, acceptor: tokio_rustls::TlsAcceptor) {
    let _ = stream.set_nodelay(true);
    let Ok(session) = acceptor.accept(stream).await else { return };
    exchange(session).await;
}

/// The hello exchange: answer every complete request head, pipelined ones in one write
/// (flushed: tokio-rustls may keep sealed records buffered until then).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    let mut buf = [0u8; CONN_BUF];
    let mut len = 0;
    let mut out = Vec::with_capacity(RESPONSE.len());
    loop {
        match io.read(&mut buf[len..]).await {
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
        out.clear();
        for _ in 0..requests {
            out.extend_from_slice(RESPONSE);
        }
        if io.write_all(&out).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
}

/// Echo: write back whatever arrives.
async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; CONN_BUF];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        proto::count(1);
        if stream.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Proxy: connect to the backend, then copy each way, the way back on its own task.
async fn proxy(client: TcpStream, backend: SocketAddr) {
    let Ok(upstream) = TcpStream::connect(backend).await else { return };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_rd, client_wr) = client.into_split();
    let (upstream_rd, upstream_wr) = upstream.into_split();
    let back = tokio::spawn(pipe(upstream_rd, client_wr, false));
    pipe(client_rd, upstream_wr, true).await;
    let _ = back.await;
}

/// Copies `from` to `to` until `from` ends, then half-closes `to`. `count`: whether each
/// forwarded read counts as a request (the client-to-backend way does).
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, count: bool) {
    let mut buf = [0u8; CONN_BUF];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if count {
            proto::count(1);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
