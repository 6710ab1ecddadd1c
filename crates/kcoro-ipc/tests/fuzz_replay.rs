//! The corpora of the `two_connections` fuzz target (sequences of frames from a second
//! connection against a server where a first one keeps a secret) and of the `rings` target
//! (a lying peer against a shared-memory ring), replayed on stable: whatever the fuzzer
//! found once stays a test. See `fuzz/harness/two_connections.rs` and `ring::fuzz_rings`.

#[path = "../fuzz/harness/two_connections.rs"]
mod harness;

/// Runs `f` on every input of `fuzz/corpus/TARGET`, which must hold at least `min`.
fn replay(target: &str, min: usize, f: impl Fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is checked in") {
        f(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= min, "the {target} corpus has only {n} inputs");
}

#[test]
fn two_connections_corpus_replays() {
    replay("two_connections", 6, harness::two_connections);
}

#[test]
fn rings_corpus_replays() {
    replay("rings", 4, kcoro_ipc::fuzz_rings);
}
