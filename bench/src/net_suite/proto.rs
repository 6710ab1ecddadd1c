//! What every server of the `net` suite speaks, whatever its runtime: the HTTP/1.1
//! hello exchange (no HTTP library: request heads are found by their blank line, the
//! response is one constant), the 1 MiB answer of the `big` service (the load balancers'
//! throughput rows), the echo message size, and the per-thread request counters the Rust
//! servers report when they stop.
//!
//! The Go servers (`bench/go/net.go`) speak the same bytes: a change here changes there.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};

use serde::{Deserialize, Serialize};

/// The one response of the hello server (keep-alive is HTTP/1.1's default).
pub const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: kcoro-bench\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

/// The body of [`RESPONSE`], for clients that check what they got.
pub const BODY: &[u8] = b"Hello, World!";

/// Body bytes of the `big` service's answer.
pub const BIG_BODY_LEN: usize = 1 << 20;

/// The `big` service's one response: keep-alive, [`BIG_BODY_LEN`] bytes of `x`, built
/// once so every answer is one `write_all` of the same bytes.
pub fn big_response() -> &'static [u8] {
    static RESPONSE: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nServer: kcoro-bench\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {BIG_BODY_LEN}\r\n\r\n"
        )
        .into_bytes();
        r.resize(r.len() + BIG_BODY_LEN, b'x');
        r
    });
    &RESPONSE
}

/// The request the built-in generator sends (`wrk` sends its own, much like it).
pub const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Bytes a server buffers per connection; a request head that does not fit closes it.
pub const CONN_BUF: usize = 4096;

/// Bytes of one echo message (and of one request through the proxy).
pub const ECHO_SIZE: usize = 64;

/// End of an HTTP head.
const HEAD_END: &[u8] = b"\r\n\r\n";

/// Counts the complete request heads at the start of `buf` and returns how many there
/// are and how many bytes they take. Requests carry no body (the load is `GET`s), so a
/// head ends a request; pipelined requests are all answered in one write.
pub fn take_requests(buf: &[u8]) -> (usize, usize) {
    let (mut count, mut used) = (0, 0);
    while let Some(end) = find(&buf[used..], HEAD_END) {
        count += 1;
        used += end + HEAD_END.len();
    }
    (count, used)
}

/// The length of a complete response at the start of `buf` (head plus
/// `Content-Length` body), or `None` while it is incomplete; `Err` on a head without a
/// length.
pub fn response_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(end) = find(buf, HEAD_END) else { return Ok(None) };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head is not UTF-8".to_string())?;
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        })
        .ok_or_else(|| format!("response without Content-Length: {head:?}"))?;
    let total = end + HEAD_END.len() + length;
    Ok((buf.len() >= total).then_some(total))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Requests (or forwarded messages) one thread served, as a server reports them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThreadCount {
    /// The thread's name (`net-worker-0`, `tokio-runtime-worker`, …).
    pub name: String,
    /// Requests it served.
    pub requests: u64,
}

/// What a server prints when it stops: its per-thread counts (empty for servers that
/// cannot count per thread, such as Go's, whose goroutines move between threads).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerReport {
    /// One entry per thread that served at least one request.
    pub threads: Vec<ThreadCount>,
}

impl ServerReport {
    /// The largest share of the requests one thread served, when the server has more
    /// than one worker and counted anything. A thread that served nothing is not listed,
    /// so the share comes from the total, not from the list's length.
    pub fn max_share(&self, workers: usize) -> Option<f64> {
        let total: u64 = self.threads.iter().map(|t| t.requests).sum();
        let max = self.threads.iter().map(|t| t.requests).max()?;
        (workers > 1 && total > 0).then(|| max as f64 / total as f64)
    }
}

/// Every thread's counter, in the order threads first counted.
static COUNTERS: Mutex<Vec<(String, Arc<AtomicU64>)>> = Mutex::new(Vec::new());

thread_local! {
    /// This thread's counter, registered in [`COUNTERS`] on first use.
    static COUNTER: Arc<AtomicU64> = register();
}

fn register() -> Arc<AtomicU64> {
    let counter = Arc::new(AtomicU64::new(0));
    let name = std::thread::current().name().unwrap_or("unnamed").to_string();
    COUNTERS.lock().unwrap_or_else(|p| p.into_inner()).push((name, Arc::clone(&counter)));
    counter
}

/// Adds `n` served requests to the calling thread's count. Call it where the request
/// is handled: in a kcoro coroutine that is its home worker (started coroutines do not
/// migrate); in a tokio task, whichever worker polls it now. The thread-local is
/// touched only inside this call, never across a suspension.
pub fn count(n: u64) {
    // Relaxed: only the total at report time matters, read after the load has stopped.
    COUNTER.with(|c| c.fetch_add(n, Relaxed));
}

/// The counts so far, for the report.
pub fn report() -> ServerReport {
    let counters = COUNTERS.lock().unwrap_or_else(|p| p.into_inner());
    let threads = counters
        .iter()
        .map(|(name, c)| ThreadCount { name: name.clone(), requests: c.load(Relaxed) })
        .filter(|t| t.requests > 0)
        .collect();
    ServerReport { threads }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_their_heads() {
        let one = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(take_requests(one), (1, one.len()));
        let mut two = one.repeat(2);
        two.extend_from_slice(b"GET / HT");
        assert_eq!(take_requests(&two), (2, 2 * one.len()));
        assert_eq!(take_requests(b"GET / HTTP/1.1\r\n"), (0, 0));
        assert_eq!(take_requests(b""), (0, 0));
    }

    #[test]
    fn the_response_carries_the_body() {
        assert!(RESPONSE.ends_with(BODY));
        assert!(
            RESPONSE
                .ends_with(format!("Content-Length: {}\r\n\r\n{}", BODY.len(), "Hello, World!").as_bytes())
        );
    }

    #[test]
    fn the_big_response_frames_its_body() {
        let big = big_response();
        assert_eq!(response_len(big), Ok(Some(big.len())));
        assert_eq!(response_len(&big[..big.len() - 1]), Ok(None));
        assert!(big.len() > BIG_BODY_LEN && big.ends_with(b"xxxx"));
    }

    #[test]
    fn response_length_needs_head_and_body() {
        assert_eq!(response_len(RESPONSE), Ok(Some(RESPONSE.len())));
        let mut more = RESPONSE.to_vec();
        more.extend_from_slice(b"HTTP/1.1");
        assert_eq!(response_len(&more), Ok(Some(RESPONSE.len())));
        assert_eq!(response_len(&RESPONSE[..RESPONSE.len() - 1]), Ok(None));
        assert_eq!(response_len(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert!(response_len(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn counts_are_reported_per_thread() {
        std::thread::Builder::new()
            .name("count-test-a".into())
            .spawn(|| {
                count(3);
                count(4);
            })
            .unwrap()
            .join()
            .unwrap();
        std::thread::Builder::new().name("count-test-b".into()).spawn(|| count(1)).unwrap().join().unwrap();
        let report = report();
        let get = |name: &str| report.threads.iter().find(|t| t.name == name).map(|t| t.requests);
        assert_eq!(get("count-test-a"), Some(7));
        assert_eq!(get("count-test-b"), Some(1));
    }

    #[test]
    fn max_share_uses_the_total() {
        let r = ServerReport {
            threads: vec![
                ThreadCount { name: "a".into(), requests: 90 },
                ThreadCount { name: "b".into(), requests: 10 },
            ],
        };
        assert_eq!(r.max_share(2), Some(0.9));
        assert_eq!(r.max_share(1), None);
        let one = ServerReport { threads: vec![ThreadCount { name: "a".into(), requests: 5 }] };
        assert_eq!(one.max_share(2), Some(1.0));
        assert_eq!(ServerReport::default().max_share(2), None);
    }
}
