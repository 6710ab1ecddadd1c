//! The runtime's integration tests, as one test binary: one link instead of twenty-five (in
//! debug, in release and for aarch64 alike), which is most of what building the tests
//! cost. Each module is still its own file under `tests/`, named after what it tests
//! (`chan_buffered`, `rt_spawn`, ...); run one with
//! `cargo test -p kcoro --test suite chan_buffered::`.
//!
//! The tests share this process and run beside each other. What cannot share it runs in a
//! child process of its own, this binary re-executed with that one test selected
//! (`common::this_test_alone`): `rt_panic`'s and `rt_stack`'s scenarios that crash,
//! overflow, install panic hooks or cap the address space, and the checks that count the
//! process's mappings, memfds and regions (`rt_stack`, `zcopy_process`).

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
#[path = "rt_panic.rs"]
mod rt_panic;
#[path = "rt_park.rs"]
mod rt_park;
#[path = "rt_shutdown.rs"]
mod rt_shutdown;
#[path = "rt_spawn.rs"]
mod rt_spawn;
#[path = "rt_stack.rs"]
mod rt_stack;
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
#[path = "zcopy_process.rs"]
mod zcopy_process;
