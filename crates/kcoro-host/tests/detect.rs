//! Plain version-1 plugins (the 56-byte info every version-1 layout shares) under
//! `Layout::Auto`, and wrong layouts named for them: a layout its vtable alone fits is
//! detected; several are refused, naming them; a named layout whose slots are not the
//! plugin's code is refused, naming the slot, before any of the plugin's functions runs.
//!
//! Each library is loaded by one test only: a library may be initialised once per process
//! at a time, and the tests run in parallel.

mod common;

use std::path::Path;
use std::time::Duration;

use kcoro_host::{HostError, Layout, LoadOptions, NrStatus, Plugin};

fn load(path: &Path, layout: Layout) -> Result<Plugin, HostError> {
    Plugin::load_with(path, LoadOptions::default().layout(layout))
}

fn reply(p: &Plugin, entry: &str, payload: &[u8]) -> (NrStatus, Vec<u8>) {
    let r = p.call_raw(entry, payload).timeout(Duration::from_secs(20)).wait().expect(entry);
    (r.status, r.data.into_vec())
}

#[test]
fn a_seed_v1_plugin_is_detected_as_kcoro_v1() {
    let lib = common::c_test_lib("seed_v1.c", &[], "c_seed_v1");
    common::within(60, move || {
        let p = load(&lib, Layout::Auto).expect("detected");
        assert_eq!((p.name(), p.layout(), p.info_size()), ("c-seed-v1", Layout::KcoroV1, 56));
        assert!(!p.is_extended());
        assert_eq!(reply(&p, "echo", b"seed"), (NrStatus::Ok, b"seed".to_vec()));
        let req = kcoro_host::HighLevelRequest::new("PUT", "/seed");
        assert_eq!(&*p.call("meta", &req).wait().expect("meta").data, b"PUT /seed");
        let mut s = p.call_stream_raw("bidi", b"").expect("bidi").timeout(Duration::from_secs(20));
        assert_eq!(s.send(b"one").expect("stream_data"), NrStatus::Ok);
        s.close().expect("stream_close");
        let got: Vec<_> =
            s.collect().expect("frames").into_iter().map(|f| (f.status, f.data.into_vec())).collect();
        assert_eq!(got, [(NrStatus::Ok, b"one".to_vec()), (NrStatus::StreamEnd, vec![])]);
        p.shutdown(Duration::from_secs(5)).expect("shutdown");
    });
}

/// The regression: `kcoro plugin --abi nylon-6slot info` on a 3-slot plugin called its
/// word 3 (0x911 in nylon-ring's example plugins) as `shutdown` and died of SIGSEGV.
#[test]
fn wrong_layouts_are_refused_naming_the_slot_and_the_right_one_is_detected() {
    let lib = common::c_test_lib("early.c", &["-DNY_SLOTS=3", "-DNY_TRAILER=0x911"], "c_nylon_3slot_trailer");
    common::within(60, move || {
        let file = "libc_nylon_3slot_trailer.so";
        for (layout, slot, name) in [
            (Layout::Nylon6Slot, 3, "shutdown"),
            (Layout::KcoroV1, 3, "stream_data"),
            (Layout::Nylon01, 3, "stream_data"),
        ] {
            let e = load(&lib, layout).expect_err("a wrong layout");
            let HostError::BadSlot(ref bad) = e else { panic!("{layout}: {e}") };
            assert_eq!(
                (bad.slot, bad.name, bad.value, bad.image.as_str()),
                (slot, name, 0x911, file),
                "{layout}"
            );
            let text = e.to_string();
            let want =
                format!("slot {slot} (`{name}`) = 0x911 does not point into executable code of {file}");
            assert!(text.contains(&want) && text.ends_with("wrong --abi layout?"), "{text}");
        }
        // Nothing ran and nothing is held: the right layout loads, detected.
        let p = load(&lib, Layout::Auto).expect("detected");
        assert_eq!((p.name(), p.layout()), ("c-nylon-3slot", Layout::Nylon3Slot));
        assert_eq!(reply(&p, "echo", b"hi"), (NrStatus::Ok, b"hi".to_vec()));
        p.shutdown(Duration::from_secs(5)).expect("shutdown");
    });
}

#[test]
fn plain_plugins_that_fit_several_layouts_are_refused_naming_them() {
    // nylon-ring 0.1's five slots are kcoro-v1's: only the arguments differ, and with a
    // null plugin_ctx nothing in the library tells them apart.
    let nylon01 = common::c_test_lib("nylon_rel.c", &["-DNY_V2=0"], "c_nylon01_detect");
    // The seed's C example: init, handle, shutdown and two null stream slots, which a
    // 3-slot table followed by nulls is too.
    let v1_only = common::c_lib("v1_only.c");
    common::within(60, move || {
        // (What follows the table decides whether a 6-slot table with a null last slot
        // fits as well: padding before the next object does, `_DYNAMIC` does not.)
        let both = [Layout::KcoroV1, Layout::Nylon01];
        for (lib, fits) in
            [(&nylon01, &both[..]), (&v1_only, &[Layout::KcoroV1, Layout::Nylon01, Layout::Nylon3Slot])]
        {
            let e = load(lib, Layout::Auto).expect_err("ambiguous");
            let HostError::AmbiguousLayout { ref options, .. } = e else { panic!("{e}") };
            let named: Vec<&str> = options.split(", ").collect();
            assert!(fits.iter().all(|l| named.contains(&l.name())), "{e}");
            assert!(e.to_string().contains("fits more than one layout"), "{e}");
        }
        // Named, each loads.
        let p = load(&nylon01, Layout::Nylon01).expect("nylon-0.1");
        assert_eq!(reply(&p, "echo", b"0.1"), (NrStatus::Ok, b"0.1".to_vec()));
        let p = load(&v1_only, Layout::KcoroV1).expect("kcoro-v1");
        assert_eq!(reply(&p, "echo", b"v1"), (NrStatus::Ok, b"v1".to_vec()));
    });
}

#[test]
fn a_vtable_on_the_heap_is_not_guessed_but_loads_when_named() {
    let lib = common::c_test_lib("seed_v1.c", &["-DSEED_HEAP_VTABLE"], "c_seed_v1_heap");
    common::within(60, move || {
        let e = load(&lib, Layout::Auto).expect_err("nothing bounds a heap table");
        let HostError::AmbiguousLayout { ref options, ref why, .. } = e else { panic!("{e}") };
        assert_eq!(options, &Layout::list(&Layout::PLAIN_V1));
        assert!(why.contains("outside libc_seed_v1_heap.so's mapped data"), "{why}");
        // Its slots are still checked, and are the plugin's code.
        let p = load(&lib, Layout::KcoroV1).expect("named");
        assert_eq!(reply(&p, "echo", b"heap"), (NrStatus::Ok, b"heap".to_vec()));
    });
}
