//! Small byte buffers carved from per-thread blocks (cargo feature `bytes`).
//!
//! A small `Bytes` made on one thread and dropped on another (a frame a coroutine encodes
//! and a client's I/O thread writes, an element a connection's reader decodes and a
//! consumer drops) costs an allocation here and a free there, which the allocator's
//! per-thread caches do not serve: glibc returns the chunk to the allocating thread's
//! arena under its lock, and both threads' profiles show it. [`small_copy`] and
//! [`small_filled`] instead carve it from an 8 KiB block this thread keeps: one allocation
//! per block, and a reference count's decrement per drop. A block is reused once every
//! buffer cut from it has been dropped, and freed with the last one otherwise; a buffer
//! kept alive keeps its block (at most 8 KiB) alive.
//!
//! ```
//! let frame = kcoro::buf::small_filled(6, |out| {
//!     out.copy_from_slice(b"kcoro!");
//!     Ok::<(), ()>(())
//! });
//! assert_eq!(frame.as_deref(), Ok(&b"kcoro!"[..]));
//! assert_eq!(kcoro::buf::small_copy(b"abc"), b"abc"[..]);
//! ```

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// Largest buffer cut from a block: above it, an allocation of its own costs little beside
/// filling it, and a kept buffer must not hold much memory it does not use.
pub const SMALL_MAX: usize = 512;

/// Size of the blocks buffers are cut from.
const BLOCK: usize = 8 << 10;

thread_local! {
    static BLOCKS: RefCell<BytesMut> = RefCell::new(BytesMut::with_capacity(BLOCK));
}

/// A copy of `bytes`: cut from this thread's block if it is at most [`SMALL_MAX`] long,
/// else an allocation of its own.
pub fn small_copy(bytes: &[u8]) -> Bytes {
    let Ok(copy) = small_filled(bytes.len(), |out| {
        out.copy_from_slice(bytes);
        Ok::<(), std::convert::Infallible>(())
    });
    copy
}

/// A buffer of `len` bytes written by `fill` (handed them zeroed): cut from this thread's
/// block if `len` is at most [`SMALL_MAX`], else an allocation of its own. `fill`'s error
/// is returned as is, and the bytes it was given go back to the block.
pub fn small_filled<E>(len: usize, fill: impl FnOnce(&mut [u8]) -> Result<(), E>) -> Result<Bytes, E> {
    let mut fill = Some(fill);
    if len <= SMALL_MAX {
        let pooled = BLOCKS.try_with(|block| {
            // A `fill` that cuts a buffer of its own finds the block borrowed: that one
            // is a plain allocation.
            let mut block = block.try_borrow_mut().ok()?;
            let fill = fill.take()?;
            // Room in this block, or the whole block back if every buffer cut from it has
            // gone (`reserve` reclaims it then), or a new block of the same size.
            block.reserve(len);
            block.resize(len, 0);
            Some(match fill(&mut block) {
                Ok(()) => Ok(block.split().freeze()),
                Err(e) => {
                    block.clear();
                    Err(e)
                }
            })
        });
        if let Ok(Some(done)) = pooled {
            return done;
        }
    }
    // Large, or this thread's block is out of reach (its locals are being torn down, or
    // borrowed by the `fill` of an outer call): a plain allocation is never wrong.
    let mut own = vec![0; len];
    match fill.take() {
        Some(fill) => fill(&mut own)?,
        None => unreachable!("`fill` is taken only by a pooled fill, which returned"),
    }
    Ok(Bytes::from(own))
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Runs `f` on a thread of its own: a fresh block.
    fn on_fresh_thread(f: impl FnOnce() + Send + 'static) {
        std::thread::spawn(f).join().unwrap();
    }

    #[test]
    fn small_copies_are_neighbours_in_one_block_and_hold_their_bytes() {
        on_fresh_thread(|| {
            let value = |i: usize| (0..1 + i % SMALL_MAX).map(|j| (i * 13 + j) as u8).collect::<Vec<u8>>();
            let mut kept = Vec::new();
            for i in 0..20_000 {
                let copy = small_copy(&value(i));
                assert_eq!(copy, value(i));
                if i % 97 == 0 {
                    kept.push((i, copy));
                }
            }
            for (i, copy) in &kept {
                assert_eq!(*copy, value(*i), "kept copy {i}, after thousands more");
            }
            let (a, b) = (small_copy(b"first"), small_copy(b"second"));
            assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr(), "one block, one after the other");
        });
    }

    #[test]
    fn a_block_whose_buffers_have_all_gone_is_taken_back() {
        on_fresh_thread(|| {
            let base = small_copy(&[1; 100]).as_ptr(); // dropped at once
            let full = [2u8; SMALL_MAX];
            let back = (0..=BLOCK / SMALL_MAX + 1).any(|_| small_copy(&full).as_ptr() == base);
            assert!(back, "the block's start was not used again");
        });
    }

    #[test]
    fn a_kept_buffer_keeps_its_bytes_when_the_block_fills_up() {
        on_fresh_thread(|| {
            let keep = small_copy(&[9; 100]);
            let span = keep.as_ptr() as usize..keep.as_ptr() as usize + keep.len();
            for _ in 0..4 * BLOCK / SMALL_MAX {
                let other = small_copy(&[3u8; SMALL_MAX]);
                let at = other.as_ptr() as usize;
                assert!(at + other.len() <= span.start || at >= span.end, "written over a kept copy");
            }
            assert_eq!(keep, [9u8; 100][..]);
        });
    }

    #[test]
    fn a_failed_fill_gives_its_bytes_back_and_large_buffers_are_their_own() {
        on_fresh_thread(|| {
            let before = small_copy(b"a");
            let failed = small_filled(64, |out| {
                out[0] = 7;
                Err("no")
            });
            assert_eq!(failed, Err("no"));
            let after = small_copy(b"b");
            assert_eq!(
                before.as_ptr().wrapping_add(1),
                after.as_ptr(),
                "the failed fill's bytes were reused"
            );
            let large = small_filled(SMALL_MAX + 1, |out| {
                out.fill(5);
                Ok::<(), ()>(())
            });
            let large = large.unwrap();
            assert_eq!(large, vec![5u8; SMALL_MAX + 1]);
            let next = small_copy(b"c");
            assert_eq!(
                after.as_ptr().wrapping_add(1),
                next.as_ptr(),
                "a large buffer is not cut from the block"
            );
        });
    }

    #[test]
    fn buffers_dropped_on_other_threads_are_whole() {
        let (tx, rx) = std::sync::mpsc::channel::<Bytes>();
        let dropper = std::thread::spawn(move || {
            rx.iter().map(|b| b.iter().map(|&x| u64::from(x)).sum::<u64>()).sum::<u64>()
        });
        let mut want = 0;
        for i in 0..10_000usize {
            let b = small_copy(&vec![(i % 251) as u8; 1 + i % 300]);
            want += ((i % 251) * (1 + i % 300)) as u64;
            tx.send(b).unwrap();
        }
        drop(tx);
        assert_eq!(dropper.join().unwrap(), want);
    }
}
