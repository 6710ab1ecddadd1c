//! `kc_region_*`: caller memory that descriptors name by `(region_id, offset, len)`, over
//! kcoro's regions ([`Region::register_span`]: the exact span, no allocator), and the
//! count of descriptors into each region that are in flight in the C API's channels.
//!
//! A descriptor naming a region registered here is *held* when a channel accepts it
//! (`kc_chan_send_desc`, a select send clause) and released when it is received, or
//! dropped undelivered by `kc_chan_destroy`. The library marks a held descriptor with
//! [`F_HELD`] in its flags (cleared on the way in and out, so a sender cannot forge it),
//! and only a marked descriptor releases. On receive, a region descriptor gets the local
//! address of its span in `addr` (for any region registered in this process, including
//! ones made by Rust code); a descriptor of a region not registered here is left as it came.
//!
//! `kc_region_deregister` does not wait: it fails with `-EBUSY` while descriptors into the
//! region are in flight (waiting could never end in a program whose only receiver is the
//! caller), and the region stays registered; call it again once they were received.
//!
//! # Invariants
//! - `in_flight` = descriptors held and not yet released; only changed under `state`.
//! - `open == false` ⇒ `in_flight == 0` and no descriptor is held any more: hold and
//!   deregistration decide under the same lock.

use std::collections::HashMap;
use std::ffi::{c_int, c_uint, c_ulong, c_void};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use kcoro::zcopy::{self, Region, ZDesc, ZError};

use crate::error::Error;
use crate::ffi;
use crate::handle::{self, Handle, Tagged};

/// `kc_zdesc_t.flags` bit the library owns: the descriptor is counted in flight.
pub const F_HELD: u32 = 1 << 1;

#[derive(Default)]
struct HeldState {
    open: bool,
    in_flight: usize,
}

/// The in-flight count of one registered region.
#[derive(Default)]
struct Held {
    state: Mutex<HeldState>,
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, HeldState> {
        // Each critical section is a flag or counter update: poisoning leaves it whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Regions registered through the C API, by export id.
fn table() -> MutexGuard<'static, HashMap<u64, Arc<Held>>> {
    static TABLE: OnceLock<Mutex<HashMap<u64, Arc<Held>>>> = OnceLock::new();
    // One insert, remove or get per critical section: poisoning leaves the map whole.
    TABLE.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner())
}

fn lookup(export_id: u64) -> Option<Arc<Held>> {
    table().get(&export_id).cloned()
}

fn zerr(e: ZError) -> Error {
    Error::Runtime(e.code())
}

/// Counts `d` in flight if it names a region registered through the C API, after checking
/// that its span lies inside the region (`-EINVAL`) and that the region is not being
/// deregistered (`KC_EPIPE`). Other descriptors pass unmarked.
pub(crate) fn hold(d: &mut ZDesc) -> Result<(), Error> {
    d.flags &= !F_HELD;
    if !d.is_region() {
        return Ok(());
    }
    let Some(held) = lookup(d.region_id) else { return Ok(()) };
    // Bounds and liveness, by the region table; the view is a lease for this call only.
    drop(zcopy::resolve(d).map_err(zerr)?);
    let mut st = held.lock();
    if !st.open {
        return Err(zerr(ZError::Deregistered));
    }
    st.in_flight += 1;
    d.flags |= F_HELD;
    Ok(())
}

/// Releases what [`hold`] counted: the descriptor was not accepted, or was dropped
/// undelivered.
pub(crate) fn release(d: &ZDesc) {
    if d.flags & F_HELD == 0 {
        return;
    }
    if let Some(held) = lookup(d.region_id) {
        let mut st = held.lock();
        st.in_flight = st.in_flight.saturating_sub(1);
    }
}

/// A descriptor was received: its local address is filled in (region descriptors of
/// regions registered here), then it stops counting in flight.
pub(crate) fn arrive(d: &mut ZDesc) {
    if d.is_region()
        && let Ok(view) = zcopy::resolve(d)
    {
        d.addr = view.as_ptr().cast_mut().cast();
    }
    release(d);
    d.flags &= !F_HELD;
}

/// What a `kc_region_t *` points to.
pub struct CRegion {
    region: Region,
    held: Arc<Held>,
}

impl Handle for CRegion {
    const MAGIC: u64 = 0x6b63_5f72_6567_6e31; // "kc_regn1"
    const WHAT: &'static str = "kc_region_t";
}

/// The C handle type.
pub type KcRegion = Tagged<CRegion>;

/// `int kc_region_register(kc_region_t **out, void *addr, size_t len, unsigned flags)`:
/// registers `len` bytes at `addr` (exactly) so descriptors can name them by
/// `(export id, offset, len)`. `flags` must be `KC_REGION_F_NONE`. `-EINVAL` for NULL
/// `out` or `addr`, zero `len` (or past 64 GiB), unknown flags.
///
/// # Safety
/// `out` NULL or writable; `addr..addr + len` stays valid until the region is deregistered.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_region_register(
    out: *mut *mut KcRegion,
    addr: *mut c_void,
    len: usize,
    flags: c_uint,
) -> c_int {
    ffi::int(|| {
        if out.is_null() {
            return Err(Error::Invalid("out is NULL"));
        }
        if flags != 0 {
            return Err(Error::Invalid("unknown region flags"));
        }
        // SAFETY: the C contract above: the span stays valid until deregistration, which
        // refuses while descriptors into it are in flight.
        let region = unsafe { Region::register_span(addr.cast(), len) }.map_err(zerr)?;
        let held = Arc::new(Held::default());
        held.lock().open = true;
        table().insert(region.export_id(), Arc::clone(&held));
        let r = handle::into_raw(CRegion { region, held });
        // SAFETY: checked non-null above.
        unsafe { ffi::write_out(out, r) }
    })
}

/// Deregisters the region and frees the handle: 0; or `-EBUSY` while descriptors into it
/// are in flight (sent and not yet received or destroyed with their channel) or views of
/// it are alive, and the region stays registered and the handle valid.
///
/// # Safety
/// `r` NULL or live; not used after it returned 0.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_region_deregister(r: *mut KcRegion) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let reg = unsafe { handle::get(r) }?;
        {
            let mut st = reg.held.lock();
            if st.in_flight > 0 {
                return Err(Error::Runtime(-libc::EBUSY));
            }
            st.open = false;
        }
        if let Err(e) = reg.region.deregister(Duration::ZERO) {
            reg.held.lock().open = true;
            return Err(zerr(e));
        }
        table().remove(&reg.region.export_id());
        // SAFETY: the C contract above.
        unsafe { handle::destroy(r) }?;
        Ok(0)
    })
}

/// The id descriptors carry in `region_id` for this region (never 0).
///
/// # Safety
/// `r` NULL or live; `out_id` NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn kc_region_export_id(r: *const KcRegion, out_id: *mut c_ulong) -> c_int {
    ffi::int(|| {
        // SAFETY: the C contract above.
        let reg = unsafe { handle::get(r) }?;
        // SAFETY: the C contract above.
        unsafe { ffi::write_out(out_id, reg.region.export_id() as c_ulong) }
    })
}
