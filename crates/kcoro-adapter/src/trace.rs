//! Trace events and the hygiene scanner.
//!
//! A trace event carries classes, buckets and flags: never payload bytes, never secrets.
//! That is not trusted to discipline: [`scan_json`] reads the emitted JSON itself (every
//! key and every string value) and reports what it finds, so a leak introduced anywhere
//! (a debug field, a config dump) is caught in the output, not in a flag.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// Keys and substrings that mean payload bytes leaked.
pub const FORBIDDEN_PAYLOAD: [&str; 5] =
    ["plaintext_payload", "ciphertext_payload", "payload", "plaintext", "ciphertext"];
/// Keys and substrings that mean secret material leaked.
pub const FORBIDDEN_SECRET: [&str; 10] = [
    "raw_secret",
    "derived_key",
    "nonce_base",
    "auth_tag",
    "proof_material",
    "private_key",
    "session_secret",
    "client_write_key",
    "server_write_key",
    "exporter_secret",
];
/// Names that contain a forbidden word but are the audit's own vocabulary (the two leak
/// mutants' names included: the report lists them).
pub const ALLOWED: [&str; 7] = [
    "local_adapter_payload_trace_leak",
    "local_adapter_secret_trace_leak",
    "payload_bytes",
    "payload_hygiene",
    "payload_logged",
    "secret_logged",
    "secret_hygiene",
];

/// `zero`, `small` (≤ 2), `medium` (≤ 8) or `large`.
pub fn count_bucket(n: u64) -> &'static str {
    match n {
        0 => "zero",
        1..=2 => "small",
        3..=8 => "medium",
        _ => "large",
    }
}

/// `zero`, `small` (≤ 1 KiB), `medium` (≤ 64 KiB) or `large`.
pub fn byte_bucket(n: u64) -> &'static str {
    match n {
        0 => "zero",
        1..=1024 => "small",
        1025..=65536 => "medium",
        _ => "large",
    }
}

/// One safe event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    /// Position in the run's trace, from 0.
    pub seq: u64,
    /// What happened (`flow_state`, `chunk`, `backpressure`, …).
    pub event: &'static str,
    /// The flow id, when the event concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// The stream id, when the event concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<u64>,
    /// A lifecycle state or outcome class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<&'static str>,
    /// Size bucket of the bytes concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte_bucket: Option<&'static str>,
    /// Extra fields. Empty in correct code; the leak mutants are what fill it.
    #[serde(flatten, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<&'static str, String>,
}

impl TraceEvent {
    /// An event of kind `event` with nothing else set.
    pub fn new(event: &'static str) -> Self {
        TraceEvent {
            seq: 0,
            event,
            flow: None,
            stream: None,
            state: None,
            byte_bucket: None,
            extra: BTreeMap::new(),
        }
    }

    /// Sets the flow.
    pub fn flow(mut self, id: &str) -> Self {
        self.flow = Some(crate::contract::redact(id).to_string());
        self
    }

    /// Sets the stream.
    pub fn stream(mut self, id: u64) -> Self {
        self.stream = Some(id);
        self
    }

    /// Sets the state or outcome class.
    pub fn state(mut self, s: &'static str) -> Self {
        self.state = Some(s);
        self
    }

    /// Sets the byte bucket of `n` bytes.
    pub fn bytes(mut self, n: u64) -> Self {
        self.byte_bucket = Some(byte_bucket(n));
        self
    }
}

#[derive(Debug, Default)]
struct Log {
    events: Vec<TraceEvent>,
    limit: usize,
    dropped: u64,
}

/// A run's trace, shared by its coroutines. Bounded: past the limit events are counted,
/// not kept.
#[derive(Debug, Clone)]
pub struct Tracer(Arc<Mutex<Log>>);

impl Tracer {
    /// A trace keeping at most `limit` events.
    pub fn new(limit: usize) -> Self {
        Tracer(Arc::new(Mutex::new(Log { events: Vec::new(), limit, dropped: 0 })))
    }

    /// Records `ev`, numbering it.
    pub fn emit(&self, mut ev: TraceEvent) {
        // No lock is held across a suspension: emit never parks.
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if log.events.len() >= log.limit {
            log.dropped += 1;
            return;
        }
        ev.seq = log.events.len() as u64;
        log.events.push(ev);
    }

    /// The events so far and how many were dropped at the limit.
    pub fn take(&self) -> (Vec<TraceEvent>, u64) {
        let mut log = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut log.events), log.dropped)
    }
}

/// Renders events as JSON lines.
pub fn to_jsonl(events: &[TraceEvent]) -> String {
    let mut out = String::new();
    for ev in events {
        out.push_str(&serde_json::to_string(ev).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// What the scanner found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HygieneFindings {
    /// A payload word appeared.
    pub payload_logged: bool,
    /// A secret word or a sensitive value appeared.
    pub secret_logged: bool,
    /// What matched, as `payload_hygiene:N` / `secret_hygiene:N` (index into
    /// [`FORBIDDEN_PAYLOAD`] / [`FORBIDDEN_SECRET`]) or `secret_hygiene:value` for a
    /// sensitive value: labels that are safe to print in a report themselves. Sorted,
    /// deduplicated.
    pub hits: Vec<String>,
}

impl HygieneFindings {
    /// Nothing found.
    pub fn is_clean(&self) -> bool {
        !self.payload_logged && !self.secret_logged
    }

    /// Adds another scan's findings.
    pub fn merge(&mut self, other: HygieneFindings) {
        self.payload_logged |= other.payload_logged;
        self.secret_logged |= other.secret_logged;
        self.hits.extend(other.hits);
        self.hits.sort();
        self.hits.dedup();
    }
}

/// Scans JSON text (one document, or JSON lines) for payload and secret material in any
/// key or string value. Text that is not JSON is scanned as one string.
pub fn scan_json(text: &str) -> HygieneFindings {
    let mut f = HygieneFindings::default();
    let mut any = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => {
                any = true;
                walk(&v, &mut f);
            }
            Err(_) => break,
        }
    }
    if !any || serde_json::from_str::<serde_json::Value>(text).is_ok() {
        match serde_json::from_str::<serde_json::Value>(text) {
            Ok(v) => walk(&v, &mut f),
            Err(_) => check_word(text, &mut f),
        }
    }
    f.hits.sort();
    f.hits.dedup();
    f
}

fn walk(v: &serde_json::Value, f: &mut HygieneFindings) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                check_word(k, f);
                walk(v, f);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, f)),
        serde_json::Value::String(s) => check_word(s, f),
        _ => {}
    }
}

fn check_word(word: &str, f: &mut HygieneFindings) {
    let mut lower = word.to_ascii_lowercase();
    for ok in ALLOWED {
        lower = lower.replace(ok, "");
    }
    for (i, bad) in FORBIDDEN_SECRET.iter().enumerate() {
        if lower.contains(bad) {
            f.secret_logged = true;
            f.hits.push(format!("secret_hygiene:{i}"));
        }
    }
    for (i, bad) in FORBIDDEN_PAYLOAD.iter().enumerate() {
        if lower.contains(bad) {
            f.payload_logged = true;
            f.hits.push(format!("payload_hygiene:{i}"));
        }
    }
    if crate::contract::is_sensitive(&lower) {
        f.secret_logged = true;
        f.hits.push("secret_hygiene:value".to_string());
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!([0, 2, 3, 8, 9].map(count_bucket), ["zero", "small", "medium", "medium", "large"]);
        assert_eq!(
            [0, 1024, 1025, 65536, 65537].map(byte_bucket),
            ["zero", "small", "medium", "medium", "large"]
        );
    }

    #[test]
    fn scanner_reads_the_json_not_flags() {
        let clean = r#"{"event":"chunk","payload_bytes":12,"payload_logged":false,"secret_logged":false}"#;
        assert!(scan_json(clean).is_clean());
        let leak = r#"{"event":"chunk","payload":"00ff"}"#;
        let f = scan_json(leak);
        assert!(f.payload_logged && !f.secret_logged);
        assert_eq!(f.hits, ["payload_hygiene:2"], "index of `payload` in FORBIDDEN_PAYLOAD");
        assert!(scan_json(&serde_json::to_string(&f).unwrap()).is_clean(), "findings are printable");
        let nested = r#"{"a":[{"b":{"session_secret":"x"}}]}"#;
        assert!(scan_json(nested).secret_logged);
        let value = r#"{"runtime_id":"my-token-42"}"#;
        assert!(scan_json(value).secret_logged, "sensitive values count, not only keys");
        let lines = "{\"event\":\"a\"}\n{\"event\":\"b\",\"raw_secret\":1}\n";
        assert!(scan_json(lines).secret_logged, "every JSON line is scanned");
        assert!(scan_json("plaintext here").payload_logged, "non-JSON text is scanned as text");
    }

    #[test]
    fn tracer_is_bounded_and_numbered() {
        let t = Tracer::new(2);
        for _ in 0..5 {
            t.emit(TraceEvent::new("x"));
        }
        let (events, dropped) = t.take();
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(dropped, 3);
    }
}
