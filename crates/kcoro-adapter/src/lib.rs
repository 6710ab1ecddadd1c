//! kcoro-adapter: the boundary where external producers and consumers meet the kcoro
//! runtime, and the deterministic local adapter that proves flows really drive it.
//!
//! ```text
//! deterministic local source
//!   -> memory ingress adapter          (local::ingress)
//!   -> adapter flow lifecycle          (contract::flow, contract::capability)
//!   -> runtime adapter boundary        (boundary)
//!   -> runtime stream/session manager  (session)
//!   -> proxy semantics + carrier       (proxy)
//!   -> memory egress adapter           (local::egress)
//!   -> deterministic local sink        (local::sink)
//! ```
//!
//! [`run_scenario`] drives one scenario under one [`Profile`] through all of it on a fresh
//! deterministic kcoro runtime; [`audit`] runs many and applies the gates.

pub mod audit;
pub mod boundary;
pub mod contract;
pub mod digest;
pub mod error;
pub mod local;
pub mod mutant;
pub mod profile;
pub mod proxy;
pub mod rng;
pub mod runner;
pub mod session;
pub mod trace;

pub mod codegen;
pub use audit::{AuditConfig, Auditor, Mode, Report};
pub use error::{AdapterError, Result};
pub use local::LocalConfig;
pub use mutant::Mutant;
pub use profile::Profile;
pub use runner::{RunConfig, RunOutcome, Scenario, Summary, run_scenario};
pub use trace::TraceEvent;

/// The adapter guide's examples compile and run as doctests.
#[doc = include_str!("../../../docs/ADAPTER.md")]
#[cfg(doctest)]
pub struct AdapterGuide;
