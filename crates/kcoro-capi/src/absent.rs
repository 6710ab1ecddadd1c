//! Entry points of the ABI page that this library does not implement yet: manually
//! resumed coroutines (`kcoro_*`) and scheduler timers. They exist so programs written
//! against the full headers link; each reports `KC_ENOTSUP` (or NULL, or does nothing)
//! and never touches its arguments. docs/C_API.md lists them.

use std::ffi::{c_char, c_int, c_long, c_ulonglong, c_void};

use crate::error::code;
use crate::layout::KcTimerHandle;

type Opaque = c_void;

macro_rules! absent {
    ($( $(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),*) -> $r:ty = $v:expr; )*) => {$(
        $(#[$m])*
        /// Not implemented by this library: see the module docs.
        #[unsafe(no_mangle)]
        pub extern "C" fn $name($(_: $t),*) -> $r {
            $v
        }
    )*};
}

absent! {
    fn kcoro_create(f: *mut c_void, arg: *mut c_void, stack: usize) -> *mut Opaque = std::ptr::null_mut();
    fn kcoro_destroy(co: *mut Opaque) -> () = ();
    fn kcoro_set_name(co: *mut Opaque, name: *const c_char) -> () = ();
    fn kcoro_resume(co: *mut Opaque) -> () = ();
    fn kcoro_current() -> *mut Opaque = std::ptr::null_mut();
    fn kcoro_thread_main() -> *mut Opaque = std::ptr::null_mut();
    fn kcoro_retain(co: *mut Opaque) -> () = ();
    fn kcoro_release(co: *mut Opaque) -> () = ();
    fn kcoro_yield_to(co: *mut Opaque) -> () = ();
    fn kcoro_park() -> () = ();
    fn kcoro_unpark(co: *mut Opaque) -> () = ();
    fn kcoro_is_parked(co: *const Opaque) -> c_int = 0;
    fn kcoro_create_main() -> *mut Opaque = std::ptr::null_mut();
    fn kcoro_set_thread_main(co: *mut Opaque) -> () = ();

    fn kc_sched_enqueue_ready(s: *mut Opaque, co: *mut Opaque) -> () = ();
    fn kc_sched_timer_wake_after(s: *mut Opaque, co: *mut Opaque, delay_ms: c_long) -> KcTimerHandle = KcTimerHandle { id: 0 };
    fn kc_sched_timer_wake_at(s: *mut Opaque, co: *mut Opaque, deadline_ns: c_ulonglong) -> KcTimerHandle = KcTimerHandle { id: 0 };
    fn kc_sched_timer_cancel(s: *mut Opaque, t: KcTimerHandle) -> c_int = code::ENOTSUP;
}

/// `kcoro_yield`: inside a scheduler coroutine, lets others run (as `kc_yield`); there
/// are no manually resumed coroutines to return to in this library.
#[unsafe(no_mangle)]
pub extern "C" fn kcoro_yield() {
    crate::sched::kc_yield();
}
