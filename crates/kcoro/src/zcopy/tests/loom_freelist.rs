//! `alloc::FreeList`: two threads pop a block each and push it back while a third pops.
//! Claims: no block is held by two threads at once (the tagged head defeats ABA), and when
//! everyone is done every block is on the list exactly once.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use loom::thread;

use crate::zcopy::alloc::FreeList;

const BLOCKS: u32 = 3;

#[test]
fn loom_freelist_hands_each_block_to_one_owner() {
    loom::model(|| {
        // Links hold `id + 1` of the next block: 0 -> 1 -> 2 -> end.
        let links: Arc<Vec<AtomicU32>> = Arc::new((0..BLOCKS).map(|i| AtomicU32::new(i + 2)).collect());
        let held: Arc<Vec<AtomicBool>> = Arc::new((0..BLOCKS).map(|_| AtomicBool::new(false)).collect());
        let list = Arc::new(FreeList::default());
        list.push_chain(0, BLOCKS - 1, |id| &links[id as usize]);

        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (links, held, list) = (links.clone(), held.clone(), list.clone());
                thread::spawn(move || {
                    if let Some(id) = list.pop(|id| &links[id as usize]) {
                        assert!(!held[id as usize].swap(true, SeqCst), "block {id} popped twice");
                        held[id as usize].store(false, SeqCst);
                        list.push_chain(id, id, |id| &links[id as usize]);
                    }
                })
            })
            .collect();
        let mine = list.pop(|id| &links[id as usize]);
        if let Some(id) = mine {
            assert!(!held[id as usize].swap(true, SeqCst), "block {id} popped twice");
            held[id as usize].store(false, SeqCst);
            list.push_chain(id, id, |id| &links[id as usize]);
        }
        for w in workers {
            w.join().unwrap();
        }
        let mut seen = Vec::new();
        while let Some(id) = list.pop(|id| &links[id as usize]) {
            seen.push(id);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..BLOCKS).collect::<Vec<_>>());
    });
}

/// `FreeList::pop_chain` takes two blocks in one CAS while another thread pops one and
/// pushes it back: no block is held twice, and every block comes back exactly once.
#[test]
fn loom_freelist_chain_pop_races_pop_and_push() {
    loom::model(|| {
        let links: Arc<Vec<AtomicU32>> = Arc::new((0..BLOCKS).map(|i| AtomicU32::new(i + 2)).collect());
        let held: Arc<Vec<AtomicBool>> = Arc::new((0..BLOCKS).map(|_| AtomicBool::new(false)).collect());
        let list = Arc::new(FreeList::default());
        list.push_chain(0, BLOCKS - 1, |id| &links[id as usize]);
        let hold = |held: &[AtomicBool], id: u32| {
            assert!(!held[id as usize].swap(true, SeqCst), "block {id} held twice");
        };

        let other = {
            let (links, held, list) = (links.clone(), held.clone(), list.clone());
            thread::spawn(move || {
                if let Some(id) = list.pop(|id| &links[id as usize]) {
                    hold(&held, id);
                    held[id as usize].store(false, SeqCst);
                    list.push_chain(id, id, |id| &links[id as usize]);
                }
            })
        };
        let chain = list.pop_chain(2, |id| links.get(id as usize));
        if let Some((first, last, count)) = chain {
            let mut ids = vec![first];
            while ids.len() < count as usize {
                let next = links[*ids.last().unwrap() as usize].load(SeqCst);
                ids.push(next - 1);
            }
            assert_eq!(*ids.last().unwrap(), last);
            for &id in &ids {
                hold(&held, id);
            }
            for &id in &ids {
                held[id as usize].store(false, SeqCst);
            }
            list.push_chain(first, last, |id| &links[id as usize]);
        }
        other.join().unwrap();
        let mut seen = Vec::new();
        while let Some(id) = list.pop(|id| &links[id as usize]) {
            seen.push(id);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..BLOCKS).collect::<Vec<_>>());
    });
}
