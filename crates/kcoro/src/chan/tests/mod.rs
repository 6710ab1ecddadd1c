mod loom_chan;
mod loom_ring;

/// Counts the outcomes a model reaches across its runs, so a model asserts that loom
/// explored each branch it is meant to check. Loom's search starts from the schedule where
/// the main thread runs first, and it missed the races where a spawned thread's
/// load-then-exchange comes before a load on the main thread (three ring models
/// reached only one of their outcomes until their parts were swapped): so the models put
/// the side that only looks on a spawned thread, and the side that moves on the main one.
struct Reached(std::sync::Mutex<std::collections::BTreeSet<&'static str>>);

impl Reached {
    const fn new() -> Self {
        Reached(std::sync::Mutex::new(std::collections::BTreeSet::new()))
    }

    fn note(&self, outcome: &'static str) {
        self.0.lock().unwrap().insert(outcome);
    }

    fn assert_all(&self, expected: &[&'static str]) {
        let got = self.0.lock().unwrap();
        for e in expected {
            assert!(got.contains(e), "loom never reached {e:?} (reached {got:?})");
        }
    }
}
