//! The eleven scenarios: which source model, how many flows, which targets, and what each
//! must show (backpressure, a reset, a target error, …) to count as correct.

use std::fmt;

use crate::error::{AdapterError, Result};
use crate::local::SourceModel;

/// One scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scenario {
    /// One small flow through an echo target.
    SingleFlowEcho,
    /// Four small flows.
    ManySmallFlows,
    /// Two large flows through tight windows: backpressure must happen.
    LargeFlowBackpressure,
    /// One flow of twelve chunks two virtual milliseconds apart.
    SlowDripFlow,
    /// A bulk flow, small flows, and a flow the source resets.
    MixedFlows,
    /// One of three flows resets; the others complete.
    ResetFlowIsolation,
    /// One of three flows meets an error target; the others complete.
    TargetErrorMapping,
    /// One of three flows meets a reset target; the others complete.
    TargetResetMapping,
    /// A request, a half-close, and the response.
    HalfCloseFlow,
    /// Eight flows into a two-envelope carrier queue with a slow egress.
    QueuePressure,
    /// One flow whose source also offers a malformed chunk, refused cleanly.
    MalformedSourceChunk,
}

/// What a scenario's run must show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expect {
    /// Backpressure events > 0.
    pub backpressure: bool,
    /// Exactly one flow reset by its source.
    pub source_reset: bool,
    /// Exactly one target error.
    pub target_error: bool,
    /// Exactly one target reset.
    pub target_reset: bool,
    /// Queue pressure events > 0.
    pub queue_pressure: bool,
    /// Exactly one malformed chunk refused.
    pub malformed: bool,
}

impl Scenario {
    /// All eleven, in report order.
    pub const ALL: [Scenario; 11] = [
        Scenario::SingleFlowEcho,
        Scenario::ManySmallFlows,
        Scenario::LargeFlowBackpressure,
        Scenario::SlowDripFlow,
        Scenario::MixedFlows,
        Scenario::ResetFlowIsolation,
        Scenario::TargetErrorMapping,
        Scenario::TargetResetMapping,
        Scenario::HalfCloseFlow,
        Scenario::QueuePressure,
        Scenario::MalformedSourceChunk,
    ];

    /// What `--quick` runs.
    pub const QUICK: [Scenario; 3] =
        [Scenario::SingleFlowEcho, Scenario::ManySmallFlows, Scenario::LargeFlowBackpressure];

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::SingleFlowEcho => "single_flow_echo",
            Scenario::ManySmallFlows => "many_small_flows",
            Scenario::LargeFlowBackpressure => "large_flow_backpressure",
            Scenario::SlowDripFlow => "slow_drip_flow",
            Scenario::MixedFlows => "mixed_flows",
            Scenario::ResetFlowIsolation => "reset_flow_isolation",
            Scenario::TargetErrorMapping => "target_error_mapping",
            Scenario::TargetResetMapping => "target_reset_mapping",
            Scenario::HalfCloseFlow => "half_close_flow",
            Scenario::QueuePressure => "queue_pressure",
            Scenario::MalformedSourceChunk => "malformed_source_chunk",
        }
    }

    /// The adversary's name: `local_` + the name.
    pub fn adversary_name(self) -> String {
        format!("local_{}", self.name())
    }

    /// Parses a name, with or without the `local_` prefix.
    pub fn from_name(name: &str) -> Result<Scenario> {
        let bare = name.strip_prefix("local_").unwrap_or(name);
        Scenario::ALL
            .into_iter()
            .find(|s| s.name() == bare)
            .ok_or_else(|| AdapterError::InvalidConfig(format!("unknown scenario `{name}`")))
    }

    /// The source model.
    pub fn source_model(self) -> SourceModel {
        match self {
            Scenario::LargeFlowBackpressure => SourceModel::LargeObject,
            Scenario::SlowDripFlow => SourceModel::SlowDrip,
            Scenario::MixedFlows => SourceModel::MixedFlow,
            Scenario::ResetFlowIsolation => SourceModel::Resetting,
            Scenario::HalfCloseFlow => SourceModel::HalfClose,
            _ => SourceModel::SmallBurst,
        }
    }

    /// Default flow count.
    pub fn flows(self) -> usize {
        match self {
            Scenario::SingleFlowEcho
            | Scenario::SlowDripFlow
            | Scenario::HalfCloseFlow
            | Scenario::MalformedSourceChunk => 1,
            Scenario::LargeFlowBackpressure => 2,
            Scenario::ResetFlowIsolation | Scenario::TargetErrorMapping | Scenario::TargetResetMapping => 3,
            Scenario::ManySmallFlows | Scenario::MixedFlows => 4,
            Scenario::QueuePressure => 8,
        }
    }

    /// What the run must show.
    pub fn expect(self) -> Expect {
        let mut e = Expect::default();
        match self {
            Scenario::LargeFlowBackpressure => e.backpressure = true,
            Scenario::MixedFlows | Scenario::ResetFlowIsolation => e.source_reset = true,
            Scenario::TargetErrorMapping => e.target_error = true,
            Scenario::TargetResetMapping => e.target_reset = true,
            Scenario::QueuePressure => e.queue_pressure = true,
            Scenario::MalformedSourceChunk => e.malformed = true,
            _ => {}
        }
        e
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
