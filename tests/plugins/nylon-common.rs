// The handlers both `define_plugin!` test plugins share (`nylon-0.1`, `nylon-0.2`):
// nylon-ring 0.1.4 and 0.2.2 spell `send_result`, `NrVec` and `get_host_ext` the same,
// so each crate `include!`s this file under its own `nylon_ring` / `nylon_ring_host`.
// Everything here is written the way nylon-ring's own examples write plugins: the host
// context and vtable kept in statics by `init`, replies as owned `NrVec`s.
//
//   echo         Ok + the payload, inside `handle`
//   echo_async   Ok + the payload, from another thread
//   stream       N frames "frame-1".."frame-N" (N = payload, default 5) from a thread,
//                then StreamEnd; a Backpressure answer (6) is retried, any other stops it
//   stream_sync  the same, inside `handle`
//   bidi         each stream_data echoed as a frame; StreamEnd on stream_close
//   state        set "key" = payload through NylonRingHost::get_host_ext, read it back,
//                reply with what was read
//   panic        panics (the macro answers Panic)
//   error        Err + "boom"
//   fail         returns Err without replying
//   forever      from a thread that is never joined: a frame every millisecond until the
//                process exits, even after `shutdown` (counted by `test_late_sends`)

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::Duration;

use nylon_ring::{NrBytes, NrHostVTable, NrStatus, NrStr, NrVec};

static HOST_CTX: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
static HOST_VTABLE: AtomicPtr<NrHostVTable> = AtomicPtr::new(std::ptr::null_mut());
/// Frames `forever` threads sent, and Backpressure answers `stream` retried.
static LATE_SENDS: AtomicU64 = AtomicU64::new(0);
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// The host as `init` stored it; copied out, so threads keep it past `shutdown`.
#[derive(Clone, Copy)]
struct Host {
    ctx: *mut c_void,
    vtable: *const NrHostVTable,
}

// SAFETY: nylon-ring's contract: the host's callbacks may be called from any thread.
unsafe impl Send for Host {}

impl Host {
    fn get() -> Option<Host> {
        let ctx = HOST_CTX.load(Ordering::Acquire);
        let vtable = HOST_VTABLE.load(Ordering::Acquire);
        (!ctx.is_null() && !vtable.is_null()).then_some(Host { ctx, vtable })
    }

    fn send(self, sid: u64, status: NrStatus, data: Vec<u8>) -> NrStatus {
        // SAFETY: `vtable` came from the host's `init`; nylon-ring's hosts keep it alive.
        let send = unsafe { (*self.vtable).send_result };
        // SAFETY: the host's `send_result` contract; the NrVec is handed over by value.
        unsafe { send(self.ctx, sid, status, NrVec::from_vec(data)) }
    }
}

unsafe fn init(host_ctx: *mut c_void, host_vtable: *const NrHostVTable) -> NrStatus {
    if host_ctx.is_null() || host_vtable.is_null() {
        return NrStatus::Invalid;
    }
    HOST_CTX.store(host_ctx, Ordering::Release);
    HOST_VTABLE.store(host_vtable.cast_mut(), Ordering::Release);
    NrStatus::Ok
}

fn shutdown() {
    HOST_VTABLE.store(std::ptr::null_mut(), Ordering::Release);
    HOST_CTX.store(std::ptr::null_mut(), Ordering::Release);
}

fn bytes(payload: NrBytes) -> Vec<u8> {
    // SAFETY: the host keeps the payload readable for the call.
    unsafe { payload.as_slice() }.map(<[u8]>::to_vec).unwrap_or_default()
}

fn frames_wanted(payload: NrBytes) -> u32 {
    std::str::from_utf8(&bytes(payload)).ok().and_then(|s| s.parse().ok()).unwrap_or(5)
}

unsafe fn echo(sid: u64, payload: NrBytes) -> NrStatus {
    match Host::get() {
        Some(h) => h.send(sid, NrStatus::Ok, bytes(payload)),
        None => NrStatus::Invalid,
    }
}

unsafe fn echo_async(sid: u64, payload: NrBytes) -> NrStatus {
    let (Some(h), data) = (Host::get(), bytes(payload)) else { return NrStatus::Invalid };
    std::thread::spawn(move || h.send(sid, NrStatus::Ok, data));
    NrStatus::Ok
}

/// Sends `n` frames and the end; retries a frame refused with Backpressure.
fn run_stream(h: Host, sid: u64, n: u32) -> NrStatus {
    for i in 1..=n {
        loop {
            match h.send(sid, NrStatus::Ok, format!("frame-{i}").into_bytes()) {
                NrStatus::Ok => break,
                NrStatus::Backpressure => {
                    RETRIES.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(200));
                }
                other => return other,
            }
        }
    }
    h.send(sid, NrStatus::StreamEnd, Vec::new())
}

unsafe fn stream(sid: u64, payload: NrBytes) -> NrStatus {
    let Some(h) = Host::get() else { return NrStatus::Invalid };
    let n = frames_wanted(payload);
    std::thread::spawn(move || run_stream(h, sid, n));
    NrStatus::Ok
}

unsafe fn stream_sync(sid: u64, payload: NrBytes) -> NrStatus {
    match Host::get() {
        Some(h) => run_stream(h, sid, frames_wanted(payload)),
        None => NrStatus::Invalid,
    }
}

unsafe fn bidi(_sid: u64, _payload: NrBytes) -> NrStatus {
    NrStatus::Ok
}

unsafe fn on_data(sid: u64, data: NrBytes) -> NrStatus {
    match Host::get() {
        Some(h) => h.send(sid, NrStatus::Ok, bytes(data)),
        None => NrStatus::Invalid,
    }
}

unsafe fn on_close(sid: u64) -> NrStatus {
    match Host::get() {
        Some(h) => h.send(sid, NrStatus::StreamEnd, Vec::new()),
        None => NrStatus::Invalid,
    }
}

unsafe fn state(sid: u64, payload: NrBytes) -> NrStatus {
    let Some(h) = Host::get() else { return NrStatus::Invalid };
    // How nylon-ring's plugins reach per-sid state: through the host's context.
    // SAFETY: `h.ctx` is the host_ctx `init` received.
    let ext = unsafe { nylon_ring_host::NylonRingHost::get_host_ext(h.ctx) };
    // SAFETY: the host's extension table, alive while the plugin is loaded.
    let Some(ext) = (unsafe { ext.as_ref() }) else { return NrStatus::Unsupported };
    // SAFETY: the state functions' contract; the views outlive the calls.
    let set = unsafe { (ext.set_state)(h.ctx, sid, NrStr::new("key"), payload) };
    if set != NrStatus::Ok {
        return set;
    }
    // SAFETY: as above; the returned vector is ours to drop.
    let got = unsafe { (ext.get_state)(h.ctx, sid, NrStr::new("key")) };
    h.send(sid, NrStatus::Ok, got.as_slice().to_vec())
}

unsafe fn panics(_sid: u64, _payload: NrBytes) -> NrStatus {
    panic!("the panic entry panics");
}

unsafe fn error(sid: u64, _payload: NrBytes) -> NrStatus {
    match Host::get() {
        Some(h) => h.send(sid, NrStatus::Err, b"boom".to_vec()),
        None => NrStatus::Invalid,
    }
}

unsafe fn fail(_sid: u64, _payload: NrBytes) -> NrStatus {
    NrStatus::Err
}

unsafe fn forever(sid: u64, _payload: NrBytes) -> NrStatus {
    let Some(h) = Host::get() else { return NrStatus::Invalid };
    std::thread::spawn(move || {
        loop {
            h.send(sid, NrStatus::Ok, b"tick".to_vec());
            LATE_SENDS.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    NrStatus::Ok
}

/// Frames `forever` threads have sent so far (read by the tests through `dlsym`).
#[unsafe(no_mangle)]
pub extern "C" fn test_late_sends() -> u64 {
    LATE_SENDS.load(Ordering::Relaxed)
}

/// Frames `stream` resent after a Backpressure answer.
#[unsafe(no_mangle)]
pub extern "C" fn test_backpressure_retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// Where the nylon-ring-host this plugin links keeps its state table inside `host_ctx`.
#[unsafe(no_mangle)]
pub extern "C" fn test_host_ext_offset() -> usize {
    let base = [0u64; 128];
    let p = base.as_ptr() as *mut c_void;
    // SAFETY: `get_host_ext` only adds its field's offset to a non-null pointer.
    let ext = unsafe { nylon_ring_host::NylonRingHost::get_host_ext(p) };
    ext as usize - p as usize
}
