//! reqwest from a thousand coroutines: each sends its GETs with one shared
//! `reqwest::Client` through `kcoro::compat::tokio::wait`, which polls reqwest's futures
//! inside the bridge's tokio runtime and parks the coroutine, not its worker, until tokio's
//! reactor has the answer. The server is a minimal keep-alive HTTP/1.1 responder on
//! `kcoro::net`, one coroutine per connection, whose body names the path it was asked
//! for, so every client checks it got its own answer.
//!
//! ```sh
//! cargo run --release -p kcoro-bench --example reqwest_fanout            # 1000 coroutines x 10 GETs
//! cargo run --release -p kcoro-bench --example reqwest_fanout -- 100 5   # COROUTINES GETS
//! ```

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Instant;

use kcoro::net::{TcpListener, TcpStream};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A fetcher's stack. `wait` polls reqwest's futures on the coroutine's own stack, and an
/// unoptimised build's send needs more than the default 64 KiB (between 96 and 128 KiB
/// here; an optimised one fits in 64): room for both, in address space only until touched.
const FETCHER_STACK: usize = 256 << 10;

/// End of a request head; the client sends `GET`s, which have no body.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// What the server answers to `GET <path>`.
fn body_for(path: &str) -> String {
    format!("hello from {path}")
}

/// Answers every complete request head on the connection until the client closes it.
fn serve(mut stream: TcpStream) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?; // parks this coroutine only
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        while let Some(end) = buf.windows(HEAD_END.len()).position(|w| w == HEAD_END) {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + HEAD_END.len());
            // The request line is `GET <path> HTTP/1.1`.
            let path = head.split(' ').nth(1).ok_or("request line without a path")?;
            let body = body_for(path);
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
        }
        stream.write_all(&out)?; // pipelined requests, if any, answered in one write
    }
}

fn accept_loop(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept() {
        // `spread`: connections start on the workers in turn; a dropped handle detaches.
        let spawned = kcoro::spawn_with(kcoro::SpawnOptions::new().spread(), move || {
            if let Err(e) = serve(stream) {
                eprintln!("reqwest_fanout: connection: {e}");
            }
        });
        if let Err(e) = spawned {
            eprintln!("reqwest_fanout: spawn: {e}");
        }
    }
}

/// One coroutine's GETs, each status and body checked.
fn fetch(client: reqwest::Client, addr: SocketAddr, id: usize, gets: usize) -> Result<()> {
    for i in 0..gets {
        let path = format!("/{id}/{i}");
        let url = format!("http://{addr}{path}");
        // The `async` block is built here but polled inside tokio's context by `wait`,
        // which is where reqwest needs to be; `??`: first the wait, then reqwest's result.
        let (status, body) = kcoro::compat::tokio::wait(async {
            let response = client.get(&url).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        })??;
        if status != reqwest::StatusCode::OK || body != body_for(&path) {
            return Err(format!("GET {url}: {status} {body:?}").into());
        }
    }
    Ok(())
}

/// A thousand connections need two thousand descriptors here (both ends are in this
/// process): raise the soft limit to the hard one, as servers do.
fn raise_open_file_limit() -> std::io::Result<()> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a live, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    lim.rlim_cur = lim.rlim_max;
    // SAFETY: `lim` is a valid `rlimit` whose soft value does not exceed its hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `[COROUTINES [GETS]]`, default 1000 and 10.
fn args() -> Result<(usize, usize)> {
    let mut args = std::env::args().skip(1);
    let mut next = |default: usize| -> Result<usize> {
        Ok(args.next().map(|a| a.parse()).transpose()?.unwrap_or(default))
    };
    Ok((next(1000)?, next(10)?))
}

fn main() -> Result<()> {
    let (coroutines, gets) = args()?;
    raise_open_file_limit()?;
    // One client for all: its pool keeps a connection per request in flight, and reuses it.
    let client = reqwest::Client::builder().no_proxy().build()?;
    kcoro::run(move || {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        drop(kcoro::spawn(move || accept_loop(listener))); // ends with the runtime
        let start = Instant::now();
        let fetchers: Vec<_> = (0..coroutines)
            .map(|id| {
                let client = client.clone();
                let options = kcoro::SpawnOptions::new().stack_size(FETCHER_STACK);
                kcoro::spawn_with(options, move || fetch(client, addr, id, gets))
            })
            .collect::<std::result::Result<_, _>>()?;
        for f in fetchers {
            f.join().map_err(|e| format!("fetching coroutine: {e}"))??;
        }
        let elapsed = start.elapsed();
        let total = coroutines * gets;
        println!(
            "reqwest_fanout: {total} GETs from {coroutines} coroutines answered and checked in {:.2} s ({:.0} requests/s)",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        );
        Ok(())
    })
}
