//! `runtime::owned`: the registry's lock-free removal against shutdown's inspection and
//! close. Claims: every registered reference is released exactly once — by its remover or
//! by whoever took it — and an item is never freed while an inspector looks at it.

use std::sync::Arc;

use loom::sync::atomic::{AtomicBool, Ordering::SeqCst};
use loom::thread;

use crate::runtime::owned::Registry;

/// An item that reports its drop on a flag outside itself, so a check never reads freed
/// memory.
struct Item {
    dropped: Option<Arc<AtomicBool>>,
}

impl Item {
    fn new() -> Arc<Item> {
        Arc::new(Item { dropped: None })
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        if let Some(flag) = &self.dropped {
            flag.store(true, SeqCst);
        }
    }
}

#[test]
fn loom_owned_remove_races_inspection() {
    static REACHED: crate::loom::Reached = crate::loom::Reached::new();
    loom::model(|| {
        let reg = Arc::new(Registry::<Item>::new(2));
        let a_dropped = Arc::new(AtomicBool::new(false));
        let a = Arc::new(Item { dropped: Some(Arc::clone(&a_dropped)) });
        let a_addr = Arc::as_ptr(&a).addr();
        let b = Item::new();
        let key_a = reg.insert(0, &a).expect("open");
        let key_b = reg.insert(0, &b).expect("open");
        // The remover: `a` completes on another worker, and its last reference goes.
        let r = Arc::clone(&reg);
        let remover = thread::spawn(move || {
            let removed = r.remove(key_a, &a);
            drop(a);
            removed
        });
        // Shutdown's inspection takes `b` and looks at `a` (if still registered).
        let saw_a = std::cell::Cell::new(false);
        let taken = reg.take_where(|t| {
            if Arc::as_ptr(t).addr() == a_addr {
                assert!(!a_dropped.load(SeqCst), "inspected an item that was freed");
                saw_a.set(true);
            }
            Arc::ptr_eq(t, &b)
        });
        REACHED.note(if saw_a.get() { "inspected a" } else { "a gone before" });
        assert!(remover.join().unwrap(), "nobody else takes `a`");
        assert!(a_dropped.load(SeqCst), "the registry's reference to `a` was released");
        assert_eq!(taken.len(), 1);
        assert!(Arc::ptr_eq(&taken[0], &b));
        assert!(!reg.remove(key_b, &b), "`b` was taken by the inspector");
        assert_eq!(reg.live(), 0);
        drop(taken);
        assert_eq!(Arc::strong_count(&b), 1);
    });
    REACHED.assert_all(&["inspected a", "a gone before"]);
}

#[test]
fn loom_owned_insert_races_close() {
    static REACHED: crate::loom::Reached = crate::loom::Reached::new();
    loom::model(|| {
        let reg = Arc::new(Registry::<Item>::new(2));
        let a = Item::new();
        let r = Arc::clone(&reg);
        let a2 = Arc::clone(&a);
        // An outside spawn registering while shutdown closes.
        let inserter = thread::spawn(move || r.insert(1, &a2));
        let taken = reg.close_and_take();
        let key = inserter.join().unwrap();
        // Either the insert withdrew (and said so) or the close found it: never both,
        // never neither.
        match key {
            None => assert!(taken.is_empty()),
            Some(_) => assert_eq!(taken.len(), 1, "a registered task escaped the close"),
        }
        REACHED.note(if key.is_some() { "the close found it" } else { "the insert withdrew" });
        assert_eq!(reg.live(), 0);
        drop(taken);
        assert_eq!(Arc::strong_count(&a), 1);
    });
    REACHED.assert_all(&["the close found it", "the insert withdrew"]);
}

#[test]
fn loom_owned_two_inspectors_each_take_their_own() {
    loom::model(|| {
        let reg = Arc::new(Registry::<Item>::new(1));
        let a = Item::new();
        let b = Item::new();
        reg.insert(0, &a).expect("open");
        reg.insert(0, &b).expect("open");
        // Two workers unwinding their own coroutines at once (`unwind_own`).
        let r = Arc::clone(&reg);
        let b2 = Arc::clone(&b);
        let other = thread::spawn(move || r.take_where(|t| Arc::ptr_eq(t, &b2)).len());
        let mine = reg.take_where(|t| Arc::ptr_eq(t, &a)).len();
        assert_eq!((mine, other.join().unwrap()), (1, 1), "neither skipped its own item");
    });
}
