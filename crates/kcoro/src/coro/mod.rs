//! Coroutines: stacks (pooled, guard-paged), the park state machine, the task the
//! scheduler moves around, and stack-overflow reporting.

pub(crate) mod overflow;
pub mod stack;
pub(crate) mod state;
pub(crate) mod task;
