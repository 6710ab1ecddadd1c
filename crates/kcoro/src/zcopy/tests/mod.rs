//! Loom models of the region allocator's free list and of the holders word
//! (`scripts/loom.sh` runs every `loom_` test), and the thread caches' tests.

#[cfg(not(loom))]
mod cache;
#[cfg(loom)]
mod loom_freelist;
#[cfg(loom)]
mod loom_holders;
