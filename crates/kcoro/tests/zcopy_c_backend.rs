//! An out-of-tree backend written in C (`sdk/c/examples/zring.c`): built as a shared
//! library, loaded with `dlopen`, registered by name at run time, and used through
//! ordinary kcoro channels with coroutines and threads.

use crate::common;

use std::ffi::CString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use common::{WATCHDOG, both};
use kcoro::chan::{Builder, ChanError, Kind};
use kcoro::zcopy::{self, BackendId, KcZcopyBackendOps, Region, ZBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds zring.c, loads it (never unloaded), registers it as "zring"; returns its id and
/// ring size.
fn zring() -> (BackendId, usize) {
    static ZRING: OnceLock<(BackendId, usize)> = OnceLock::new();
    *ZRING.get_or_init(|| {
        let lib = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libzring.so");
        let out = Command::new("cc")
            .args(["-std=c11", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", "-I"])
            .arg(root().join("include"))
            .arg("-o")
            .arg(&lib)
            .arg(root().join("sdk/c/examples/zring.c"))
            .arg("-lpthread")
            .output()
            .expect("a C compiler (cc) is needed to build the C backend example");
        assert!(out.status.success(), "cc failed: {}", String::from_utf8_lossy(&out.stderr));
        let path = CString::new(lib.to_str().unwrap()).unwrap();
        // SAFETY: loading a library we just built; it is never closed, as register_c requires.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!handle.is_null(), "dlopen failed");
        let sym = |name: &str| {
            let n = CString::new(name).unwrap();
            // SAFETY: looking up a symbol in a live handle.
            let p = unsafe { libc::dlsym(handle, n.as_ptr()) };
            assert!(!p.is_null(), "{name} missing");
            p
        };
        // SAFETY: the symbols have these C signatures (zring.c).
        let (ops, cap) = unsafe {
            let ops: extern "C" fn() -> *const KcZcopyBackendOps =
                std::mem::transmute(sym("kc_zring_backend_ops"));
            let cap: extern "C" fn() -> u32 = std::mem::transmute(sym("kc_zring_capacity"));
            (&*ops(), cap() as usize)
        };
        // SAFETY: the library stays loaded for the process's life; its functions follow the
        // kc_zcopy_backend_ops_t signatures and are thread-safe (zring.c says how).
        let id = unsafe { zcopy::register_c("zring", ops, 0) }.unwrap();
        (id, cap)
    })
}

/// Under emulation (a cargo runner such as qemu), the host's `cc` builds a library of the
/// wrong architecture: these tests run natively only.
fn native() -> bool {
    if common::runner().is_some() {
        eprintln!("note: emulated target; skipping the C backend (cc builds for the host)");
        return false;
    }
    true
}

#[test]
fn registered_by_name_at_run_time() {
    if !native() {
        return;
    }
    let (id, _) = zring();
    assert_eq!(zcopy::resolve_backend("zring"), Some(id));
    assert_eq!(zcopy::backend_name(id).as_deref(), Some("zring"));
}

/// The ring's capacity holds: one more send finds no room, gives its lease back, and a
/// timed send (direct or in a select) waits and times out instead of spinning.
#[test]
fn a_full_ring_refuses_and_hands_back() {
    if !native() {
        return;
    }
    let (id, cap) = zring();
    both(move |_m| {
        let region = Region::anonymous(1 << 20).unwrap();
        let (tx, rx) = Builder::<ZBuf>::new(Kind::Buffered).zero_copy(id).try_build().unwrap();
        assert_eq!(tx.capabilities(), zcopy::CAP_ZERO_COPY);
        for i in 0..cap {
            let mut b = region.alloc(100).unwrap();
            b[0] = i as u8;
            tx.try_send(b).unwrap();
        }
        let extra = region.alloc(100).unwrap();
        let d = extra.desc();
        let e = tx.try_send(extra).unwrap_err();
        assert_eq!((e.kind(), e.value().desc()), (ChanError::WouldBlock, d));
        let e = tx.send_timeout(e.into_inner(), Duration::from_millis(2)).unwrap_err();
        assert_eq!(e.kind(), ChanError::Timeout);
        let mut v = Some(e.into_inner());
        let r = kcoro::select! {
            send(tx, v.take().unwrap()) -> r => r.map_err(|e| e.kind()),
            timeout(Duration::from_millis(2)) => Err(ChanError::Timeout),
        };
        assert_eq!(r, Err(ChanError::Timeout));
        for i in 0..cap {
            assert_eq!(rx.try_recv().unwrap()[0], i as u8, "FIFO through the C ring");
        }
        assert_eq!(rx.try_recv().unwrap_err(), ChanError::WouldBlock);
        drop((tx, rx));
        assert_eq!(region.leases(), 0);
    });
}

#[test]
fn exactly_once_through_the_c_ring() {
    if !native() {
        return;
    }
    let (id, _) = zring();
    both(move |m| {
        let region = Region::anonymous(4 << 20).unwrap();
        let (tx, rx) = Builder::<ZBuf>::new(Kind::Buffered).zero_copy(id).try_build().unwrap();
        let r = region.clone();
        let producer = m.go(move || {
            for i in 0..2000u32 {
                let mut b = r.alloc(64 + (i as usize % 7) * 500).unwrap();
                b[..4].copy_from_slice(&i.to_le_bytes());
                tx.send(b).unwrap();
            }
        });
        let mut next = 0u32;
        while let Ok(b) = rx.recv_timeout(WATCHDOG) {
            assert_eq!(u32::from_le_bytes(b[..4].try_into().unwrap()), next);
            next += 1;
        }
        producer.join();
        assert_eq!(next, 2000);
        let z = rx.snapshot().zero_copy.unwrap();
        assert_eq!((z.sent, z.received), (2000, 2000));
        assert_eq!(region.leases(), 0);
    });
}
