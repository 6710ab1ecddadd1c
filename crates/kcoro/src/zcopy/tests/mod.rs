//! Loom model of the region allocator's free list (`scripts/loom.sh` runs every `loom_`
//! test).

mod loom_freelist;
