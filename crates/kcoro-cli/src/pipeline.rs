//! `kcoro demo`: a channel pipeline with exact counters and an exactly-once check.
//!
//! ```text
//! N producers ──▶ demo.stage1 ──▶ M workers ──▶ demo.stage2 ──▶ sink
//! ```
//!
//! Every message carries a unique id (`seq * N + producer`) and a payload stamped with it.
//! Producers send until a [`CancelToken`] fires when the time is up; a producer parked on
//! a full stage wakes at once with `Canceled`, and that message does not count as produced.
//! Dropping the last producer's `Sender` closes stage1; workers drain it and exit, the last
//! worker's `Sender` closes stage2, and the sink drains it and returns what it saw.
//!
//! The main thread is not a coroutine: it prints a progress line on stderr from channel
//! snapshots ([`Rate::between`]), then joins everything and checks:
//! delivered (distinct, via a per-producer bitmap) + dropped == produced, no duplicates,
//! id sums agree, payloads intact, and the channels' own counters agree with all of it.
//! Values a conflated stage overwrites reach the undelivered callback, which counts them
//! as dropped.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use kcoro::chan::{Builder, ByteLen, Kind, Rate, Receiver, Sender, Snapshot};
use kcoro::sync::CancelToken;

use crate::args::{Fault, PipelineArgs};

/// Senders into a stage that never makes them wait yield this often (see [`Pacer`]).
const YIELD_EVERY: u64 = 64;
/// The sink yields this often, in case its receives never have to wait.
const SINK_YIELD_EVERY: u64 = 256;

/// One message: a unique id and a payload whose first bytes repeat the id.
struct Msg {
    id: u64,
    payload: Box<[u8]>,
}

impl Msg {
    fn new(id: u64, len: usize) -> Self {
        let mut payload = vec![0u8; len].into_boxed_slice();
        let n = len.min(8);
        payload[..n].copy_from_slice(&id.to_le_bytes()[..n]);
        Msg { id, payload }
    }

    /// The payload has the expected length and still carries the id's stamp.
    fn intact(&self, len: usize) -> bool {
        let n = len.min(8);
        self.payload.len() == len && self.payload[..n] == self.id.to_le_bytes()[..n]
    }
}

/// The channels count payload bytes, not `size_of::<Msg>()`.
impl ByteLen for Msg {
    fn byte_len(&self) -> usize {
        self.payload.len()
    }
}

/// Messages the channels accepted but will never deliver, as seen by the undelivered
/// callback (conflation overwrites; nothing else in this pipeline should drop).
#[derive(Default)]
struct Dropped {
    count: AtomicU64,
    id_sum: AtomicU64,
}

fn stage(name: &str, kind: Kind, capacity: usize, dropped: &Arc<Dropped>) -> (Sender<Msg>, Receiver<Msg>) {
    let d = Arc::clone(dropped);
    Builder::new(kind)
        .capacity(capacity)
        .name(name)
        .count_payload_bytes()
        .on_undelivered(move |m: Msg| {
            d.count.fetch_add(1, Relaxed);
            d.id_sum.fetch_add(m.id, Relaxed); // wraps, like the other sums
        })
        .build()
}

/// Keeps senders into a stage that never pushes back from hogging their thread.
///
/// A send into a conflated or unlimited channel never suspends, and a coroutine that never
/// suspends keeps everything else queued on its worker thread from running (started
/// coroutines do not migrate). So those senders yield every [`YIELD_EVERY`] sends, and
/// senders into an unlimited stage also wait (yielding) while `limit` values are queued,
/// so memory stays bounded.
struct Pacer {
    kind: Kind,
    limit: usize,
    sent: u64,
}

impl Pacer {
    fn new(kind: Kind, limit: usize) -> Self {
        Pacer { kind, limit, sent: 0 }
    }

    fn sent(&mut self, tx: &Sender<Msg>, token: Option<&CancelToken>) {
        self.sent += 1;
        if self.sent % YIELD_EVERY != 0 {
            return;
        }
        match self.kind {
            Kind::Conflated => kcoro::yield_now(),
            Kind::Unlimited => {
                kcoro::yield_now();
                while tx.len() >= self.limit && !token.is_some_and(CancelToken::is_cancelled) {
                    kcoro::yield_now();
                }
            }
            Kind::Rendezvous | Kind::Buffered => {}
        }
    }
}

/// Sends fresh messages until `token` fires; returns (messages sent, wrapping sum of ids).
fn producer(
    p: u64,
    n: u64,
    tx: Sender<Msg>,
    token: CancelToken,
    payload: usize,
    mut pacer: Pacer,
) -> (u64, u64) {
    let (mut sent, mut id_sum) = (0u64, 0u64);
    while !token.is_cancelled() {
        let id = sent * n + p;
        match tx.send_cancellable(Msg::new(id, payload), &token) {
            Ok(()) => {
                sent += 1;
                id_sum = id_sum.wrapping_add(id);
                pacer.sent(&tx, Some(&token));
            }
            // Canceled: time is up while parked on a full stage. The message was never
            // accepted, so it is not counted. (Closed cannot happen: the stage closes
            // only when every producer has dropped its sender.)
            Err(_) => break,
        }
    }
    (sent, id_sum)
} // dropping `tx`: the last producer's drop closes stage1

#[derive(Default)]
struct WorkerReport {
    received: u64,
    damaged: u64,
    /// Sends refused by stage2 (closed under us: should never happen).
    refused: u64,
}

/// Checks each message's stamp and passes it on, until stage1 is closed and drained.
fn worker(
    rx: Receiver<Msg>,
    tx: Sender<Msg>,
    payload: usize,
    mut pacer: Pacer,
    fault: Option<(Fault, Arc<AtomicBool>)>,
) -> WorkerReport {
    let mut r = WorkerReport::default();
    for msg in &rx {
        r.received += 1;
        if !msg.intact(payload) {
            r.damaged += 1;
        }
        // The deliberate bug, once per run, in whichever worker gets there first.
        let fault = fault.as_ref().filter(|(_, armed)| armed.load(Relaxed) && armed.swap(false, Relaxed));
        let copy = match fault {
            Some((Fault::Lose, _)) => continue,
            Some((Fault::Duplicate, _)) => Some(Msg { id: msg.id, payload: msg.payload.clone() }),
            None => None,
        };
        for m in std::iter::once(msg).chain(copy) {
            match tx.send(m) {
                Ok(()) => pacer.sent(&tx, None),
                Err(_) => r.refused += 1,
            }
        }
    }
    r
} // dropping `tx`: the last worker's drop closes stage2

#[derive(Default)]
struct SinkReport {
    delivered: u64,
    distinct: u64,
    duplicates: u64,
    id_sum: u64,
    damaged: u64,
    bitmap_bytes: usize,
}

/// Receives until stage2 is closed and drained, marking each id in a per-producer bitmap.
fn sink(rx: Receiver<Msg>, producers: u64, payload: usize) -> SinkReport {
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(); producers as usize];
    let mut r = SinkReport::default();
    for msg in &rx {
        r.delivered += 1;
        r.id_sum = r.id_sum.wrapping_add(msg.id);
        if !msg.intact(payload) {
            r.damaged += 1;
        }
        let (seq, p) = (msg.id / producers, (msg.id % producers) as usize);
        let bits = &mut seen[p];
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if word >= bits.len() {
            bits.resize((word + 1).next_power_of_two(), 0);
        }
        if bits[word] & bit == 0 {
            bits[word] |= bit;
            r.distinct += 1;
        } else {
            r.duplicates += 1;
        }
        if r.delivered % SINK_YIELD_EVERY == 0 {
            kcoro::yield_now();
        }
    }
    r.bitmap_bytes = seen.iter().map(|b| b.len() * 8).sum();
    r
}

/// The live line on stderr: rewritten in place ~4×/s on a terminal, otherwise a plain
/// line once a second.
struct Progress {
    tty: bool,
    every: Duration,
    started: Instant,
    last: (Snapshot, Snapshot),
    shown: bool,
}

impl Progress {
    fn new(started: Instant, last: (Snapshot, Snapshot)) -> Self {
        let tty = std::io::stderr().is_terminal();
        let every = Duration::from_millis(if tty { 250 } else { 1000 });
        Progress { tty, every, started, last, shown: false }
    }

    fn tick(&mut self, now: (Snapshot, Snapshot)) {
        let r1 = Rate::between(&self.last.0, &now.0);
        let r2 = Rate::between(&self.last.1, &now.1);
        let line = format!(
            "{:5.2}s  in {:>7}/s  out {:>7} msg/s {:>5.2} GB/s  queued {:>5}  total {:>6}",
            now.1.at.saturating_duration_since(self.started).as_secs_f64(),
            si(r1.sends_per_sec),
            si(r2.recvs_per_sec),
            r2.bytes_recv_per_sec / 1e9,
            now.0.len + now.1.len,
            si(now.1.recvs as f64),
        );
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a closed stderr must not stop the demo.
        let _ = if self.tty { write!(err, "\r\x1b[2K{line}") } else { writeln!(err, "kcoro demo: {line}") };
        let _ = err.flush();
        self.shown = true;
        self.last = now;
    }

    fn finish(&self) {
        if self.tty && self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}

pub fn run(a: &PipelineArgs) -> ExitCode {
    let mut builder = kcoro::Runtime::builder();
    if let Some(w) = a.runtime_workers {
        builder = builder.workers(w);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kcoro: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (n, m) = (a.producers as u64, a.workers);
    let dropped = Arc::new(Dropped::default());
    let (tx1, rx1) = stage("demo.stage1", a.stage1, a.capacity, &dropped);
    let (tx2, rx2) = stage("demo.stage2", a.stage2, a.capacity, &dropped);
    let token = CancelToken::new();
    let armed = Arc::new(AtomicBool::new(a.fault.is_some()));

    // The main thread keeps a receiver of each stage, only for snapshots: receivers do not
    // hold a channel open, so closing still cascades.
    let first = (rx1.snapshot(), rx2.snapshot());
    let started = Instant::now();
    let payload = a.payload;
    let sink = {
        let rx = rx2.clone();
        rt.spawn(move || sink(rx, n, payload))
    };
    let workers: Vec<_> = (0..m)
        .map(|_| {
            let (rx, tx) = (rx1.clone(), tx2.clone());
            let pacer = Pacer::new(a.stage2, a.capacity);
            let fault = a.fault.map(|f| (f, Arc::clone(&armed)));
            rt.spawn(move || worker(rx, tx, payload, pacer, fault))
        })
        .collect();
    drop(tx2);
    let producers: Vec<_> = (0..n)
        .map(|p| {
            let (tx, token) = (tx1.clone(), token.clone());
            let pacer = Pacer::new(a.stage1, a.capacity);
            rt.spawn(move || producer(p, n, tx, token, payload, pacer))
        })
        .collect();
    drop(tx1);

    let deadline = started + a.duration;
    let mut progress = Progress::new(started, first.clone());
    let mut next = started + progress.every;
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(next.min(deadline) - now);
        if Instant::now() >= next {
            progress.tick((rx1.snapshot(), rx2.snapshot()));
            next += progress.every;
        }
    }
    token.cancel();

    let mut panicked = Vec::new();
    let (mut produced, mut produced_sum) = (0u64, 0u64);
    for (i, h) in producers.into_iter().enumerate() {
        match h.join() {
            Ok((sent, sum)) => {
                produced += sent;
                produced_sum = produced_sum.wrapping_add(sum);
            }
            Err(e) => panicked.push(format!("producer {i}: {e}")),
        }
    }
    let mut work = WorkerReport::default();
    for (i, h) in workers.into_iter().enumerate() {
        match h.join() {
            Ok(r) => {
                work.received += r.received;
                work.damaged += r.damaged;
                work.refused += r.refused;
            }
            Err(e) => panicked.push(format!("worker {i}: {e}")),
        }
    }
    let sink = sink.join().unwrap_or_else(|e| {
        panicked.push(format!("sink: {e}"));
        SinkReport::default()
    });
    let last = (rx1.snapshot(), rx2.snapshot());
    progress.finish();
    if !panicked.is_empty() {
        eprintln!("kcoro: coroutines failed: {}", panicked.join("; "));
        return ExitCode::FAILURE;
    }
    let totals = Totals {
        produced,
        produced_sum,
        work,
        sink,
        dropped: dropped.count.load(Relaxed),
        dropped_sum: dropped.id_sum.load(Relaxed),
    };
    let failures = check(a, &totals, &last);
    report(a, &rt, &totals, &first, &last, &failures);
    if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// What the coroutines reported once joined.
struct Totals {
    produced: u64,
    produced_sum: u64,
    work: WorkerReport,
    sink: SinkReport,
    dropped: u64,
    dropped_sum: u64,
}

/// The exactly-once check: every reason it fails, empty if it passes.
fn check(a: &PipelineArgs, t: &Totals, (s1, s2): &(Snapshot, Snapshot)) -> Vec<String> {
    let mut fail = Vec::new();
    let s = &t.sink;
    if s.duplicates > 0 {
        fail.push(format!("{} duplicate deliveries", s.duplicates));
    }
    let accounted = s.distinct + t.dropped;
    if accounted < t.produced {
        fail.push(format!("{} messages missing", t.produced - accounted));
    } else if accounted > t.produced {
        fail.push(format!("{} more messages delivered or dropped than produced", accounted - t.produced));
    }
    if s.id_sum.wrapping_add(t.dropped_sum) != t.produced_sum {
        fail.push("id sums differ".into());
    }
    let lossy = a.stage1 == Kind::Conflated || a.stage2 == Kind::Conflated;
    if !lossy && t.dropped > 0 {
        fail.push(format!("{} messages dropped by stages that must not drop", t.dropped));
    }
    if t.dropped != s1.undelivered + s2.undelivered {
        fail.push(format!(
            "the undelivered callback saw {} drops, the channel counters {}",
            t.dropped,
            s1.undelivered + s2.undelivered
        ));
    }
    if t.work.damaged + s.damaged > 0 {
        fail.push(format!("{} damaged payloads", t.work.damaged + s.damaged));
    }
    if t.work.refused > 0 {
        fail.push(format!("stage2 refused {} sends", t.work.refused));
    }
    let counters = [
        ("stage1 sends", s1.sends, "produced", t.produced),
        ("stage1 receives", s1.recvs, "worker receives", t.work.received),
        ("stage2 receives", s2.recvs, "sink receives", s.delivered),
    ];
    for (what, counted, by, seen) in counters {
        if counted != seen {
            fail.push(format!("{what} counted {counted} but {by} {seen}"));
        }
    }
    fail
}

fn report(
    a: &PipelineArgs,
    rt: &kcoro::Runtime,
    t: &Totals,
    first: &(Snapshot, Snapshot),
    last: &(Snapshot, Snapshot),
    failures: &[String],
) {
    let st = rt.stats();
    let (s1, s2) = last;
    let all = Rate::between(&first.1, &last.1);
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "kcoro demo: {} producers -> {} -> {} workers -> {} -> sink",
        a.producers,
        s1.name.as_deref().unwrap_or("stage1"),
        a.workers,
        s2.name.as_deref().unwrap_or("stage2"),
    ));
    line(format!(
        "  {}-byte payloads, producers ran {:.2} s, {} runtime worker threads",
        a.payload,
        a.duration.as_secs_f64(),
        st.workers
    ));
    line(format!(
        "  delivered {} messages, {:.2} GB of payload, in {:.2} s: {} msg/s, {:.2} GB/s",
        grouped(s2.recvs),
        s2.bytes_recv as f64 / 1e9,
        all.interval.as_secs_f64(),
        si(all.recvs_per_sec),
        all.bytes_recv_per_sec / 1e9,
    ));
    line(String::new());
    line(format!(
        "  {:<12} {:<16} {:>14} {:>14} {:>12} {:>16} {:>14}",
        "channel", "kind", "sends", "receives", "dropped", "payload bytes", "hand-offs"
    ));
    for s in [s1, s2] {
        line(format!(
            "  {:<12} {:<16} {:>14} {:>14} {:>12} {:>16} {:>14}",
            s.name.as_deref().unwrap_or("?"),
            kind_label(s, a.capacity),
            grouped(s.sends),
            grouped(s.recvs),
            grouped(s.overflow_drops),
            grouped(s.bytes_recv),
            grouped(s.rv_matches),
        ));
    }
    line(format!(
        "  runtime: {} coroutines, {} resumes, {} steals",
        grouped(st.spawned),
        grouped(st.resumes),
        grouped(st.steals)
    ));
    line(String::new());
    let verdict = if failures.is_empty() { "PASS" } else { "FAIL" };
    line(format!("exactly-once check: {verdict}"));
    let s = &t.sink;
    line(format!("  produced   {:>14}", grouped(t.produced)));
    line(format!(
        "  delivered  {:>14}  distinct ({} duplicates; {} KiB id bitmap)",
        grouped(s.distinct),
        grouped(s.duplicates),
        s.bitmap_bytes.div_ceil(1024)
    ));
    line(format!(
        "  dropped    {:>14}  overwritten by a conflated stage (undelivered callback; counters say {})",
        grouped(t.dropped),
        grouped(s1.undelivered + s2.undelivered)
    ));
    let eq = if s.distinct + t.dropped == t.produced { "==" } else { "!=" };
    line(format!("  delivered + dropped {eq} produced; payload stamps checked by workers and sink"));
    let sum_eq = if s.id_sum.wrapping_add(t.dropped_sum) == t.produced_sum { "==" } else { "!=" };
    line(format!(
        "  id sums: delivered {} + dropped {} {sum_eq} produced {}",
        s.id_sum, t.dropped_sum, t.produced_sum
    ));
    for f in failures {
        line(format!("  FAILED: {f}"));
    }
    // A closed stdout (`| head`) is not worth a panic.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
}

fn kind_label(s: &Snapshot, capacity: usize) -> String {
    match s.kind {
        Kind::Buffered => format!("buffered({})", s.capacity.unwrap_or(capacity)),
        Kind::Unlimited => format!("unlimited(~{capacity})"),
        k => k.name().to_string(),
    }
}

/// 12345678.9 → "12.35M".
fn si(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2}G", x / 1e9),
        x if x >= 1e6 => format!("{:.2}M", x / 1e6),
        x if x >= 1e3 => format!("{:.1}k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

/// 1234567 → "1,234,567".
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(si(12_345_678.9), "12.35M");
        assert_eq!(si(950.0), "950");
    }

    #[test]
    fn stamps_survive_any_length() {
        for len in [0, 3, 8, 256] {
            let m = Msg::new(0x0102_0304_0506_0708, len);
            assert!(m.intact(len));
            assert_eq!(m.byte_len(), len);
            assert!(!m.intact(len + 1));
        }
        let mut m = Msg::new(7, 16);
        m.payload[0] ^= 1;
        assert!(!m.intact(16));
    }
}
