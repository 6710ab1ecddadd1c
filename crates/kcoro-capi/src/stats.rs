//! `kc_chan_get_stats`, `kc_chan_snapshot`, `kc_chan_compute_rate`, `kc_chan_get_zstats`:
//! the channel's exact kcoro counters in the C structs.
//!
//! A snapshot is stamped with the monotonic clock when taken (the `kc_stamp_us` field, see
//! [`KcChanSnapshot`]); a rate divides the deltas of two snapshots by the interval between
//! their stamps, and derives bytes/s from the byte counters. With a zeroed `prev` (its
//! `chan` is NULL) the interval is `curr`'s first-to-last operation time instead.

use std::ffi::{c_int, c_long, c_ulong};
use std::sync::OnceLock;
use std::time::Instant;

use kcoro::chan::{Kind, Snapshot};

use crate::chan::{KcChan, chan};
use crate::error::Error;
use crate::ffi;
use crate::layout::{KcChanRateSample, KcChanSnapshot, KcChanStats, KcChanZstats};

/// µs since the library's epoch, modulo 2^32, never 0.
fn stamp_us() -> u32 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let us = EPOCH.get_or_init(Instant::now).elapsed().as_micros();
    ((us % (1u128 << 32)) as u32).max(1)
}

fn seconds_between(first_ns: u64, last_ns: u64) -> f64 {
    if first_ns == 0 || last_ns <= first_ns { 0.0 } else { (last_ns - first_ns) as f64 / 1e9 }
}

fn per_sec(n: u64, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// [`per_sec`] for a C counter (`unsigned long`, whatever its width).
fn c_per_sec(n: c_ulong, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

pub(crate) fn fill_snapshot(h: *mut KcChan, ch: &crate::chan::Chan, s: &Snapshot) -> KcChanSnapshot {
    let z = s.zero_copy.unwrap_or_default();
    let zref = ch.zc.get().is_some();
    let rv_z = if zref && s.kind == Kind::Rendezvous { s.rv_matches } else { 0 };
    KcChanSnapshot {
        chan: h.cast(),
        kind: ch.kind,
        #[cfg(target_pointer_width = "64")]
        kc_stamp_us: stamp_us(),
        elem_sz: ch.elem_sz,
        capacity: ch.capacity,
        count: s.len,
        capabilities: ch.capabilities(),
        closed: s.closed as c_int,
        zref_mode: zref as c_int,
        ptr_mode: ch.ptr_mode as c_int,
        total_sends: s.sends as c_ulong,
        total_recvs: s.recvs as c_ulong,
        total_bytes_sent: s.bytes_sent as c_ulong,
        total_bytes_recv: s.bytes_recv as c_ulong,
        first_op_time_ns: s.first_op_ns as c_long,
        last_op_time_ns: s.last_op_ns as c_long,
        send_eagain: s.send_failures.would_block as c_ulong,
        send_etime: s.send_failures.timeout as c_ulong,
        send_epipe: s.send_failures.closed as c_ulong,
        recv_eagain: s.recv_failures.would_block as c_ulong,
        recv_etime: s.recv_failures.timeout as c_ulong,
        recv_epipe: s.recv_failures.closed as c_ulong,
        zref_sent: z.sent as c_ulong,
        zref_received: z.received as c_ulong,
        zref_aborted_close: z.aborted_close as c_ulong,
        rv_matches: s.rv_matches as c_ulong,
        rv_cancels: s.rv_cancels as c_ulong,
        rv_zdesc_matches: rv_z as c_ulong,
        duration_sec: seconds_between(s.first_op_ns, s.last_op_ns),
    }
}

/// Totals and lifetime rates (operations over first-to-last operation time).
///
/// # Safety
/// `ch` live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_get_stats(ch: *mut KcChan, out: *mut KcChanStats) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let c = unsafe { chan(ch) }?;
        let s = c.snapshot();
        let d = seconds_between(s.first_op_ns, s.last_op_ns);
        let st = KcChanStats {
            total_sends: s.sends as c_ulong,
            total_recvs: s.recvs as c_ulong,
            total_bytes_sent: s.bytes_sent as c_ulong,
            total_bytes_recv: s.bytes_recv as c_ulong,
            first_op_time_ns: s.first_op_ns as c_long,
            last_op_time_ns: s.last_op_ns as c_long,
            send_rate_ops_sec: per_sec(s.sends, d),
            recv_rate_ops_sec: per_sec(s.recvs, d),
            send_rate_bytes_sec: per_sec(s.bytes_sent, d),
            recv_rate_bytes_sec: per_sec(s.bytes_recv, d),
            duration_sec: d,
        };
        // SAFETY: the C contract above: `out` is NULL or writable.
        unsafe { ffi::write_out(out, st) }
    })
}

/// Copies the channel's shape and counters, stamped now.
///
/// # Safety
/// `ch` live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_snapshot(ch: *mut KcChan, out: *mut KcChanSnapshot) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let c = unsafe { chan(ch) }?;
        let snap = fill_snapshot(ch, c, &c.snapshot());
        // SAFETY: the C contract above: `out` is NULL or writable.
        unsafe { ffi::write_out(out, snap) }
    })
}

fn interval_sec(prev: &KcChanSnapshot, curr: &KcChanSnapshot) -> f64 {
    #[cfg(target_pointer_width = "64")]
    if !prev.chan.is_null() && prev.kc_stamp_us != 0 && curr.kc_stamp_us != 0 {
        return curr.kc_stamp_us.wrapping_sub(prev.kc_stamp_us) as f64 / 1e6;
    }
    if prev.chan.is_null() {
        return curr.duration_sec;
    }
    seconds_between(prev.last_op_time_ns as u64, curr.last_op_time_ns as u64)
}

/// Deltas and per-second rates from `prev` to `curr`.
///
/// # Safety
/// Each pointer NULL or valid for its struct.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_compute_rate(
    prev: *const KcChanSnapshot,
    curr: *const KcChanSnapshot,
    out: *mut KcChanRateSample,
) -> c_int {
    ffi::int(|| {
        if prev.is_null() || curr.is_null() || out.is_null() {
            return Err(Error::Invalid("NULL snapshot or out"));
        }
        // SAFETY: checked non-null; the caller passes valid snapshots (a zeroed one is
        // valid: every field is plain data, `chan` NULL).
        let (p, c) = unsafe { (&*prev, &*curr) };
        if !p.chan.is_null() && p.chan != c.chan {
            return Err(Error::Invalid("snapshots of different channels"));
        }
        let d = |a: c_ulong, b: c_ulong| b.saturating_sub(a);
        let secs = interval_sec(p, c);
        let r = KcChanRateSample {
            delta_sends: d(p.total_sends, c.total_sends),
            delta_recvs: d(p.total_recvs, c.total_recvs),
            delta_bytes_sent: d(p.total_bytes_sent, c.total_bytes_sent),
            delta_bytes_recv: d(p.total_bytes_recv, c.total_bytes_recv),
            delta_send_eagain: d(p.send_eagain, c.send_eagain),
            delta_recv_eagain: d(p.recv_eagain, c.recv_eagain),
            delta_send_epipe: d(p.send_epipe, c.send_epipe),
            delta_recv_epipe: d(p.recv_epipe, c.recv_epipe),
            delta_rv_matches: d(p.rv_matches, c.rv_matches),
            delta_rv_cancels: d(p.rv_cancels, c.rv_cancels),
            delta_rv_zdesc_matches: d(p.rv_zdesc_matches, c.rv_zdesc_matches),
            interval_sec: secs,
            sends_per_sec: c_per_sec(d(p.total_sends, c.total_sends), secs),
            recvs_per_sec: c_per_sec(d(p.total_recvs, c.total_recvs), secs),
            bytes_sent_per_sec: c_per_sec(d(p.total_bytes_sent, c.total_bytes_sent), secs),
            bytes_recv_per_sec: c_per_sec(d(p.total_bytes_recv, c.total_bytes_recv), secs),
        };
        // SAFETY: the C contract above: `out` is NULL or writable.
        unsafe { ffi::write_out(out, r) }
    })
}

/// The zero-copy counters (all zero for a channel without zero copy).
///
/// # Safety
/// `ch` live; `out` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_chan_get_zstats(ch: *mut KcChan, out: *mut KcChanZstats) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let c = unsafe { chan(ch) }?;
        let z = c.snapshot().zero_copy.unwrap_or_default();
        let zs = KcChanZstats {
            zref_sent: z.sent as c_ulong,
            zref_received: z.received as c_ulong,
            zref_fallback_small: z.fallback_small as c_ulong,
            zref_fallback_capacity: z.fallback_capacity as c_ulong,
            zref_canceled: z.canceled as c_ulong,
            zref_aborted_close: z.aborted_close as c_ulong,
        };
        // SAFETY: the C contract above: `out` is NULL or writable.
        unsafe { ffi::write_out(out, zs) }
    })
}
