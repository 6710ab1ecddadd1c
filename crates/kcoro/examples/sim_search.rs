//! Deterministic simulation finds a planted bug: a check-then-act race on a shared stock
//! count. Seeds choose the interleaving; the search reports the first seed that breaks the
//! invariant, and that seed replays the same failure every time.
//!
//! ```sh
//! cargo run --release -p kcoro --example sim_search
//! ```

use std::sync::{Arc, Mutex};

/// Two buyers each check that an item is in stock, then take it. The bug: the check and
/// the take are separated by a suspension point (here a yield; in real code, any channel
/// operation or I/O), so both can see the last item.
fn shop(_seed: u64) {
    let stock = Arc::new(Mutex::new(1u32));
    let buyers: Vec<_> = (0..2)
        .map(|_| {
            let stock = Arc::clone(&stock);
            kcoro::spawn(move || {
                let available = *stock.lock().unwrap() > 0;
                kcoro::yield_now(); // the planted bug: the check is stale after this
                if available {
                    let mut s = stock.lock().unwrap();
                    assert!(*s > 0, "sold an item that was not there");
                    *s -= 1;
                }
            })
        })
        .collect();
    for b in buyers {
        b.join().unwrap_or_else(|e| std::panic::resume_unwind(Box::new(e.to_string())));
    }
}

fn main() {
    // The panics are expected: keep the output to the search's own report.
    std::panic::set_hook(Box::new(|_| {}));
    let failure = kcoro::sim::explore(0..1000, shop).expect_err("some interleaving oversells");
    println!("sim_search: seed {} breaks the shop: {}", failure.seed, failure.message);
    let replay = kcoro::sim::explore([failure.seed], shop).expect_err("a failing seed replays");
    assert_eq!(replay, failure);
    println!("sim_search: seed {} fails the same way again on replay", failure.seed);
}
