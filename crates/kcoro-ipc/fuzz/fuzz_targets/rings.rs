//! A lying peer against both ends of a shared-memory ring (heads and tails moved anywhere,
//! bytes scribbled on) while our side reads and writes: no panic, no access out of bounds,
//! no wait (see `ring::fuzz_rings`). `cargo +nightly fuzz run rings` (from
//! crates/kcoro-ipc); the corpus in `corpus/rings` is replayed on stable by
//! `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kcoro_ipc::fuzz_rings(data);
});
