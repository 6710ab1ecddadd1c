//! libkcoro: the kcoro C API (`include/kcoro.h` and its siblings) on the Rust runtime.
//!
//! Every `extern "C"` entry point goes through `ffi`, which catches unwinds and turns
//! [`Error`] into the documented negative code, so no input a C caller passes can crash
//! the process through a Rust panic. Handles are boxes whose first word is a magic
//! number (module `handle`): null and foreign pointers are refused with `-EINVAL`, and so are
//! destroyed handles while their memory still carries the dead mark.
//!
//! # Modules
//! - [`chan`]: channels of fixed-size byte elements (copy mode) and of `(ptr, len)` pairs
//!   (pointer mode); timeouts, cancellation, close; [`stats`]: counters, snapshot, rate.
//! - [`select`]: `kc_select_*` over kcoro's `Select` (parks; biased by default).
//! - [`cancel`]: `kc_cancel_*` over `CancelToken`.
//! - [`sched`]: `kc_sched_*`, `kc_spawn*`, `kc_yield`, `kc_sleep_ms` over a kcoro `Runtime`;
//!   its `spawn_body` is the one path every coroutine of the C API is spawned through.
//! - [`scope`]: `kc_scope_*`, owned scopes: a token and a wait group of children on the
//!   default scheduler; destroy cancels, then joins.
//! - [`actor`]: `kc_actor_*`, a coroutine parked on a mailbox channel; handles are ids
//!   in a registry of running actors, so no call on an old handle touches freed memory.
//! - [`region`]: `kc_region_*` over kcoro's regions, and the count of descriptors into
//!   each that are in flight in this library's channels.
//! - [`bench`](mod@bench): `kc_bench_chan_*`, producer and consumer coroutines loading a channel.
//! - [`coro`]: `kcoro_*`: manually resumed coroutines (on the park hook of `kcoro::park`),
//!   handles of scheduler coroutines, thread mains, park/unpark tokens.
//! - [`layout`]: the `#[repr(C)]` mirrors of the headers' structs, with their sizes and
//!   offsets asserted at compile time (the headers assert the same numbers).

pub mod actor;
pub mod bench;
pub mod cancel;
pub mod chan;
pub mod coro;
mod elem;
mod error;
mod ffi;
mod handle;
pub use handle::Tagged;
pub mod layout;
pub mod region;
pub mod sched;
pub mod scope;
pub mod select;
pub mod stats;
pub mod zcopy;

pub use error::{Error, code};
