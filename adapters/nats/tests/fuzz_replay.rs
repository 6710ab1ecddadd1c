//! The corpus of the `values` fuzz target (payloads a foreign publisher could put on a
//! bridged subject), replayed on stable: whatever the fuzzer found once stays a test. The
//! seeds are valid values of each element type the target decodes; a corpus that lost
//! them fails here.

#[test]
fn values_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/values");
    let mut corpus = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the corpus is checked in") {
        let input = std::fs::read(entry.unwrap().path()).unwrap();
        let _ = kcoro_nats::fuzzing::decode_any(&input);
        corpus.push(input);
    }
    for seed in kcoro_nats::fuzzing::seeds() {
        assert!(kcoro_nats::fuzzing::decode_any(&seed));
        assert!(corpus.contains(&seed), "the corpus lost a seed: {seed:?}");
    }
}

/// The decoder the target drives tells values from foreign bytes: each seed decodes, and
/// the same seed with a byte appended or its type tag changed decodes as none of the types.
#[test]
fn the_target_tells_values_from_foreign_bytes() {
    let seeds = kcoro_nats::fuzzing::seeds();
    assert_eq!(seeds.len(), 6);
    for seed in &seeds {
        assert!(kcoro_nats::fuzzing::decode_any(seed), "{seed:?}");
        let mut longer = seed.clone();
        longer.push(0);
        assert!(!kcoro_nats::fuzzing::decode_any(&longer), "{longer:?}");
        let mut retagged = seed.clone();
        retagged[4] ^= 0xff;
        assert!(!kcoro_nats::fuzzing::decode_any(&retagged), "{retagged:?}");
    }
}
