//! The runtime's integration tests that can share a process, as one test binary: one link
//! instead of twenty-odd (in debug, in release and for aarch64 alike), which is most of
//! what building the tests cost. Each module is still its own file under `tests/`, named
//! after what it tests (`chan_buffered`, `rt_spawn`, ...); run one with
//! `cargo test -p kcoro --test suite chan_buffered::`.
//!
//! Three files stay binaries of their own (see `Cargo.toml`): `rt_panic` and `rt_stack`
//! re-run their own executable for children that crash, overflow or exhaust memory, and
//! `zcopy_process` counts the process's memfd mappings and descriptors, which other tests
//! running beside it would change.

mod common;

#[path = "actor.rs"]
mod actor;
#[path = "chan_buffered.rs"]
mod chan_buffered;
#[path = "chan_conflated.rs"]
mod chan_conflated;
#[path = "chan_rendezvous.rs"]
mod chan_rendezvous;
#[path = "chan_select.rs"]
mod chan_select;
#[path = "chan_stress.rs"]
mod chan_stress;
#[path = "chan_unlimited.rs"]
mod chan_unlimited;
#[path = "chan_wait.rs"]
mod chan_wait;
#[path = "golang.rs"]
mod golang;
#[path = "net_tcp.rs"]
mod net_tcp;
#[path = "net_unix.rs"]
mod net_unix;
#[path = "rt_external.rs"]
mod rt_external;
#[path = "rt_park.rs"]
mod rt_park;
#[path = "rt_shutdown.rs"]
mod rt_shutdown;
#[path = "rt_spawn.rs"]
mod rt_spawn;
#[path = "rt_timer.rs"]
mod rt_timer;
#[path = "scope.rs"]
mod scope;
#[path = "sim.rs"]
mod sim;
#[path = "sync_cancel.rs"]
mod sync_cancel;
#[path = "sync_primitives.rs"]
mod sync_primitives;
#[path = "zcopy.rs"]
mod zcopy;
#[path = "zcopy_c_backend.rs"]
mod zcopy_c_backend;
