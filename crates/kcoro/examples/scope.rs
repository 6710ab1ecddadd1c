//! Structured concurrency: children that borrow the parent's data, all joined before the
//! scope returns, and a failure that cancels the siblings.
//!
//! ```sh
//! cargo run --release -p kcoro --example scope
//! ```

use std::time::Duration;

use kcoro::ScopeError;

fn main() {
    kcoro::run(|| {
        let words = ["stackful", "coroutines", "borrow", "their", "parent's", "stack"];
        let mut lengths = vec![0usize; words.len()];
        kcoro::scope(|s| {
            for (word, len) in words.iter().zip(lengths.iter_mut()) {
                s.spawn(move || *len = word.len()); // borrows `words` and `lengths`
            }
        })
        .unwrap(); // every child has finished here
        assert_eq!(lengths, [8, 10, 6, 5, 8, 5]);

        let r = kcoro::scope(|s| {
            s.spawn(|| kcoro::delay(Duration::from_secs(3600))); // cancelled by the failure
            s.spawn(|| Err::<(), _>("disk full"));
        });
        assert!(matches!(&r, Err(ScopeError::Failed(e)) if e.to_string() == "disk full"));
        println!("scope: lengths {lengths:?}; the failing scope returned {:?}", r.unwrap_err().to_string());
    });
}
