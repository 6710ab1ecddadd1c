//! Feeds arbitrary bytes to the frame, TLV, stats and descriptor decoders as a peer's
//! stream. `cargo +nightly fuzz run frames` (from crates/kcoro-ipc); the corpus in
//! `corpus/frames` is replayed on stable by `tests/proto.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kcoro_ipc::proto::fuzz_frames(data);
});
