//! Metrics export: every named channel's exact counters and a runtime's scheduler counters
//! in the Prometheus text exposition format (version 0.0.4), and a `/metrics` endpoint
//! served by a coroutine on kcoro's own sockets.
//!
//! Nothing is sampled: each scrape takes a [`Snapshot`] of every channel in the
//! [registry] (one lock per channel) and reads the runtime's
//! counters, so two scrapes' differences are exact.
//!
//! ```no_run
//! kcoro::run(|| {
//!     let addr = kcoro::monitor::serve_metrics("127.0.0.1:9464").expect("bind");
//!     println!("metrics at http://{addr}/metrics");
//!     // ... the program ...
//! });
//! ```

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::time::Duration;

use crate::chan::{Kind, Snapshot, registry};
use crate::net::{TcpListener, TcpStream};
use crate::runtime::Stats;

/// Renders `channels` and, if given, a runtime's `sched` counters.
pub fn prometheus(channels: &[Snapshot], sched: Option<&Stats>) -> String {
    let mut out = String::with_capacity(256 + channels.len() * 1024);
    type Get = fn(&Snapshot) -> Option<f64>;
    let families: [(&str, &str, &str, Get); 14] = [
        ("kcoro_channel_sends_total", "counter", "Completed sends.", |s| Some(s.sends as f64)),
        ("kcoro_channel_recvs_total", "counter", "Completed receives.", |s| Some(s.recvs as f64)),
        ("kcoro_channel_sent_bytes_total", "counter", "Bytes of the values sent.", |s| {
            Some(s.bytes_sent as f64)
        }),
        ("kcoro_channel_received_bytes_total", "counter", "Bytes of the values received.", |s| {
            Some(s.bytes_recv as f64)
        }),
        (
            "kcoro_channel_overflow_drops_total",
            "counter",
            "Values dropped by an overflow policy or conflation.",
            |s| Some(s.overflow_drops as f64),
        ),
        ("kcoro_channel_undelivered_total", "counter", "Values handed to the undelivered path.", |s| {
            Some(s.undelivered as f64)
        }),
        ("kcoro_channel_rendezvous_matches_total", "counter", "Direct sender-receiver hand-offs.", |s| {
            Some(s.rv_matches as f64)
        }),
        (
            "kcoro_channel_rendezvous_cancels_total",
            "counter",
            "Rendezvous sends given up while parked.",
            |s| Some(s.rv_cancels as f64),
        ),
        ("kcoro_channel_depth", "gauge", "Values buffered now.", |s| Some(s.len as f64)),
        ("kcoro_channel_capacity", "gauge", "Buffer capacity (absent: unbounded).", |s| {
            s.capacity.map(|c| c as f64)
        }),
        ("kcoro_channel_parked_senders", "gauge", "Senders parked now.", |s| Some(s.parked_senders as f64)),
        ("kcoro_channel_parked_receivers", "gauge", "Receivers parked now.", |s| {
            Some(s.parked_receivers as f64)
        }),
        ("kcoro_channel_closed", "gauge", "1 if the channel is closed.", |s| {
            Some(f64::from(u8::from(s.closed)))
        }),
        ("kcoro_channel_zero_copy_descriptors_total", "counter", "Zero-copy descriptors sent.", |s| {
            s.zero_copy.map(|z| z.sent as f64)
        }),
    ];
    for (name, kind, help, get) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in channels {
            if let Some(v) = get(s) {
                let _ = writeln!(out, "{name}{{{}}} {v}", labels(s));
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP kcoro_channel_failures_total Failed operations, by direction and reason.\n\
         # TYPE kcoro_channel_failures_total counter"
    );
    for s in channels {
        for (direction, f) in [("send", &s.send_failures), ("recv", &s.recv_failures)] {
            let reasons = [
                ("would_block", f.would_block),
                ("timeout", f.timeout),
                ("closed", f.closed),
                ("canceled", f.canceled),
            ];
            for (reason, v) in reasons {
                let _ = writeln!(
                    out,
                    "kcoro_channel_failures_total{{{},direction=\"{direction}\",reason=\"{reason}\"}} {v}",
                    labels(s)
                );
            }
        }
    }
    if let Some(st) = sched {
        let sched: [(&str, &str, &str, f64); 10] = [
            ("kcoro_sched_workers", "gauge", "Worker threads.", st.workers as f64),
            ("kcoro_sched_spawned_total", "counter", "Coroutines spawned.", st.spawned as f64),
            ("kcoro_sched_completed_total", "counter", "Coroutines finished.", st.completed as f64),
            ("kcoro_sched_running", "gauge", "Coroutines running or runnable now.", st.running as f64),
            ("kcoro_sched_parked", "gauge", "Coroutines parked now.", st.parked as f64),
            ("kcoro_sched_steals_total", "counter", "Successful steals.", st.steals as f64),
            (
                "kcoro_sched_inject_pulls_total",
                "counter",
                "Batches taken from the inject queue.",
                st.inject_pulls as f64,
            ),
            ("kcoro_sched_timer_fires_total", "counter", "Timers fired.", st.timer_fires as f64),
            ("kcoro_sched_stacks_live", "gauge", "Stacks owned by live coroutines.", st.stacks_live as f64),
            ("kcoro_sched_stacks_pooled", "gauge", "Stacks idle in the pool.", st.stacks_pooled as f64),
        ];
        for (name, kind, help, v) in sched {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        }
    }
    out
}

/// Whether a [`Metric`] only grows (a counter: monitors show its rate) or goes up and
/// down (a gauge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only grows (restarts from 0 with the program).
    Counter,
    /// Any value now.
    Gauge,
}

impl MetricKind {
    /// `counter` or `gauge`, as the exposition format's `# TYPE` line says it.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        }
    }
}

/// One sample of a program's own counter or gauge (a proxy's connections per listener,
/// say), for [`prometheus_metrics`] and for `kcoro chanmon`, which gets them over the
/// monitor protocol (`kcoro_ipc::ServerBuilder::metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The family name (`myapp_requests_total`).
    pub name: String,
    /// One line saying what it counts.
    pub help: String,
    /// Counter or gauge.
    pub kind: MetricKind,
    /// Label names and values, in order (`listener="web"`).
    pub labels: Vec<(String, String)>,
    /// The value now.
    pub value: f64,
}

impl Metric {
    /// A counter sample without labels (add them with [`Metric::label`]).
    pub fn counter(name: &str, help: &str, value: f64) -> Metric {
        Metric { name: name.into(), help: help.into(), kind: MetricKind::Counter, labels: Vec::new(), value }
    }

    /// A gauge sample without labels.
    pub fn gauge(name: &str, help: &str, value: f64) -> Metric {
        Metric { kind: MetricKind::Gauge, ..Metric::counter(name, help, value) }
    }

    /// This sample with one more label.
    pub fn label(mut self, name: &str, value: &str) -> Metric {
        self.labels.push((name.into(), value.into()));
        self
    }
}

/// Renders `metrics` in the exposition format: one `# HELP` and `# TYPE` per family (the
/// first sample's), each family's samples together in the order the family first appears.
pub fn prometheus_metrics(metrics: &[Metric]) -> String {
    let mut out = String::with_capacity(64 * metrics.len());
    let mut families: Vec<(&str, Vec<&Metric>)> = Vec::new();
    for m in metrics {
        match families.iter_mut().find(|(name, _)| *name == m.name) {
            Some((_, samples)) => samples.push(m),
            None => families.push((&m.name, vec![m])),
        }
    }
    for (name, samples) in families {
        let help = samples[0].help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", samples[0].kind.name());
        for m in samples {
            out.push_str(name);
            if !m.labels.is_empty() {
                let labels: Vec<String> =
                    m.labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = write!(out, "{{{}}}", labels.join(","));
            }
            let _ = writeln!(out, " {}", m.value);
        }
    }
    out
}

/// `channel="..",id="..",kind=".."` of one channel.
fn labels(s: &Snapshot) -> String {
    let kind = match s.kind {
        Kind::Rendezvous => "rendezvous",
        Kind::Buffered => "buffered",
        Kind::Conflated => "conflated",
        Kind::Unlimited => "unlimited",
    };
    let name = s.name.as_deref().unwrap_or("");
    format!("channel=\"{}\",id=\"{}\",kind=\"{kind}\"", escape(name), s.id)
}

/// A label value as the format requires: `\`, `"` and newline escaped.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Live coroutines by state, and whether the runtime is deadlocked now
/// ([`crate::Handle::deadlock`]): `kcoro_coroutines{state=".."}` and `kcoro_deadlock`.
pub fn prometheus_coroutines(running: u64, runnable: u64, parked: u64, deadlocked: bool) -> String {
    let mut out =
        String::from("# HELP kcoro_coroutines Live coroutines by state.\n# TYPE kcoro_coroutines gauge\n");
    for (state, n) in [("running", running), ("runnable", runnable), ("parked", parked)] {
        let _ = writeln!(out, "kcoro_coroutines{{state=\"{state}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP kcoro_deadlock 1 while every coroutine is parked with nothing left to wake one.\n\
         # TYPE kcoro_deadlock gauge\nkcoro_deadlock {}",
        u8::from(deadlocked)
    );
    out
}

/// The registry's channels and the current runtime's counters and coroutines, rendered.
pub fn render_current() -> String {
    let Some(h) = crate::Handle::try_current() else { return prometheus(&registry::list(), None) };
    let mut out = prometheus(&registry::list(), Some(&h.stats()));
    let all = h.coroutines();
    let count = |s: crate::inspect::State| all.iter().filter(|c| c.state == s).count() as u64;
    use crate::inspect::State::*;
    out += &prometheus_coroutines(
        count(Running),
        count(Runnable),
        count(Parked),
        h.deadlock_among(&all).is_some(),
    );
    out
}

/// Serves `/metrics` ([`render_current`]) at `addr` from a coroutine of the current
/// runtime; returns the bound address (port 0 picks one). Each connection gets one
/// response and is closed. Must be called inside a runtime.
pub fn serve_metrics(addr: &str) -> std::io::Result<SocketAddr> {
    serve_with(addr, render_current)
}

/// Connections the endpoint serves at once. Each may wait up to 5 s for its request, so
/// without a bound a peer that opens connections and sends nothing would pile up a
/// coroutine (and its stack) per connection; beyond the bound a connection gets a 503 and
/// is closed at once.
pub const MAX_SCRAPES: usize = 64;

/// As [`serve_metrics`], with the body `render` produces (for a monitor exporting another
/// process's metrics).
pub fn serve_with(
    addr: &str,
    render: impl Fn() -> String + Send + Sync + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let render = Arc::new(render);
    let open = Arc::new(AtomicUsize::new(0));
    // Daemons: an endpoint waiting for scrapes never hides the program's deadlock.
    let daemon = || crate::SpawnOptions::new().daemon();
    crate::spawn_with(daemon(), move || {
        loop {
            let conn = match listener.accept() {
                Ok((conn, _)) => conn,
                // Out of descriptors (EMFILE), or a connection gone before it was taken:
                // the endpoint stays; it tries again shortly, as descriptors come back.
                Err(_) => {
                    crate::sleep(ACCEPT_RETRY);
                    continue;
                }
            };
            let Some(slot) = Scrape::take(&open) else {
                respond(conn, "503 Service Unavailable", "too many scrapes at once\n");
                continue;
            };
            let render = Arc::clone(&render);
            // A failed spawn (out of stacks) drops this connection and its slot, not the
            // endpoint.
            let _ = crate::spawn_with(daemon(), move || {
                answer(conn, &*render);
                drop(slot);
            });
        }
    })
    .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(local)
}

/// One of the [`MAX_SCRAPES`] connections being served, given back on drop.
struct Scrape(Arc<AtomicUsize>);

impl Scrape {
    fn take(open: &Arc<AtomicUsize>) -> Option<Scrape> {
        // Only the accept loop takes slots, so a load and an add cannot overshoot.
        if open.load(Acquire) >= MAX_SCRAPES {
            return None;
        }
        open.fetch_add(1, AcqRel);
        Some(Scrape(Arc::clone(open)))
    }
}

impl Drop for Scrape {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AcqRel);
    }
}

/// How long a request head may take to arrive, whole (shorter in this crate's tests).
const HEAD_WITHIN: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 5 });
/// How long a response may take to be taken, whole (shorter in this crate's tests).
const RESPONSE_WITHIN: Duration = Duration::from_secs(if cfg!(test) { 1 } else { 10 });
/// The pause after a failed accept before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The time left until `deadline`; `None` once it has passed.
fn left(deadline: crate::Instant) -> Option<Duration> {
    Some(deadline.saturating_duration_since(crate::now())).filter(|d| !d.is_zero())
}

/// Reads one request head (at most 8 KiB, within [`HEAD_WITHIN`] in all: a client that
/// trickles bytes does not hold its slot longer) and writes one response.
fn answer(mut conn: TcpStream, render: &dyn Fn() -> String) {
    let deadline = crate::now() + HEAD_WITHIN;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let Some(wait) = left(deadline) else { return };
        let _ = conn.set_read_timeout(Some(wait));
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    if method == b"GET" && (path == b"/metrics" || path.starts_with(b"/metrics?")) {
        respond(conn, "200 OK", &render());
    } else {
        respond(conn, "404 Not Found", "only GET /metrics is served here\n");
    }
}

/// Writes one response and closes the connection; gives up after [`RESPONSE_WITHIN`] (a
/// client that never reads does not hold its slot for good).
fn respond(mut conn: TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let deadline = crate::now() + RESPONSE_WITHIN;
    let mut rest = response.as_bytes();
    while !rest.is_empty() {
        let Some(wait) = left(deadline) else { return };
        let _ = conn.set_write_timeout(Some(wait));
        match conn.write(rest) {
            Ok(0) | Err(_) => return,
            Ok(n) => rest = &rest[n..],
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::chan::Builder;

    /// Every sample line parses as `name{labels} value` with balanced, escaped labels; every
    /// family has HELP and TYPE before its samples.
    /// A parsed sample line: family name, labels, value.
    type Line = (String, Vec<(String, String)>, f64);

    fn parse(text: &str) -> Vec<Line> {
        let mut typed = std::collections::HashSet::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut w = rest.split(' ');
                typed.insert(w.next().unwrap().to_string());
                assert!(matches!(w.next(), Some("counter" | "gauge")), "{line}");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let (name, rest) = line.split_at(line.find(['{', ' ']).expect(line));
            assert!(typed.contains(name), "{name} sampled before its TYPE");
            let mut labels = Vec::new();
            let value = if let Some(body) = rest.strip_prefix('{') {
                let mut chars = body.chars();
                loop {
                    let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
                    assert_eq!(chars.next(), Some('"'), "{line}");
                    let mut v = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => v.push(match chars.next() {
                                Some('n') => '\n',
                                Some(c) => c,
                                None => panic!("{line}"),
                            }),
                            '"' => break,
                            c => v.push(c),
                        }
                    }
                    labels.push((key, v));
                    match chars.next() {
                        Some(',') => continue,
                        Some('}') => break,
                        other => panic!("{line}: {other:?}"),
                    }
                }
                chars.as_str().trim().parse::<f64>().expect(line)
            } else {
                rest.trim().parse::<f64>().expect(line)
            };
            samples.push((name.to_string(), labels, value));
        }
        samples
    }

    #[test]
    fn renders_exact_counters_with_escaped_labels() {
        let (tx, rx) = Builder::<Vec<u8>>::new(Kind::Buffered)
            .capacity(8)
            .name("in\"gress\\\n")
            .count_payload_bytes()
            .build();
        for _ in 0..3 {
            tx.try_send(vec![0; 10]).unwrap();
        }
        rx.try_recv().unwrap();
        let text = prometheus(&[tx.snapshot()], Some(&Stats { workers: 2, spawned: 5, ..Stats::default() }));
        let samples = parse(&text);
        let get =
            |name: &str| samples.iter().find(|s| s.0 == name).unwrap_or_else(|| panic!("{name} in\n{text}"));
        assert_eq!(get("kcoro_channel_sends_total").2, 3.0);
        assert_eq!(get("kcoro_channel_sent_bytes_total").2, 30.0);
        assert_eq!(get("kcoro_channel_received_bytes_total").2, 10.0);
        assert_eq!(get("kcoro_channel_depth").2, 2.0);
        assert_eq!(get("kcoro_channel_capacity").2, 8.0);
        assert_eq!(
            get("kcoro_channel_sends_total").1[0],
            ("channel".to_string(), "in\"gress\\\n".to_string())
        );
        assert_eq!(get("kcoro_sched_spawned_total").2, 5.0);
        let would_block = samples
            .iter()
            .find(|s| {
                s.0 == "kcoro_channel_failures_total"
                    && s.1.contains(&("direction".into(), "recv".into()))
                    && s.1.contains(&("reason".into(), "would_block".into()))
            })
            .unwrap();
        assert_eq!(would_block.2, 0.0);
    }

    #[test]
    fn a_programs_metrics_render_as_families_with_escaped_labels() {
        let metrics = [
            Metric::counter("app_requests_total", "Requests.", 7.0).label("route", "/a\"b"),
            Metric::gauge("app_open", "Open now.\nsecond line", 2.0),
            Metric::counter("app_requests_total", "Requests.", 1.5).label("route", "/c"),
        ];
        let text = prometheus_metrics(&metrics);
        assert_eq!(text.matches("# TYPE app_requests_total counter").count(), 1, "{text}");
        assert!(text.contains("# HELP app_open Open now.\\nsecond line\n# TYPE app_open gauge\n"), "{text}");
        let samples = parse(&text);
        let requests: Vec<(String, f64)> =
            samples.iter().filter(|s| s.0 == "app_requests_total").map(|s| (s.1[0].1.clone(), s.2)).collect();
        assert_eq!(requests, [("/a\"b".to_string(), 7.0), ("/c".to_string(), 1.5)], "{text}");
        assert!(samples.iter().any(|s| s.0 == "app_open" && s.1.is_empty() && s.2 == 2.0), "{text}");
    }

    #[test]
    fn serves_metrics_over_http() {
        let body = crate::run(|| {
            let _keep = Builder::<u8>::new(Kind::Rendezvous).name("http-test").build();
            let addr = serve_metrics("127.0.0.1:0").unwrap();
            let get = |path: &str| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            };
            assert!(get("/nope").starts_with("HTTP/1.1 404"));
            get("/metrics")
        });
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        let text = &body[body.find("\r\n\r\n").unwrap() + 4..];
        assert!(parse(text).iter().any(|s| s.1.contains(&("channel".into(), "http-test".into()))));
        assert!(text.contains("kcoro_sched_workers"));
        let states: Vec<String> = parse(text)
            .into_iter()
            .filter(|s| s.0 == "kcoro_coroutines")
            .filter_map(|s| s.1.first().map(|l| l.1.clone()))
            .collect();
        assert_eq!(states, ["running", "runnable", "parked"], "{text}");
        assert!(text.contains("\nkcoro_deadlock 0\n"), "{text}");
    }

    /// A peer that opens connections and sends nothing holds at most `MAX_SCRAPES`
    /// coroutines: the next connection is refused at once, and scrapes are served again
    /// once the idle ones go.
    /// An endpoint on a runtime of its own, answering `body`; clients are std sockets.
    fn served(body: impl Fn() -> String + Send + Sync + 'static) -> (crate::Runtime, std::net::SocketAddr) {
        let rt = crate::Runtime::builder().workers(2).build().unwrap();
        let addr = rt.block_on(move || serve_with("127.0.0.1:0", body)).unwrap();
        (rt, addr)
    }

    /// The head's deadline is for the whole head (1 s in tests, 5 s otherwise): each read
    /// of a client trickling a byte every 250 ms comes in time, the head does not, and it
    /// is not answered (each read's own timeout let it hold its slot for hours).
    #[test]
    fn a_head_trickled_past_its_deadline_is_not_answered() {
        use std::io::{Read, Write};
        let (_rt, addr) = served(|| "ok\n".to_string());
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        for b in b"GET /met" {
            if s.write_all(&[*b]).is_err() {
                break; // closed by the server: what this test wants
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let _ = s.write_all(b"rics HTTP/1.1\r\n\r\n");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            !out.starts_with(b"HTTP/1.1 200"),
            "answered a head that took 2 s: {:?}",
            String::from_utf8_lossy(&out)
        );
    }

    /// A client that asks for a large body and never reads it: the response gives up after
    /// its deadline (1 s in tests), and the coroutine and its slot go.
    #[test]
    fn a_client_that_never_reads_gives_its_slot_back() {
        use std::io::Write;
        let body = Arc::new("x".repeat(16 << 20));
        let (rt, addr) = served(move || (*body).clone());
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let writing = || {
            rt.handle()
                .coroutines()
                .into_iter()
                .filter(|c| c.wait.as_ref().is_some_and(|w| w.to_string().contains("writable")))
                .count()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while writing() == 0 {
            assert!(std::time::Instant::now() < deadline, "the response never filled the socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        while writing() != 0 {
            assert!(std::time::Instant::now() < deadline, "the response waits for a reader for good");
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(s);
    }

    /// A failed accept (here: out of descriptors) does not end the endpoint: once
    /// descriptors are back, scrapes are answered. Runs in a child process of this test
    /// binary, which lowers its own descriptor limit.
    #[test]
    fn a_failed_accept_does_not_end_the_endpoint() {
        use std::io::{Read, Write};
        const CHILD: &str = "KCORO_MONITOR_EMFILE_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let out = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "monitor::tests::a_failed_accept_does_not_end_the_endpoint", "--nocapture"])
                .env(CHILD, "1")
                .output()
                .unwrap();
            let text =
                String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "the child failed:\n{text}");
            assert!(text.contains("1 passed"), "the child ran nothing:\n{text}");
            return;
        }
        let scrape = |addr| -> String {
            let Ok(mut s) = std::net::TcpStream::connect(addr) else { return "no connection".into() };
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n");
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        let (_rt, addr) = served(|| "ok\n".to_string());
        assert!(scrape(addr).starts_with("HTTP/1.1 200"));
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit and setrlimit read and write the struct given.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        let saved = lim;
        lim.rlim_cur = open + 6;
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        // Connections until the process (client and server share it) runs out: the
        // server's accepts fail with EMFILE meanwhile.
        let held: Vec<_> = (0..20).map_while(|_| std::net::TcpStream::connect(addr).ok()).collect();
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &saved) };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let got = scrape(addr);
            if got.starts_with("HTTP/1.1 200") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the endpoint no longer answers: {got:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn idle_connections_beyond_the_bound_are_refused_not_queued() {
        crate::run(|| {
            let addr = serve_metrics("127.0.0.1:0").unwrap();
            let response = |s: &mut TcpStream| {
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            };
            // The accept loop takes connections in the order they completed, so these hold
            // every slot before the next one is looked at.
            let idle: Vec<TcpStream> = (0..MAX_SCRAPES).map(|_| TcpStream::connect(addr).unwrap()).collect();
            let mut extra = TcpStream::connect(addr).unwrap();
            let refused = response(&mut extra);
            assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
            drop(idle);
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                let got = response(&mut s);
                if got.starts_with("HTTP/1.1 200 OK") {
                    break;
                }
                assert!(got.starts_with("HTTP/1.1 503"), "{got}");
                assert!(std::time::Instant::now() < deadline, "the slots never came back");
                crate::sleep(Duration::from_millis(5));
            }
        });
    }
}
