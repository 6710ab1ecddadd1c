//! The part of the runtime's integration tests that `scripts/cross.sh` runs on aarch64 under
//! qemu-user: stacks and overflow (`rt_stack`), panics unwinding across coroutine stacks
//! (`rt_panic`), spawning and parking on several workers (`rt_spawn`, `rt_park`). The same
//! files as in `suite`, in a binary of their own, so that the emulated target compiles four
//! modules instead of twenty-five. `cargo test` does not build it (`test = false`): on the
//! host these modules run in `suite`.

// The shared helpers also serve `suite`'s other modules, which are not here.
#![allow(dead_code)]

mod common;

#[path = "rt_panic.rs"]
mod rt_panic;
#[path = "rt_park.rs"]
mod rt_park;
#[path = "rt_spawn.rs"]
mod rt_spawn;
#[path = "rt_stack.rs"]
mod rt_stack;
