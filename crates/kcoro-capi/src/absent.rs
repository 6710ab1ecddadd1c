//! Entry points of the ABI page that this library does not implement yet: regions,
//! scopes, actors and the channel bench hooks. They exist so programs written against the full headers link;
//! each reports `KC_ENOTSUP` (or NULL, or does nothing) and never touches its arguments.
//! docs/C_API.md lists them.

use std::ffi::{c_int, c_long, c_ulong, c_void};

use crate::error::code;
use crate::layout::{KcActorCtx, KcActorCtxEx, KcBenchParams};

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
    fn kc_region_register(out: *mut *mut Opaque, addr: *mut c_void, len: usize, flags: u32) -> c_int = code::ENOTSUP;
    fn kc_region_deregister(r: *mut Opaque) -> c_int = code::ENOTSUP;
    fn kc_region_export_id(r: *const Opaque, out: *mut c_ulong) -> c_int = code::ENOTSUP;

    fn kc_scope_init(out: *mut *mut Opaque, parent: *const Opaque) -> c_int = code::ENOTSUP;
    fn kc_scope_cancel(s: *mut Opaque) -> () = ();
    fn kc_scope_launch(s: *mut Opaque, f: *mut c_void, arg: *mut c_void, stack: usize, out: *mut *mut Opaque) -> c_int = code::ENOTSUP;
    fn kc_scope_actor(s: *mut Opaque, ctx: *const KcActorCtx) -> *mut c_void = std::ptr::null_mut();
    fn kc_scope_produce(s: *mut Opaque, kind: c_int, elem_sz: usize, cap: usize, f: *mut c_void, user: *mut c_void) -> *mut Opaque = std::ptr::null_mut();
    fn kc_scope_wait_all(s: *mut Opaque, timeout_ms: c_long) -> c_int = code::ENOTSUP;
    fn kc_scope_destroy(s: *mut Opaque) -> () = ();
    fn kc_scope_token(s: *const Opaque) -> *const Opaque = std::ptr::null();

    fn kc_actor_start(ctx: *const KcActorCtx) -> *mut c_void = std::ptr::null_mut();
    fn kc_actor_start_ex(ctx: *const KcActorCtxEx) -> *mut c_void = std::ptr::null_mut();
    fn kc_actor_stop(a: *mut c_void) -> () = ();
    fn kc_actor_cancel(a: *mut c_void) -> () = ();
    fn kc_actor_on_done(a: *mut c_void, cb: *mut c_void, arg: *mut c_void) -> () = ();

    fn kc_bench_chan_start(p: *const KcBenchParams, out_h: *mut *mut Opaque, out_ch: *mut *mut Opaque) -> c_int = code::ENOTSUP;
    fn kc_bench_chan_stop(h: *mut Opaque) -> () = ();
}
