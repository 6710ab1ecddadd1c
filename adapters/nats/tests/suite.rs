//! kcoro-nats's integration tests, as one test binary: one build and one link instead of
//! seven. Each module is still its own file under `tests/`, named after what it tests; run
//! one with `cargo test -p kcoro-nats --test suite work_queue::`. Every test starts its own
//! nats-server (`common::server`) and skips with a note when none is installed; the
//! multi-process tests run this binary again as their children (`common::spawn_child`).

mod common;

#[path = "faults.rs"]
mod faults;
#[path = "fuzz_replay.rs"]
mod fuzz_replay;
#[path = "local_server.rs"]
mod local_server;
#[path = "mappings.rs"]
mod mappings;
#[path = "processes.rs"]
mod processes;
#[path = "queue_faults.rs"]
mod queue_faults;
#[path = "work_queue.rs"]
mod work_queue;
