//! The corpus of the `two_connections` fuzz target (sequences of frames from a second
//! connection against a server where a first one keeps a secret), replayed on stable:
//! whatever the fuzzer found once stays a test. See `fuzz/harness/two_connections.rs`.

#[path = "../fuzz/harness/two_connections.rs"]
mod harness;

#[test]
fn two_connections_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/two_connections");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is checked in") {
        harness::two_connections(&std::fs::read(entry.unwrap().path()).unwrap());
        n += 1;
    }
    assert!(n >= 6, "corpus has only {n} inputs");
}
