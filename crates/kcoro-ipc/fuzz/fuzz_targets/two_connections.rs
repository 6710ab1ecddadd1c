//! Sequences of frames from a second connection, built from the fuzzer's bytes, against a
//! server where a first connection keeps a secret: the second never sees a byte of it and
//! descriptors never pile up (see `harness/two_connections.rs`). `cargo +nightly fuzz run
//! two_connections` (from crates/kcoro-ipc); the corpus in `corpus/two_connections` is
//! replayed on stable by `tests/fuzz_replay.rs`.
#![no_main]

#[path = "../harness/two_connections.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::two_connections(data);
});
