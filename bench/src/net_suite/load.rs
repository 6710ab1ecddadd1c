//! The built-in load generator: closed-loop, like `wrk`. One thread and one `epoll`
//! (mio) drive every connection; each connection has one request in flight, sends the
//! next as soon as the answer is complete, and records each request's latency.
//!
//! It is the only generator for the echo and proxy rows (a 64-byte message, checked when
//! it comes back) and the fallback for the HTTP rows when `wrk` is missing (a `GET`,
//! answered by a response with a `Content-Length`).
//!
//! # Protocol
//! 1. Open every connection (blocking connects, before the clock starts), then make
//!    them non-blocking and register them for readable edges.
//! 2. Start the clock; send one request on every connection.
//! 3. On a readable edge, read until `WouldBlock`; each complete answer records a
//!    latency, and before the deadline sends the next request on that connection. After
//!    the deadline a connection that has its answer is done.
//! 4. When every connection is done, the run's time is the last answer's; a connection
//!    still waiting [`GRACE`] after the deadline fails the run.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::proto::{self, ECHO_SIZE, REQUEST};
use super::{LoadResult, Service, sys};
use crate::harness::LoadGen;

/// How long after the deadline an outstanding answer may still come.
const GRACE: Duration = Duration::from_secs(5);

/// Room for the largest answer (an HTTP response or an echo message) per connection.
const READ_BUF: usize = 4096;

/// One connection of the generator.
struct Conn {
    stream: mio::net::TcpStream,
    buf: Vec<u8>,
    sent_at: Instant,
    done: bool,
}

/// Runs the load on its own thread (pinned to `cpu` if given) and returns its result.
pub fn run(
    port: u16,
    service: Service,
    conns: usize,
    secs: u64,
    cpu: Option<usize>,
) -> Result<LoadResult, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    thread::Builder::new()
        .name("load".into())
        .spawn(move || {
            if let Some(cpu) = cpu {
                sys::pin_current_thread(cpu).map_err(|e| format!("cannot pin the load to CPU {cpu}: {e}"))?;
            }
            drive(addr, service, conns, Duration::from_secs(secs))
        })
        .map_err(|e| format!("cannot start the load thread: {e}"))?
        .join()
        .map_err(|p| format!("load thread panicked: {}", crate::harness::panic_text(&*p)))?
}

/// The request of `service` and, for echo, the exact answer expected.
fn message(service: Service) -> Vec<u8> {
    match service {
        Service::Http | Service::Https | Service::Big => REQUEST.to_vec(),
        Service::Echo | Service::Proxy => (0..ECHO_SIZE as u8).collect(),
    }
}

pub(super) fn drive(
    addr: SocketAddr,
    service: Service,
    conns: usize,
    duration: Duration,
) -> Result<LoadResult, String> {
    if service == Service::Https {
        return Err("the built-in load speaks no TLS: the https rows need wrk".to_string());
    }
    if service == Service::Big {
        return Err("the built-in load reads answers of at most 4 KiB: the 1 MiB rows need wrk".to_string());
    }
    let msg = message(service);
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    // Step 1.
    let mut all = Vec::with_capacity(conns);
    for i in 0..conns {
        let std = TcpStream::connect(addr).map_err(|e| format!("connect #{i}: {e}"))?;
        std.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        std.set_nonblocking(true).map_err(|e| format!("nonblocking: {e}"))?;
        let mut stream = mio::net::TcpStream::from_std(std);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(|e| format!("register: {e}"))?;
        all.push(Conn { stream, buf: Vec::with_capacity(READ_BUF), sent_at: Instant::now(), done: false });
    }
    // Step 2.
    let start = Instant::now();
    let deadline = start + duration;
    for conn in &mut all {
        send(conn, &msg)?;
    }
    let mut latencies: Vec<u64> = Vec::new();
    let mut last = start;
    let mut active = conns;
    let mut events = Events::with_capacity(1024);
    let mut chunk = [0u8; READ_BUF];
    // Step 3.
    while active > 0 {
        let now = Instant::now();
        if now > deadline + GRACE {
            return Err(format!("{active} of {conns} connections still waiting {GRACE:?} after the end"));
        }
        poll.poll(&mut events, Some(deadline + GRACE - now)).map_err(|e| format!("epoll_wait: {e}"))?;
        for event in &events {
            let conn = &mut all[event.token().0];
            loop {
                let n = match conn.stream.read(&mut chunk) {
                    Ok(0) => return Err("the server closed a connection".to_string()),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("read: {e}")),
                };
                if conn.done {
                    return Err("an answer nobody asked for".to_string());
                }
                conn.buf.extend_from_slice(&chunk[..n]);
                if !complete(service, &conn.buf, &msg)? {
                    continue;
                }
                let now = Instant::now();
                latencies.push(now.duration_since(conn.sent_at).as_nanos() as u64);
                last = now;
                conn.buf.clear();
                if now < deadline {
                    send(conn, &msg)?;
                } else {
                    conn.done = true;
                    active -= 1;
                }
            }
        }
    }
    // Step 4.
    if latencies.is_empty() {
        return Err("no request completed".to_string());
    }
    latencies.sort_unstable();
    let pct = |p: usize| latencies[(latencies.len() * p / 100).min(latencies.len() - 1)] as f64;
    Ok(LoadResult {
        requests: latencies.len() as u64,
        elapsed: last.duration_since(start),
        p50_ns: pct(50),
        p99_ns: pct(99),
        load: LoadGen::Builtin,
    })
}

/// Sends one request. It is small and the connection has nothing else in flight, so the
/// socket buffer always takes it whole; anything else is an error, not a case to handle.
fn send(conn: &mut Conn, msg: &[u8]) -> Result<(), String> {
    conn.sent_at = Instant::now();
    match conn.stream.write(msg) {
        Ok(n) if n == msg.len() => Ok(()),
        Ok(n) => Err(format!("short write: {n} of {} bytes", msg.len())),
        Err(e) => Err(format!("write: {e}")),
    }
}

/// Whether `buf` holds the whole answer to `msg`; `Err` for a wrong or oversized one.
fn complete(service: Service, buf: &[u8], msg: &[u8]) -> Result<bool, String> {
    match service {
        Service::Http | Service::Https | Service::Big => match proto::response_len(buf)? {
            None if buf.len() >= READ_BUF => Err("response head too large".to_string()),
            None => Ok(false),
            Some(len) if len == buf.len() => Ok(true),
            Some(_) => Err("more bytes than one response".to_string()),
        },
        Service::Echo | Service::Proxy => match buf.len() {
            n if n < msg.len() => Ok(false),
            n if n == msg.len() && buf == msg => Ok(true),
            n if n == msg.len() => Err("echo came back changed".to_string()),
            n => Err(format!("echo of {n} bytes for a {}-byte message", msg.len())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_answers_must_match() {
        let msg = message(Service::Echo);
        assert_eq!(complete(Service::Echo, &msg[..10], &msg), Ok(false));
        assert_eq!(complete(Service::Echo, &msg, &msg), Ok(true));
        let mut wrong = msg.clone();
        wrong[3] ^= 1;
        assert!(complete(Service::Echo, &wrong, &msg).is_err());
        let mut long = msg.clone();
        long.push(0);
        assert!(complete(Service::Echo, &long, &msg).is_err());
    }

    #[test]
    fn http_answers_are_framed_by_content_length() {
        let msg = message(Service::Http);
        assert_eq!(complete(Service::Http, proto::RESPONSE, &msg), Ok(true));
        assert_eq!(complete(Service::Http, &proto::RESPONSE[..20], &msg), Ok(false));
        let two = proto::RESPONSE.repeat(2);
        assert!(complete(Service::Http, &two, &msg).is_err());
    }

    /// Against a std echo thread on loopback: every request completes and is counted.
    #[test]
    fn drives_an_echo_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let mut handlers = Vec::new();
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                handlers.push(thread::spawn(move || {
                    let mut buf = [0u8; 64];
                    let mut served = 0u64;
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        s.write_all(&buf[..n]).unwrap();
                        served += 1;
                    }
                    served
                }));
            }
            handlers.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
        });
        let result =
            drive(SocketAddr::from(([127, 0, 0, 1], port)), Service::Echo, 2, Duration::from_millis(100))
                .unwrap();
        // `drive` has closed its connections, so the server threads see EOF and finish.
        let served = server.join().unwrap();
        assert!(result.requests > 0);
        // The server may split a message into two reads, never merge two (one in flight).
        assert!(served >= result.requests, "served {served} reads for {} requests", result.requests);
        assert!(result.p50_ns > 0.0 && result.p99_ns >= result.p50_ns);
    }
}
