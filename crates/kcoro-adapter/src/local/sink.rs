//! The deterministic local sink (`memory_sink`): the oracle at the end of the pipeline.
//!
//! It accepts only well-formed, in-order chunks of live flows, counts what it accepts,
//! digests the bytes per flow, records each flow's terminal event, and finally compares
//! everything against what the source plan says should have arrived.
//!
//! # Rules
//! - reject: empty flow id, sequence 0, byte count > max chunk or ≠ data length
//!   (`invalid_rejected`); any write or event after the flow's terminal event
//!   (`post_close_rejected`); sequence ≤ the last accepted one, i.e. duplicates and
//!   reordering (`sequence_rejected`).
//! - a chunk with `final` is the flow's terminal event `final`; `reset` and `error` arrive
//!   as events.
//! - [`LocalSink::verify`] reports every expected flow without a terminal event, with a
//!   different terminal, with different chunk sequences or sizes, or whose payload digest
//!   differs from the source's, and every flow nobody expected.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::contract::AdapterChunk;
use crate::digest::PayloadDigest;
use crate::error::{AdapterError, Result};

/// The sink model's name.
pub const SINK_MODEL: &str = "memory_sink";

/// How a flow ended at the sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Terminal {
    /// The final chunk arrived.
    Final,
    /// The flow was reset.
    Reset,
    /// The flow failed (its target reported an error).
    Error,
}

impl Terminal {
    /// The snake-case name.
    pub fn name(self) -> &'static str {
        match self {
            Terminal::Final => "final",
            Terminal::Reset => "reset",
            Terminal::Error => "error",
        }
    }
}

/// What the sink should see for one flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedFlow {
    /// The flow.
    pub id: String,
    /// (sequence, byte count) of every chunk, in order.
    pub chunks: Vec<(u64, u64)>,
    /// Digest of all their bytes.
    pub digest: u64,
    /// The terminal event.
    pub terminal: Terminal,
}

#[derive(Debug, Default)]
struct SinkFlow {
    last_seq: u64,
    terminal: Option<Terminal>,
    chunks: Vec<(u64, u64)>,
    digest: PayloadDigest,
    streams: BTreeSet<u64>,
}

/// Counters of the sink; each rejection counted once, where it is decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SinkCounters {
    /// Chunks accepted.
    pub chunks: u64,
    /// Bytes accepted.
    pub bytes: u64,
    /// Duplicates and reorderings refused.
    pub sequence_rejected: u64,
    /// Writes or events after the terminal event refused.
    pub post_close_rejected: u64,
    /// Malformed chunks refused.
    pub invalid_rejected: u64,
}

/// What [`LocalSink::verify`] found wrong; empty lists mean the sink saw exactly the plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SinkVerdict {
    /// Expected flows with no terminal event.
    pub missing_terminal: Vec<String>,
    /// Flows whose terminal event differs from the expected one.
    pub wrong_terminal: Vec<String>,
    /// Flows whose chunk sequences or sizes differ.
    pub chunk_mismatch: Vec<String>,
    /// Flows whose payload digest differs from the source's.
    pub digest_mismatch: Vec<String>,
    /// Flows the sink saw but nobody expected.
    pub unexpected_flows: Vec<String>,
}

impl SinkVerdict {
    /// Nothing wrong.
    pub fn is_clean(&self) -> bool {
        self.missing_terminal.is_empty()
            && self.wrong_terminal.is_empty()
            && self.chunk_mismatch.is_empty()
            && self.digest_mismatch.is_empty()
            && self.unexpected_flows.is_empty()
    }
}

/// The sink.
#[derive(Debug)]
pub struct LocalSink {
    max_chunk: u64,
    flows: BTreeMap<String, SinkFlow>,
    counters: SinkCounters,
}

impl LocalSink {
    /// A sink accepting chunks up to `max_chunk` bytes.
    pub fn new(max_chunk: u64) -> Self {
        LocalSink { max_chunk, flows: BTreeMap::new(), counters: SinkCounters::default() }
    }

    /// Accepts one chunk that arrived on `stream`, or refuses it by the rules.
    pub fn write(&mut self, chunk: &AdapterChunk, data: &[u8], stream: u64) -> Result<()> {
        if chunk.flow_id.is_empty()
            || chunk.sequence == 0
            || chunk.byte_count > self.max_chunk
            || chunk.byte_count != data.len() as u64
        {
            self.counters.invalid_rejected += 1;
            return Err(AdapterError::InvalidFlow(format!("sink: malformed chunk for {}", chunk.flow_id)));
        }
        let flow = self.flows.entry(chunk.flow_id.clone()).or_default();
        if let Some(t) = flow.terminal {
            self.counters.post_close_rejected += 1;
            return Err(AdapterError::FlowTerminal { flow: chunk.flow_id.clone(), state: terminal_state(t) });
        }
        if chunk.sequence <= flow.last_seq {
            self.counters.sequence_rejected += 1;
            return Err(AdapterError::InvalidFlow(format!(
                "sink: {} sequence {} after {}",
                chunk.flow_id, chunk.sequence, flow.last_seq
            )));
        }
        flow.last_seq = chunk.sequence;
        flow.chunks.push((chunk.sequence, chunk.byte_count));
        flow.digest.update(data);
        flow.streams.insert(stream);
        if chunk.fin {
            flow.terminal = Some(Terminal::Final);
        }
        self.counters.chunks += 1;
        self.counters.bytes += chunk.byte_count;
        Ok(())
    }

    /// Records a reset or error ending `flow` (final arrives as a chunk).
    pub fn end(&mut self, flow_id: &str, terminal: Terminal, stream: u64) -> Result<()> {
        let flow = self.flows.entry(flow_id.to_string()).or_default();
        if let Some(t) = flow.terminal {
            self.counters.post_close_rejected += 1;
            return Err(AdapterError::FlowTerminal { flow: flow_id.to_string(), state: terminal_state(t) });
        }
        flow.terminal = Some(terminal);
        flow.streams.insert(stream);
        Ok(())
    }

    /// The counters.
    pub fn counters(&self) -> SinkCounters {
        self.counters
    }

    /// The terminal event of `flow`, if any.
    pub fn terminal(&self, flow: &str) -> Option<Terminal> {
        self.flows.get(flow).and_then(|f| f.terminal)
    }

    /// The streams `flow`'s chunks and events arrived on.
    pub fn streams_of(&self, flow: &str) -> Vec<u64> {
        self.flows.get(flow).map(|f| f.streams.iter().copied().collect()).unwrap_or_default()
    }

    /// Compares what arrived with `expected`.
    pub fn verify(&self, expected: &[ExpectedFlow]) -> SinkVerdict {
        let mut v = SinkVerdict::default();
        for e in expected {
            let Some(got) = self.flows.get(&e.id) else {
                v.missing_terminal.push(e.id.clone());
                continue;
            };
            match got.terminal {
                None => v.missing_terminal.push(e.id.clone()),
                Some(t) if t != e.terminal => v.wrong_terminal.push(e.id.clone()),
                Some(_) => {}
            }
            if got.chunks != e.chunks {
                v.chunk_mismatch.push(e.id.clone());
            }
            if got.digest.value() != e.digest {
                v.digest_mismatch.push(e.id.clone());
            }
        }
        let known: BTreeSet<&str> = expected.iter().map(|e| e.id.as_str()).collect();
        v.unexpected_flows = self.flows.keys().filter(|k| !known.contains(k.as_str())).cloned().collect();
        v
    }
}

fn terminal_state(t: Terminal) -> crate::contract::FlowState {
    match t {
        Terminal::Final => crate::contract::FlowState::Closed,
        Terminal::Reset => crate::contract::FlowState::Reset,
        Terminal::Error => crate::contract::FlowState::Failed,
    }
}

/// The digest of `chunks` of bytes, as the sink computes it.
pub fn digest_of<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    let mut d = PayloadDigest::new();
    chunks.into_iter().for_each(|c| d.update(c));
    d.value()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn chunk(flow: &str, seq: u64, data: &[u8], fin: bool) -> AdapterChunk {
        AdapterChunk::data(flow, seq, data.len() as u64, fin)
    }

    fn expect(id: &str, parts: &[&[u8]], terminal: Terminal) -> ExpectedFlow {
        ExpectedFlow {
            id: id.into(),
            chunks: parts.iter().enumerate().map(|(i, p)| (i as u64 + 1, p.len() as u64)).collect(),
            digest: digest_of(parts.iter().copied()),
            terminal,
        }
    }

    #[test]
    fn accepts_a_clean_flow() {
        let mut s = LocalSink::new(1024);
        s.write(&chunk("f", 1, b"ab", false), b"ab", 1).unwrap();
        s.write(&chunk("f", 2, b"cd", true), b"cd", 1).unwrap();
        assert!(s.verify(&[expect("f", &[b"ab", b"cd"], Terminal::Final)]).is_clean());
        assert_eq!(s.counters().chunks, 2);
        assert_eq!(s.counters().bytes, 4);
        assert_eq!(s.streams_of("f"), [1]);
    }

    #[test]
    fn rejects_malformed_duplicate_reordered_and_post_close() {
        let mut s = LocalSink::new(4);
        assert!(s.write(&chunk("", 1, b"a", false), b"a", 1).is_err());
        assert!(s.write(&chunk("f", 0, b"a", false), b"a", 1).is_err());
        assert!(s.write(&chunk("f", 1, b"abcde", false), b"abcde", 1).is_err());
        let mut lying = chunk("f", 1, b"abc", false);
        lying.byte_count = 2;
        assert!(s.write(&lying, b"abc", 1).is_err());
        assert_eq!(s.counters().invalid_rejected, 4);
        s.write(&chunk("f", 2, b"a", false), b"a", 1).unwrap();
        assert!(s.write(&chunk("f", 2, b"a", false), b"a", 1).is_err(), "duplicate");
        assert!(s.write(&chunk("f", 1, b"a", false), b"a", 1).is_err(), "reordered");
        assert_eq!(s.counters().sequence_rejected, 2);
        s.end("f", Terminal::Reset, 1).unwrap();
        assert!(s.write(&chunk("f", 3, b"a", false), b"a", 1).is_err());
        assert!(s.end("f", Terminal::Error, 1).is_err());
        assert_eq!(s.counters().post_close_rejected, 2);
        assert_eq!(s.counters().chunks, 1);
    }

    #[test]
    fn reports_missing_terminal_digest_mismatch_and_strangers() {
        let mut s = LocalSink::new(1024);
        s.write(&chunk("open", 1, b"ab", false), b"ab", 1).unwrap();
        s.write(&chunk("bent", 1, b"xy", true), b"xy", 3).unwrap();
        s.write(&chunk("stranger", 1, b"z", true), b"z", 5).unwrap();
        s.end("wrong", Terminal::Reset, 7).unwrap();
        let v = s.verify(&[
            expect("open", &[b"ab"], Terminal::Final),
            expect("bent", &[b"ab"], Terminal::Final),
            expect("never", &[b"ab"], Terminal::Final),
            expect("wrong", &[], Terminal::Error),
        ]);
        assert_eq!(v.missing_terminal, ["open", "never"]);
        assert_eq!(v.digest_mismatch, ["bent"]);
        assert_eq!(v.wrong_terminal, ["wrong"]);
        assert!(v.chunk_mismatch.is_empty());
        assert_eq!(v.unexpected_flows, ["stranger"]);
        assert!(!v.is_clean());
    }
}
