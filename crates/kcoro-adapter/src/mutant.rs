//! The audit's mutants: deliberately faulty code paths, each switched on for one run so the
//! audit can prove the gate responsible for it fails. The faulty paths compile only with
//! the `mutants` feature; without it [`MutantHook::is`] is a constant `false` and the
//! optimiser removes every branch.

use std::fmt;

/// One deliberate fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutant {
    /// The source feeder pushes into the ingress buffer without waiting for room.
    IgnoresSourceBackpressure,
    /// The egress adapter accepts a write to a closed flow.
    AcceptsPostCloseWrite,
    /// The egress pump drops the final chunk and never closes the flow.
    DropsFinalChunk,
    /// The egress pump writes one chunk twice.
    DuplicatesChunk,
    /// The boundary's stream → flow lookup returns the next flow's id.
    WrongFlowStreamMapping,
    /// Trace events carry the first payload bytes.
    PayloadTraceLeak,
    /// The session-start trace event carries a secret-bearing config field.
    SecretTraceLeak,
    /// Profiles differ only in names and padding; every policy is the same.
    PaddingOnlyDiversity,
}

impl Mutant {
    /// Every mutant, in report order.
    pub const ALL: [Mutant; 8] = [
        Mutant::IgnoresSourceBackpressure,
        Mutant::AcceptsPostCloseWrite,
        Mutant::DropsFinalChunk,
        Mutant::DuplicatesChunk,
        Mutant::WrongFlowStreamMapping,
        Mutant::PayloadTraceLeak,
        Mutant::SecretTraceLeak,
        Mutant::PaddingOnlyDiversity,
    ];

    /// The report name.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::IgnoresSourceBackpressure => "local_adapter_ignores_source_backpressure",
            Mutant::AcceptsPostCloseWrite => "local_adapter_accepts_post_close_write",
            Mutant::DropsFinalChunk => "local_adapter_drops_final_chunk",
            Mutant::DuplicatesChunk => "local_adapter_duplicates_chunk",
            Mutant::WrongFlowStreamMapping => "local_adapter_wrong_flow_stream_mapping",
            Mutant::PayloadTraceLeak => "local_adapter_payload_trace_leak",
            Mutant::SecretTraceLeak => "local_adapter_secret_trace_leak",
            Mutant::PaddingOnlyDiversity => "local_adapter_padding_only_diversity",
        }
    }

    /// Parses a report name.
    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The gate responsible for catching this mutant.
    pub fn gate(self) -> &'static str {
        match self {
            Mutant::IgnoresSourceBackpressure => "local_adapter_backpressure",
            Mutant::AcceptsPostCloseWrite => "local_adapter_flow_lifecycle",
            Mutant::DropsFinalChunk => "local_adapter_correctness",
            Mutant::DuplicatesChunk => "local_adapter_sequence_integrity",
            Mutant::WrongFlowStreamMapping => "local_adapter_runtime_integration",
            Mutant::PayloadTraceLeak | Mutant::SecretTraceLeak => "local_adapter_trace_hygiene",
            Mutant::PaddingOnlyDiversity => "local_adapter_collapse_resistance",
        }
    }

    /// Whether this build can switch mutants on.
    pub const fn compiled_in() -> bool {
        cfg!(feature = "mutants")
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which mutant, if any, is active for a run. Copy it into every part that has a faulty
/// twin; ask it with [`MutantHook::is`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MutantHook(Option<Mutant>);

impl MutantHook {
    /// No mutant: the correct code everywhere.
    pub const NONE: MutantHook = MutantHook(None);

    /// A hook with `m` active. Fails without the `mutants` feature.
    pub fn with(m: Mutant) -> crate::Result<MutantHook> {
        if Mutant::compiled_in() {
            Ok(MutantHook(Some(m)))
        } else {
            Err(crate::AdapterError::Unsupported(format!("mutant {m}: built without the `mutants` feature")))
        }
    }

    /// The active mutant.
    pub fn active(self) -> Option<Mutant> {
        self.0
    }

    /// Whether `m` is active. Always false without the `mutants` feature.
    #[inline(always)]
    pub fn is(self, m: Mutant) -> bool {
        cfg!(feature = "mutants") && self.0 == Some(m)
    }
}
