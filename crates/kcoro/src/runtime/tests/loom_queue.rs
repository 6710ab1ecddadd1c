//! `runtime::queue`: the owner pushes (overflowing) and pops while a thief steals.
//! Claim: every task comes out exactly once, by pop, steal or overflow.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::thread;

use crate::runtime::queue::{self, LOCAL_CAP};

#[test]
fn loom_queue_steal_and_overflow() {
    loom::model(|| {
        let (mut local, stealer) = queue::new::<usize>();
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let thief = thread::spawn(move || {
            let (mut mine, _) = queue::new::<usize>();
            let mut n = 0;
            if let Some(v) = stealer.steal_into(&mut mine) {
                s2.fetch_add(1 << v, SeqCst);
                n += 1;
            }
            while let Some(v) = mine.pop() {
                s2.fetch_add(1 << v, SeqCst);
                n += 1;
            }
            n
        });
        let total = LOCAL_CAP + 2;
        let mut overflowed = Vec::new();
        for i in 0..total {
            local.push_back(i, &mut |b| overflowed.extend(b));
        }
        let mut popped = 0;
        if let Some(v) = local.pop() {
            seen.fetch_add(1 << v, SeqCst);
            popped += 1;
        }
        let stolen = thief.join().unwrap();
        while let Some(v) = local.pop() {
            seen.fetch_add(1 << v, SeqCst);
            popped += 1;
        }
        for &v in &overflowed {
            seen.fetch_add(1 << v, SeqCst);
        }
        assert_eq!(popped + stolen + overflowed.len(), total);
        assert_eq!(seen.load(SeqCst), (1 << total) - 1, "each task exactly once");
    });
}
