//! Deterministic source models: what a local "outside world" sends, flow by flow.
//!
//! Flow ids are `local-flow-%02d` (1-based); each flow's sequence numbers start at 1.
//! Sizes follow the model table (`seed` is the plan seed, `i` the 0-based flow or chunk
//! index); payload bytes come from [`payload_bytes`], a function of (seed, flow, sequence),
//! so the sink can recompute what it should have received.
//!
//! | model | chunks | sizes | terminal |
//! |---|---|---|---|
//! | small_burst_source | 1 per flow | 64 + (seed+i) % 32 | each final |
//! | large_object_source | 4 per flow | max_chunk / 2 | 4th final |
//! | slow_drip_source | 12, ticks 2i | 24 + (seed+i) % 8 | 12th final |
//! | mixed_flow_source | flow 1: 2 × max_chunk/2; others 96 B | | last flow reset (flows ≥ 2) |
//! | resetting_source | 128 B then 0 B | | flow `seed % flows` resets, others final |
//! | half_close_source | 128 B, then a half-close | | final after the response |

use std::fmt;

use crate::error::{AdapterError, Result};
use crate::rng::{SplitMix64, mix64};

/// Salt of payload generation.
const PAYLOAD_SALT: u64 = 0x7061_796c_6f61_6400;

/// One of the six source models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceModel {
    /// One small chunk per flow.
    SmallBurst,
    /// Four half-max chunks per flow.
    LargeObject,
    /// Twelve small chunks, two virtual milliseconds apart.
    SlowDrip,
    /// One bulk flow, small flows, the last flow reset.
    MixedFlow,
    /// One flow resets after its first chunk.
    Resetting,
    /// A request, a half-close, then the response.
    HalfClose,
}

impl SourceModel {
    /// Every model.
    pub const ALL: [SourceModel; 6] = [
        SourceModel::SmallBurst,
        SourceModel::LargeObject,
        SourceModel::SlowDrip,
        SourceModel::MixedFlow,
        SourceModel::Resetting,
        SourceModel::HalfClose,
    ];

    /// The model's name.
    pub fn name(self) -> &'static str {
        match self {
            SourceModel::SmallBurst => "small_burst_source",
            SourceModel::LargeObject => "large_object_source",
            SourceModel::SlowDrip => "slow_drip_source",
            SourceModel::MixedFlow => "mixed_flow_source",
            SourceModel::Resetting => "resetting_source",
            SourceModel::HalfClose => "half_close_source",
        }
    }

    /// Parses a model name; unknown names are `InvalidConfig`.
    pub fn from_name(name: &str) -> Result<SourceModel> {
        SourceModel::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| AdapterError::InvalidConfig(format!("unknown source model `{name}`")))
    }
}

impl fmt::Display for SourceModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One chunk as the source offers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceChunk {
    /// The flow.
    pub flow_id: String,
    /// 1-based per flow.
    pub sequence: u64,
    /// Declared length.
    pub byte_count: u64,
    /// Last chunk of the flow.
    pub fin: bool,
    /// The flow resets here.
    pub reset: bool,
    /// The writer half-closes after this chunk.
    pub half_close: bool,
    /// Virtual milliseconds from the start at which the source offers it.
    pub tick: u64,
    /// The bytes; `None` for a counts-only chunk.
    pub data: Option<Vec<u8>>,
}

impl SourceChunk {
    /// Checks the chunk against the local adapter's rules: non-empty flow id, sequence ≠ 0,
    /// byte count ≤ `max_chunk`, data length = byte count when data is present.
    pub fn validate(&self, max_chunk: u64) -> Result<()> {
        let bad = |m: String| Err(AdapterError::InvalidFlow(m));
        if self.flow_id.is_empty() {
            return bad("source chunk with an empty flow id".into());
        }
        if self.sequence == 0 {
            return bad(format!("{}: sequence 0", self.flow_id));
        }
        if self.byte_count > max_chunk {
            return bad(format!("{}: chunk of {} bytes exceeds {max_chunk}", self.flow_id, self.byte_count));
        }
        if let Some(d) = &self.data
            && d.len() as u64 != self.byte_count
        {
            return bad(format!(
                "{}: {} data bytes for a byte count of {}",
                self.flow_id,
                d.len(),
                self.byte_count
            ));
        }
        Ok(())
    }
}

/// One flow's chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowPlan {
    /// `local-flow-NN`.
    pub id: String,
    /// 0-based.
    pub index: usize,
    /// In sequence order.
    pub chunks: Vec<SourceChunk>,
}

/// A whole source plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcePlan {
    /// The model.
    pub model: SourceModel,
    /// The plan seed.
    pub seed: u64,
    /// Flows in index order.
    pub flows: Vec<FlowPlan>,
}

/// The id of flow `index` (0-based).
pub fn flow_id(index: usize) -> String {
    format!("local-flow-{:02}", index + 1)
}

/// The bytes of `flow`'s chunk `sequence`: `len` bytes of a generator seeded by
/// (seed, flow, sequence).
pub fn payload_bytes(seed: u64, flow: usize, sequence: u64, len: u64) -> Vec<u8> {
    let mut g = SplitMix64::new(mix64(seed ^ PAYLOAD_SALT ^ ((flow as u64) << 40) ^ sequence));
    let mut out = Vec::with_capacity(len as usize);
    while (out.len() as u64) < len {
        let word = g.next_u64().to_le_bytes();
        let take = ((len - out.len() as u64) as usize).min(8);
        out.extend_from_slice(&word[..take]);
    }
    out
}

/// Generates the plan of `model` for `flows` flows.
pub fn generate_source_plan(
    model: SourceModel,
    flows: usize,
    seed: u64,
    max_chunk: u64,
) -> Result<SourcePlan> {
    if flows == 0 || flows > super::LOCAL_MAX_FLOWS {
        return Err(AdapterError::InvalidConfig(format!(
            "{flows} flows outside 1..={}",
            super::LOCAL_MAX_FLOWS
        )));
    }
    if !(256..=super::LOCAL_MAX_CHUNK).contains(&max_chunk) {
        return Err(AdapterError::InvalidConfig(format!("max chunk {max_chunk} outside 256..=256 KiB")));
    }
    let plan_flows = (0..flows)
        .map(|i| {
            let mut b = Builder { seed, flow: i, id: flow_id(i), chunks: Vec::new() };
            let s = seed.wrapping_add(i as u64);
            match model {
                SourceModel::SmallBurst => b.chunk(64 + s % 32, 0).fin = true,
                SourceModel::LargeObject => {
                    for _ in 0..4 {
                        b.chunk(max_chunk / 2, 0);
                    }
                    b.mark_last_final();
                }
                SourceModel::SlowDrip => {
                    for c in 0..12u64 {
                        b.chunk(24 + seed.wrapping_add(c) % 8, 2 * c);
                    }
                    b.mark_last_final();
                }
                SourceModel::MixedFlow => {
                    if i == 0 {
                        b.chunk(max_chunk / 2, 0);
                        b.chunk(max_chunk / 2, 0).fin = true;
                    } else if i == flows - 1 {
                        b.chunk(96, 0);
                        b.chunk(0, 0).reset = true;
                    } else {
                        b.chunk(96, 0).fin = true;
                    }
                }
                SourceModel::Resetting => {
                    b.chunk(128, 0);
                    let last = b.chunk(0, 0);
                    if i as u64 == seed % flows as u64 {
                        last.reset = true;
                    } else {
                        last.fin = true;
                    }
                }
                SourceModel::HalfClose => {
                    b.chunk(128, 0);
                    b.chunk(0, 0).half_close = true;
                }
            }
            FlowPlan { id: b.id, index: i, chunks: b.chunks }
        })
        .collect();
    Ok(SourcePlan { model, seed, flows: plan_flows })
}

struct Builder {
    seed: u64,
    flow: usize,
    id: String,
    chunks: Vec<SourceChunk>,
}

impl Builder {
    fn chunk(&mut self, len: u64, tick: u64) -> &mut SourceChunk {
        let sequence = self.chunks.len() as u64 + 1;
        self.chunks.push(SourceChunk {
            flow_id: self.id.clone(),
            sequence,
            byte_count: len,
            fin: false,
            reset: false,
            half_close: false,
            tick,
            data: Some(payload_bytes(self.seed, self.flow, sequence, len)),
        });
        let last = self.chunks.len() - 1;
        &mut self.chunks[last]
    }

    fn mark_last_final(&mut self) {
        if let Some(c) = self.chunks.last_mut() {
            c.fin = true;
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn models_follow_the_table() {
        let p = generate_source_plan(SourceModel::SmallBurst, 4, 10, 65536).unwrap();
        assert_eq!(
            p.flows.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(),
            ["local-flow-01", "local-flow-02", "local-flow-03", "local-flow-04"]
        );
        assert_eq!(p.flows.iter().map(|f| f.chunks[0].byte_count).collect::<Vec<_>>(), [74, 75, 76, 77]);
        assert!(p.flows.iter().all(|f| f.chunks.len() == 1 && f.chunks[0].fin && f.chunks[0].sequence == 1));

        let p = generate_source_plan(SourceModel::LargeObject, 2, 1, 32768).unwrap();
        for f in &p.flows {
            assert_eq!(f.chunks.iter().map(|c| c.byte_count).collect::<Vec<_>>(), [16384; 4]);
            assert_eq!(f.chunks.iter().map(|c| c.fin).collect::<Vec<_>>(), [false, false, false, true]);
        }

        let p = generate_source_plan(SourceModel::SlowDrip, 1, 3, 65536).unwrap();
        let c = &p.flows[0].chunks;
        assert_eq!(c.len(), 12);
        assert_eq!(c.iter().map(|c| c.tick).collect::<Vec<_>>(), (0..12).map(|i| 2 * i).collect::<Vec<_>>());
        assert!(c.iter().all(|c| (24..32).contains(&c.byte_count)) && c[11].fin && !c[10].fin);

        let p = generate_source_plan(SourceModel::MixedFlow, 2, 1, 65536).unwrap();
        assert!(p.flows[0].chunks[1].fin, "flow 1 is the bulk flow");
        assert!(p.flows[1].chunks.last().unwrap().reset, "with two flows the last one still resets");

        let p = generate_source_plan(SourceModel::Resetting, 3, 4, 65536).unwrap();
        let resets: Vec<bool> = p.flows.iter().map(|f| f.chunks[1].reset).collect();
        assert_eq!(resets, [false, true, false], "flow seed % flows resets");
        assert!(p.flows.iter().all(|f| f.chunks[1].byte_count == 0 && f.chunks[0].byte_count == 128));

        let p = generate_source_plan(SourceModel::HalfClose, 1, 1, 65536).unwrap();
        assert!(p.flows[0].chunks[1].half_close && !p.flows[0].chunks[1].fin);
    }

    #[test]
    fn same_seed_same_plan_and_bytes() {
        for m in SourceModel::ALL {
            let a = generate_source_plan(m, 3, 9, 16384).unwrap();
            assert_eq!(a, generate_source_plan(m, 3, 9, 16384).unwrap());
            for f in &a.flows {
                for c in &f.chunks {
                    c.validate(16384).unwrap();
                }
            }
        }
        assert_ne!(payload_bytes(1, 0, 1, 64), payload_bytes(2, 0, 1, 64));
        assert_ne!(payload_bytes(1, 0, 1, 64), payload_bytes(1, 1, 1, 64));
        assert_eq!(payload_bytes(1, 0, 1, 13).len(), 13);
    }

    #[test]
    fn malformed_chunks_and_names_are_rejected() {
        let ok =
            generate_source_plan(SourceModel::SmallBurst, 1, 1, 1024).unwrap().flows[0].chunks[0].clone();
        let mut c = ok.clone();
        c.sequence = 0;
        assert!(c.validate(1024).is_err());
        let mut c = ok.clone();
        c.flow_id.clear();
        assert!(c.validate(1024).is_err());
        let mut c = ok.clone();
        c.byte_count = 2000;
        assert!(c.validate(1024).is_err());
        let mut c = ok;
        c.data = Some(vec![0; 3]);
        assert!(c.validate(1024).is_err());
        assert!(SourceModel::from_name("firehose_source").is_err());
        assert!(generate_source_plan(SourceModel::SmallBurst, 0, 1, 1024).is_err());
        assert!(generate_source_plan(SourceModel::SmallBurst, 65, 1, 1024).is_err());
    }
}
