//! The `#[repr(C)]` mirrors of the caller-allocated structs in `include/kcoro.h`,
//! `kcoro_sched.h` and `kcoro_bench.h`.
//!
//! Field order and types are ABI: C programs allocate these. The sizes and offsets below
//! are asserted at compile time here and, with the same numbers, by `_Static_assert` in
//! the headers (64-bit targets), so the two sides cannot drift apart silently.

use std::ffi::{c_double, c_int, c_long, c_ulong, c_ulonglong, c_void};

use crate::cancel::KcCancel;
use crate::chan::KcChan;

/// `struct kc_chan_zstats`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct KcChanZstats {
    pub zref_sent: c_ulong,
    pub zref_received: c_ulong,
    pub zref_fallback_small: c_ulong,
    pub zref_fallback_capacity: c_ulong,
    pub zref_canceled: c_ulong,
    pub zref_aborted_close: c_ulong,
}

/// `struct kc_chan_stats`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub struct KcChanStats {
    pub total_sends: c_ulong,
    pub total_recvs: c_ulong,
    pub total_bytes_sent: c_ulong,
    pub total_bytes_recv: c_ulong,
    pub first_op_time_ns: c_long,
    pub last_op_time_ns: c_long,
    pub send_rate_ops_sec: c_double,
    pub recv_rate_ops_sec: c_double,
    pub send_rate_bytes_sec: c_double,
    pub recv_rate_bytes_sec: c_double,
    pub duration_sec: c_double,
}

/// `struct kc_chan_snapshot`. On 64-bit targets the padding after `kind` is the named
/// field `kc_stamp_us`: when the snapshot was taken, in µs of the monotonic clock since
/// the library's epoch, modulo 2^32 (never 0 once taken), so `kc_chan_compute_rate` can
/// use the snapshots' own interval. The layout is the old one byte for byte.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub struct KcChanSnapshot {
    pub chan: *mut c_void,
    pub kind: c_int,
    #[cfg(target_pointer_width = "64")]
    pub kc_stamp_us: u32,
    pub elem_sz: usize,
    pub capacity: usize,
    pub count: usize,
    pub capabilities: u32,
    pub closed: c_int,
    pub zref_mode: c_int,
    pub ptr_mode: c_int,
    pub total_sends: c_ulong,
    pub total_recvs: c_ulong,
    pub total_bytes_sent: c_ulong,
    pub total_bytes_recv: c_ulong,
    pub first_op_time_ns: c_long,
    pub last_op_time_ns: c_long,
    pub send_eagain: c_ulong,
    pub send_etime: c_ulong,
    pub send_epipe: c_ulong,
    pub recv_eagain: c_ulong,
    pub recv_etime: c_ulong,
    pub recv_epipe: c_ulong,
    pub zref_sent: c_ulong,
    pub zref_received: c_ulong,
    pub zref_aborted_close: c_ulong,
    pub rv_matches: c_ulong,
    pub rv_cancels: c_ulong,
    pub rv_zdesc_matches: c_ulong,
    pub duration_sec: c_double,
}

/// `struct kc_chan_rate_sample`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq)]
#[allow(missing_docs)]
pub struct KcChanRateSample {
    pub delta_sends: c_ulong,
    pub delta_recvs: c_ulong,
    pub delta_bytes_sent: c_ulong,
    pub delta_bytes_recv: c_ulong,
    pub delta_send_eagain: c_ulong,
    pub delta_recv_eagain: c_ulong,
    pub delta_send_epipe: c_ulong,
    pub delta_recv_epipe: c_ulong,
    pub delta_rv_matches: c_ulong,
    pub delta_rv_cancels: c_ulong,
    pub delta_rv_zdesc_matches: c_ulong,
    pub interval_sec: c_double,
    pub sends_per_sec: c_double,
    pub recvs_per_sec: c_double,
    pub bytes_sent_per_sec: c_double,
    pub bytes_recv_per_sec: c_double,
}

/// `kc_sched_opts_t`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
pub struct KcSchedOpts {
    /// Worker threads; ≤ 0: one per core.
    pub workers: c_int,
    /// Accepted for compatibility; kcoro sizes its queues itself.
    pub queue_capacity: c_int,
    /// Accepted for compatibility, as above.
    pub inject_q_cap: c_int,
}

/// `kc_sched_stats_t`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct KcSchedStats {
    pub tasks_submitted: c_ulong,
    pub tasks_completed: c_ulong,
    pub steals_probes: c_ulong,
    pub steals_succeeded: c_ulong,
    pub steals_failures: c_ulong,
    pub fastpath_hits: c_ulong,
    pub fastpath_misses: c_ulong,
    pub inject_pulls: c_ulong,
    pub donations: c_ulong,
}

/// `kc_actor_ctx_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct KcActorCtx {
    pub chan: *mut KcChan,
    pub msg_size: usize,
    pub timeout_ms: c_int,
    pub process: Option<unsafe extern "C" fn(*const c_void, *mut c_void) -> c_int>,
    pub user: *mut c_void,
}

/// `kc_actor_ctx_ex_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct KcActorCtxEx {
    pub base: KcActorCtx,
    pub cancel: *const KcCancel,
}

/// `kc_bench_params_t`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
#[allow(missing_docs)]
pub struct KcBenchParams {
    pub kind: c_int,
    pub capacity: usize,
    pub producers: c_int,
    pub consumers: c_int,
    pub packets_per_cycle: c_int,
    pub spin_iters: c_int,
    pub packet_size: usize,
    pub pointer_mode: c_int,
}

/// `kc_timer_handle_t`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KcTimerHandle {
    /// 0: no timer.
    pub id: c_ulonglong,
}

/// `(size, [(offset, expected)...])` checks, the same numbers as the headers' asserts.
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<crate::elem::PtrMsg>() == 16);
    assert!(size_of::<crate::cancel::KcCancelCtx>() == 16);
    assert!(size_of::<KcChanZstats>() == 48);
    assert!(offset_of!(KcChanZstats, zref_aborted_close) == 40);
    assert!(size_of::<KcChanStats>() == 88);
    assert!(offset_of!(KcChanStats, first_op_time_ns) == 32);
    assert!(offset_of!(KcChanStats, send_rate_ops_sec) == 48);
    assert!(offset_of!(KcChanStats, duration_sec) == 80);
    assert!(size_of::<KcChanSnapshot>() == 208);
    assert!(offset_of!(KcChanSnapshot, kind) == 8);
    assert!(offset_of!(KcChanSnapshot, kc_stamp_us) == 12);
    assert!(offset_of!(KcChanSnapshot, elem_sz) == 16);
    assert!(offset_of!(KcChanSnapshot, count) == 32);
    assert!(offset_of!(KcChanSnapshot, capabilities) == 40);
    assert!(offset_of!(KcChanSnapshot, ptr_mode) == 52);
    assert!(offset_of!(KcChanSnapshot, total_sends) == 56);
    assert!(offset_of!(KcChanSnapshot, first_op_time_ns) == 88);
    assert!(offset_of!(KcChanSnapshot, send_eagain) == 104);
    assert!(offset_of!(KcChanSnapshot, recv_epipe) == 144);
    assert!(offset_of!(KcChanSnapshot, zref_sent) == 152);
    assert!(offset_of!(KcChanSnapshot, rv_matches) == 176);
    assert!(offset_of!(KcChanSnapshot, rv_zdesc_matches) == 192);
    assert!(offset_of!(KcChanSnapshot, duration_sec) == 200);
    assert!(size_of::<KcChanRateSample>() == 128);
    assert!(offset_of!(KcChanRateSample, delta_rv_zdesc_matches) == 80);
    assert!(offset_of!(KcChanRateSample, interval_sec) == 88);
    assert!(offset_of!(KcChanRateSample, bytes_recv_per_sec) == 120);
    assert!(size_of::<KcSchedOpts>() == 12);
    assert!(size_of::<KcSchedStats>() == 72);
    assert!(offset_of!(KcSchedStats, donations) == 64);
    assert!(size_of::<KcActorCtx>() == 40);
    assert!(offset_of!(KcActorCtx, timeout_ms) == 16);
    assert!(offset_of!(KcActorCtx, process) == 24);
    assert!(offset_of!(KcActorCtx, user) == 32);
    assert!(size_of::<KcActorCtxEx>() == 48);
    assert!(offset_of!(KcActorCtxEx, cancel) == 40);
    assert!(size_of::<KcBenchParams>() == 48);
    assert!(offset_of!(KcBenchParams, producers) == 16);
    assert!(offset_of!(KcBenchParams, spin_iters) == 28);
    assert!(offset_of!(KcBenchParams, packet_size) == 32);
    assert!(offset_of!(KcBenchParams, pointer_mode) == 40);
    assert!(size_of::<KcTimerHandle>() == 8);
    assert!(size_of::<kcoro::zcopy::ZDesc>() == 40);
};
