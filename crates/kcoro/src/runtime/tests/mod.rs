//! Loom models of the lock-free state machines. Run with
//! `RUSTFLAGS="--cfg loom" cargo test -p kcoro --lib --release loom_`
//! (`scripts/loom.sh` does exactly that).

mod loom_owned;
mod loom_park;
mod loom_queue;
mod loom_reactor;
mod loom_signal;
