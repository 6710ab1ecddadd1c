//! The adapter crate's one error type. Each variant is a reason a caller can act on; the
//! spec's error names map one to one (`invalid config` → [`AdapterError::InvalidConfig`]).

use crate::contract::FlowState;

/// Why an adapter, session or audit operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdapterError {
    /// A configuration value is out of range, unknown, or sensitive.
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    /// A flow descriptor or source chunk is malformed.
    #[error("invalid flow: {0}")]
    InvalidFlow(String),
    /// The lifecycle table forbids this transition.
    #[error("invalid transition for flow {flow}: {from} -> {to}")]
    InvalidTransition { flow: String, from: FlowState, to: FlowState },
    /// `open_flow` with an id already in use.
    #[error("flow exists: {0}")]
    FlowExists(String),
    /// No flow with this id.
    #[error("flow not found: {0}")]
    FlowNotFound(String),
    /// The flow is closed, reset or failed: no more reads or writes.
    #[error("flow {flow} is terminal ({state})")]
    FlowTerminal { flow: String, state: FlowState },
    /// The operation would exceed a buffer or credit window; try again after a drain.
    #[error("backpressure on flow {0}")]
    Backpressure(String),
    /// Negotiation found required capabilities missing.
    #[error("capability mismatch: missing {0}")]
    CapabilityMismatch(String),
    /// A count or byte limit was reached.
    #[error("resource limit: {0}")]
    ResourceLimit(String),
    /// A trace or report would carry payload bytes or secrets.
    #[error("trace hygiene: {0}")]
    TraceHygiene(String),
    /// The operation is not offered here (for example a mutant without the `mutants` feature).
    #[error("unsupported operation: {0}")]
    Unsupported(String),
    /// A stream of the session failed or was reset.
    #[error("stream {stream}: {reason}")]
    Stream { stream: u64, reason: String },
    /// The runtime could not run the scenario (it deadlocked or could not start).
    #[error("runtime: {0}")]
    Runtime(String),
    /// Writing a report or trace failed.
    #[error("i/o: {0}")]
    Io(String),
}

impl AdapterError {
    /// The spec's short name for the error class, used in counters and trace buckets.
    pub fn class(&self) -> &'static str {
        match self {
            AdapterError::InvalidConfig(_) => "invalid_config",
            AdapterError::InvalidFlow(_) => "invalid_flow",
            AdapterError::InvalidTransition { .. } => "invalid_transition",
            AdapterError::FlowExists(_) => "flow_exists",
            AdapterError::FlowNotFound(_) => "flow_not_found",
            AdapterError::FlowTerminal { .. } => "flow_terminal",
            AdapterError::Backpressure(_) => "backpressure",
            AdapterError::CapabilityMismatch(_) => "capability_mismatch",
            AdapterError::ResourceLimit(_) => "resource_limit",
            AdapterError::TraceHygiene(_) => "trace_hygiene",
            AdapterError::Unsupported(_) => "unsupported_operation",
            AdapterError::Stream { .. } => "stream",
            AdapterError::Runtime(_) => "runtime",
            AdapterError::Io(_) => "io",
        }
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = AdapterError> = std::result::Result<T, E>;
