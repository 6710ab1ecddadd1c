//! The flow lifecycle: eight states, one transition table, and a recorder that refuses
//! anything the table does not allow.
//!
//! ```text
//!              opening   open   half_closed  draining  closed  reset  failed
//! new             x                                             x      x
//! opening                 x                                     x      x
//! open                           x            x         x       x      x
//! half_closed                                 x         x       x      x
//! draining                                              x       x      x
//! closed / reset / failed: terminal, no way out
//! ```
//!
//! # Invariants
//! - `path` starts at `new` and each step is an `x` above, so a recorded path is valid by
//!   construction; the audit re-checks paths anyway, against the same table.
//! - terminal ⇒ no later transition is recorded (`FlowTerminal`).
//! - a step into `half_closed` ⇒ the adapter has `flow_half_close`; into `reset` ⇒ it has
//!   `flow_reset`.

use std::fmt;

use serde::Serialize;

use super::capability::{Capability, CapabilitySet};
use crate::error::{AdapterError, Result};

/// Where a flow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowState {
    /// Described, not yet opening.
    New,
    /// Being set up (a runtime stream is being mapped).
    Opening,
    /// Carrying bytes both ways.
    Open,
    /// The writer finished; responses may still arrive.
    HalfClosed,
    /// Finished sending; waiting for in-flight bytes to drain.
    Draining,
    /// Finished cleanly. Terminal.
    Closed,
    /// Aborted by either side. Terminal.
    Reset,
    /// Failed (a target error, a broken invariant). Terminal.
    Failed,
}

impl FlowState {
    /// Closed, reset or failed.
    pub fn is_terminal(self) -> bool {
        matches!(self, FlowState::Closed | FlowState::Reset | FlowState::Failed)
    }

    /// The snake-case name.
    pub fn name(self) -> &'static str {
        match self {
            FlowState::New => "new",
            FlowState::Opening => "opening",
            FlowState::Open => "open",
            FlowState::HalfClosed => "half_closed",
            FlowState::Draining => "draining",
            FlowState::Closed => "closed",
            FlowState::Reset => "reset",
            FlowState::Failed => "failed",
        }
    }

    /// Whether the table allows `self → to`.
    pub fn can_transition_to(self, to: FlowState) -> bool {
        use FlowState::*;
        match self {
            New => matches!(to, Opening | Reset | Failed),
            Opening => matches!(to, Open | Reset | Failed),
            Open => matches!(to, HalfClosed | Draining | Closed | Reset | Failed),
            HalfClosed => matches!(to, Draining | Closed | Reset | Failed),
            Draining => matches!(to, Closed | Reset | Failed),
            Closed | Reset | Failed => false,
        }
    }
}

impl fmt::Display for FlowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Checks a whole recorded path against the table (the audit's independent re-check).
pub fn path_is_valid(path: &[FlowState]) -> bool {
    path.first() == Some(&FlowState::New) && path.windows(2).all(|w| w[0].can_transition_to(w[1]))
}

/// One flow's state plus the path it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowLifecycle {
    id: String,
    path: Vec<FlowState>,
}

impl FlowLifecycle {
    /// A flow in `new`.
    pub fn new(id: impl Into<String>) -> Self {
        FlowLifecycle { id: id.into(), path: vec![FlowState::New] }
    }

    /// The current state.
    pub fn state(&self) -> FlowState {
        self.path.last().copied().unwrap_or(FlowState::New)
    }

    /// Every state visited, in order.
    pub fn path(&self) -> &[FlowState] {
        &self.path
    }

    /// Moves to `to` if the table and the capabilities allow it.
    pub fn transition_to(&mut self, to: FlowState, caps: &CapabilitySet) -> Result<()> {
        let from = self.state();
        if from.is_terminal() {
            return Err(AdapterError::FlowTerminal { flow: self.id.clone(), state: from });
        }
        if !from.can_transition_to(to) {
            return Err(AdapterError::InvalidTransition { flow: self.id.clone(), from, to });
        }
        let needed = match to {
            FlowState::HalfClosed => Some(Capability::FlowHalfClose),
            FlowState::Reset => Some(Capability::FlowReset),
            _ => None,
        };
        if let Some(c) = needed.filter(|c| !caps.contains(*c)) {
            return Err(AdapterError::CapabilityMismatch(c.name().into()));
        }
        self.path.push(to);
        Ok(())
    }

    /// The path as `new>opening>open>closed`, the audit's lifecycle bucket.
    pub fn path_label(&self) -> String {
        self.path.iter().map(|s| s.name()).collect::<Vec<_>>().join(">")
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use FlowState::*;

    const ALL: [FlowState; 8] = [New, Opening, Open, HalfClosed, Draining, Closed, Reset, Failed];

    #[test]
    fn table_matches_the_contract() {
        let allowed = |from: FlowState| -> Vec<FlowState> {
            ALL.into_iter().filter(|to| from.can_transition_to(*to)).collect()
        };
        assert_eq!(allowed(New), [Opening, Reset, Failed]);
        assert_eq!(allowed(Opening), [Open, Reset, Failed]);
        assert_eq!(allowed(Open), [HalfClosed, Draining, Closed, Reset, Failed]);
        assert_eq!(allowed(HalfClosed), [Draining, Closed, Reset, Failed]);
        assert_eq!(allowed(Draining), [Closed, Reset, Failed]);
        for t in [Closed, Reset, Failed] {
            assert!(allowed(t).is_empty() && t.is_terminal());
        }
    }

    #[test]
    fn lifecycle_refuses_bad_steps_and_missing_capabilities() {
        let all = CapabilitySet::all();
        let mut f = FlowLifecycle::new("local-flow-01");
        assert!(matches!(f.transition_to(Open, &all), Err(AdapterError::InvalidTransition { .. })));
        f.transition_to(Opening, &all).unwrap();
        f.transition_to(Open, &all).unwrap();
        let mut no_half = all.clone();
        no_half.remove(Capability::FlowHalfClose);
        assert!(matches!(f.transition_to(HalfClosed, &no_half), Err(AdapterError::CapabilityMismatch(_))));
        let mut no_reset = all.clone();
        no_reset.remove(Capability::FlowReset);
        assert!(matches!(f.transition_to(Reset, &no_reset), Err(AdapterError::CapabilityMismatch(_))));
        f.transition_to(HalfClosed, &all).unwrap();
        f.transition_to(Closed, &all).unwrap();
        assert!(matches!(f.transition_to(Reset, &all), Err(AdapterError::FlowTerminal { .. })));
        assert_eq!(f.path_label(), "new>opening>open>half_closed>closed");
        assert!(path_is_valid(f.path()));
        assert!(!path_is_valid(&[New, Open]));
    }
}
