//! A plugin built with the published `nylon-ring` 0.2.2 crate and its `define_plugin!`
//! macro (ABI 2), exactly as a nylon-ring user writes one; `crates/kcoro-host/tests/nylon.rs`
//! loads it in kcoro-host. The entries shared with the 0.1 plugin are in
//! `../nylon-common.rs`; ABI 2 adds:
//!
//!   owned        Ok + the payload through `send_result_owned` (a plugin `Vec`, zero-copy;
//!                its releases are counted by `test_owned_releases`)
//!   static       Ok + "static bytes" through `send_result_owned` with no release
//!   lease        Ok + the payload reversed, written into a buffer leased by the host
//!   lease_async  the same from another thread
//!   lease_late   the lease taken inside `handle`, written and committed from another
//!                thread (perhaps after `handle` returned)
//!   lease_fumble `lease`, after two commits the host must refuse (another token, a
//!                length past the buffer), each of zero bytes if it were taken

include!("../../nylon-common.rs");

use nylon_ring::{NrBufferLease, NrOwnedBytes};

static OWNED_RELEASES: AtomicU64 = AtomicU64::new(0);

impl Host {
    fn v2(self) -> &'static NrHostVTable {
        // SAFETY: the host's vtable, alive while the plugin is loaded (and, for this
        // host, for good).
        unsafe { &*self.vtable }
    }
}

unsafe extern "C" fn release_counted(owner_ctx: *mut c_void, ptr: *const u8, len: u64) {
    OWNED_RELEASES.fetch_add(1, Ordering::Relaxed);
    if !ptr.is_null() {
        // SAFETY: the parts `owned` took apart: capacity in `owner_ctx`.
        drop(unsafe { Vec::from_raw_parts(ptr.cast_mut(), len as usize, owner_ctx as usize) });
    }
}

unsafe fn owned(sid: u64, payload: NrBytes) -> NrStatus {
    let Some(h) = Host::get() else { return NrStatus::Invalid };
    let mut data = std::mem::ManuallyDrop::new(bytes(payload));
    let out = NrOwnedBytes {
        ptr: data.as_mut_ptr(),
        len: data.len() as u64,
        owner_ctx: data.capacity() as *mut c_void,
        release: Some(release_counted),
    };
    // SAFETY: the host's contract: it takes the buffer and releases it exactly once.
    unsafe { (h.v2().send_result_owned)(h.ctx, sid, NrStatus::Ok, out) }
}

unsafe fn static_reply(sid: u64, _payload: NrBytes) -> NrStatus {
    let Some(h) = Host::get() else { return NrStatus::Invalid };
    // SAFETY: static bytes need no release.
    unsafe {
        (h.v2().send_result_owned)(h.ctx, sid, NrStatus::Ok, NrOwnedBytes::from_static(b"static bytes"))
    }
}

/// A lease of `len` bytes for `sid`; when the host refuses one, the "no lease" error reply
/// is sent instead and its status returned.
fn lease_for(h: Host, sid: u64, len: usize) -> Result<NrBufferLease, NrStatus> {
    // SAFETY: the host's lease contract: the buffer is writable for `cap >= len` bytes
    // until committed.
    let lease: NrBufferLease = unsafe { (h.v2().acquire_result_buffer)(h.ctx, sid, len as u64) };
    if lease.is_failed() {
        return Err(h.send(sid, NrStatus::Err, b"no lease".to_vec()));
    }
    Ok(lease)
}

/// The host, the payload and a lease of its length, for an entry that replies through a
/// lease; `Err` with the status to return when there is no host or no lease.
fn leased(sid: u64, payload: NrBytes) -> Result<(Host, Vec<u8>, NrBufferLease), NrStatus> {
    let (Some(h), data) = (Host::get(), bytes(payload)) else { return Err(NrStatus::Invalid) };
    let lease = lease_for(h, sid, data.len())?;
    Ok((h, data, lease))
}

/// Writes `data` reversed at `ptr`.
///
/// # Safety
/// `ptr` is writable for `data.len()` bytes (a lease of at least that, not yet committed).
unsafe fn write_reversed(ptr: *mut u8, data: &[u8]) {
    for (i, b) in data.iter().rev().enumerate() {
        // SAFETY: the caller's contract.
        unsafe { ptr.add(i).write(*b) };
    }
}

fn reply_in_lease(h: Host, sid: u64, data: &[u8]) -> NrStatus {
    let lease = match lease_for(h, sid, data.len()) {
        Ok(lease) => lease,
        Err(sent) => return sent,
    };
    // SAFETY: the lease is writable for `cap >= data.len()` bytes until committed.
    unsafe { write_reversed(lease.ptr, data) };
    // SAFETY: `data.len()` bytes were written.
    unsafe { (h.v2().commit_result_buffer)(h.ctx, sid, NrStatus::Ok, lease.token, data.len() as u64) }
}

unsafe fn lease(sid: u64, payload: NrBytes) -> NrStatus {
    match Host::get() {
        Some(h) => reply_in_lease(h, sid, &bytes(payload)),
        None => NrStatus::Invalid,
    }
}

unsafe fn lease_async(sid: u64, payload: NrBytes) -> NrStatus {
    let (Some(h), data) = (Host::get(), bytes(payload)) else { return NrStatus::Invalid };
    std::thread::spawn(move || reply_in_lease(h, sid, &data));
    NrStatus::Ok
}

unsafe fn lease_late(sid: u64, payload: NrBytes) -> NrStatus {
    let (h, data, lease) = match leased(sid, payload) {
        Ok(got) => got,
        Err(status) => return status,
    };
    let (ptr, token) = (lease.ptr as usize, lease.token);
    std::thread::spawn(move || {
        // SAFETY: the lease stays writable for `cap >= data.len()` bytes until committed,
        // whatever became of the call.
        unsafe { write_reversed(ptr as *mut u8, &data) };
        // SAFETY: `data.len()` bytes were written.
        unsafe { (h.v2().commit_result_buffer)(h.ctx, sid, NrStatus::Ok, token, data.len() as u64) }
    });
    NrStatus::Ok
}

unsafe fn lease_fumble(sid: u64, payload: NrBytes) -> NrStatus {
    let (h, data, lease) = match leased(sid, payload) {
        Ok(got) => got,
        Err(status) => return status,
    };
    let commit = h.v2().commit_result_buffer;
    // SAFETY: commits the host must refuse; a zero-byte one taken would show as an empty reply.
    let wrong_token = unsafe { commit(h.ctx, sid, NrStatus::Ok, lease.token ^ 1, 0) };
    // SAFETY: as above; a length past the buffer.
    let too_long = unsafe { commit(h.ctx, sid, NrStatus::Ok, lease.token, lease.cap + 1) };
    if (wrong_token, too_long) != (NrStatus::Invalid, NrStatus::Invalid) {
        return h.send(sid, NrStatus::Err, b"a bad commit was not refused".to_vec());
    }
    // SAFETY: the lease is still writable for `cap >= data.len()` bytes.
    unsafe { write_reversed(lease.ptr, &data) };
    // SAFETY: `data.len()` bytes were written.
    unsafe { commit(h.ctx, sid, NrStatus::Ok, lease.token, data.len() as u64) }
}

/// Releases of `owned` replies so far.
#[unsafe(no_mangle)]
pub extern "C" fn test_owned_releases() -> u64 {
    OWNED_RELEASES.load(Ordering::Relaxed)
}

nylon_ring::define_plugin! {
    init: init,
    shutdown: shutdown,
    entries: {
        "echo" => echo,
        "echo_async" => echo_async,
        "stream" => stream,
        "stream_sync" => stream_sync,
        "bidi" => bidi,
        "state" => state,
        "panic" => panics,
        "error" => error,
        "fail" => fail,
        "forever" => forever,
        "owned" => owned,
        "static" => static_reply,
        "lease" => lease,
        "lease_async" => lease_async,
        "lease_late" => lease_late,
        "lease_fumble" => lease_fumble,
    },
    stream_handlers: {
        data: on_data,
        close: on_close,
    }
}
