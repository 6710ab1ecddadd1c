//! Pins the version-1 layout (and the extensions') on 64-bit targets: every size, alignment
//! and offset. `sdk/c/kcoro_plugin.h` asserts the same numbers in C.
#![cfg(target_pointer_width = "64")]

use std::mem::{align_of, offset_of, size_of};

use kcoro_abi::*;

#[test]
fn status_is_a_four_byte_code() {
    assert_eq!((size_of::<NrStatus>(), align_of::<NrStatus>()), (4, 4));
    let codes = [NrStatus::Ok, NrStatus::Err, NrStatus::Invalid, NrStatus::Unsupported, NrStatus::StreamEnd];
    assert_eq!(codes.map(|s| s.0), [0, 1, 2, 3, 4]);
    assert_eq!(NrStatus::Backpressure.0, 5);
    // A value a buggy plugin might return is read as Invalid and ends a stream.
    assert_eq!(NrStatus(7).normalized(), NrStatus::Invalid);
    assert!(NrStatus(7).is_terminal() && NrStatus::StreamEnd.is_terminal() && NrStatus::Err.is_terminal());
    assert!(!NrStatus::Ok.is_terminal() && !NrStatus::Backpressure.is_terminal());
    assert_eq!(format!("{:?} {:?}", NrStatus::StreamEnd, NrStatus(9)), "StreamEnd Unknown(9)");
}

#[test]
fn views() {
    assert_eq!((size_of::<NrStr>(), align_of::<NrStr>()), (16, 8));
    assert_eq!((offset_of!(NrStr, ptr), offset_of!(NrStr, len)), (0, 8));
    assert_eq!((size_of::<NrBytes>(), align_of::<NrBytes>()), (16, 8));
    assert_eq!((offset_of!(NrBytes, ptr), offset_of!(NrBytes, len)), (0, 8));
    assert_eq!((size_of::<NrHeader>(), align_of::<NrHeader>()), (32, 8));
    assert_eq!((offset_of!(NrHeader, key), offset_of!(NrHeader, value)), (0, 16));
}

#[test]
fn request() {
    assert_eq!((size_of::<NrRequest>(), align_of::<NrRequest>()), (72, 8));
    let offsets = [
        offset_of!(NrRequest, path),
        offset_of!(NrRequest, method),
        offset_of!(NrRequest, query),
        offset_of!(NrRequest, headers),
        offset_of!(NrRequest, headers_len),
        offset_of!(NrRequest, _reserved0),
        offset_of!(NrRequest, _reserved1),
    ];
    assert_eq!(offsets, [0, 16, 32, 48, 56, 60, 64]);
}

#[test]
fn vtables_and_info() {
    assert_eq!((size_of::<NrHostVTable>(), align_of::<NrHostVTable>()), (8, 8));
    assert_eq!((size_of::<NrPluginVTable>(), align_of::<NrPluginVTable>()), (40, 8));
    let offsets = [
        offset_of!(NrPluginVTable, init),
        offset_of!(NrPluginVTable, handle),
        offset_of!(NrPluginVTable, shutdown),
        offset_of!(NrPluginVTable, stream_data),
        offset_of!(NrPluginVTable, stream_close),
    ];
    assert_eq!(offsets, [0, 8, 16, 24, 32]);
    assert_eq!((size_of::<NrPluginInfo>(), align_of::<NrPluginInfo>()), (56, 8));
    let offsets = [
        offset_of!(NrPluginInfo, abi_version),
        offset_of!(NrPluginInfo, struct_size),
        offset_of!(NrPluginInfo, name),
        offset_of!(NrPluginInfo, version),
        offset_of!(NrPluginInfo, plugin_ctx),
        offset_of!(NrPluginInfo, vtable),
    ];
    assert_eq!(offsets, [0, 4, 8, 24, 40, 48]);
    assert_eq!((size_of::<NrHostExt>(), offset_of!(NrHostExt, get_state)), (16, 8));
    assert_eq!(ENTRY_SYMBOL, "nylon_ring_get_plugin_v1");
    assert_eq!(NR_ABI_VERSION, 1);
}

#[test]
fn extensions_only_append() {
    // The extended info is the version-1 info plus one pointer.
    assert_eq!(
        (size_of::<KcPluginInfo>(), offset_of!(KcPluginInfo, base), offset_of!(KcPluginInfo, ext)),
        (64, 0, 56)
    );
    assert_eq!(size_of::<KcPluginExt>(), 72);
    let offsets = [
        offset_of!(KcPluginExt, struct_size),
        offset_of!(KcPluginExt, flags),
        offset_of!(KcPluginExt, attach),
        offset_of!(KcPluginExt, entries),
        offset_of!(KcPluginExt, entries_len),
        offset_of!(KcPluginExt, _reserved0),
        offset_of!(KcPluginExt, handle_id),
        offset_of!(KcPluginExt, _reserved),
    ];
    assert_eq!(offsets, [0, 4, 8, 16, 24, 28, 32, 40]);
    assert_eq!(size_of::<KcHostApi>(), 72);
    let offsets = [
        offset_of!(KcHostApi, struct_size),
        offset_of!(KcHostApi, flags),
        offset_of!(KcHostApi, state),
        offset_of!(KcHostApi, send_owned),
        offset_of!(KcHostApi, try_send),
        offset_of!(KcHostApi, _reserved),
    ];
    assert_eq!(offsets, [0, 4, 8, 24, 32, 40]);
}

#[test]
fn views_read_back_and_tolerate_null() {
    let s = NrStr::from_static("héllo");
    // SAFETY: a view of a static string.
    assert_eq!(unsafe { s.as_str() }, Ok("héllo"));
    // SAFETY: null views read as empty.
    assert_eq!(unsafe { NrStr::EMPTY.as_bytes() }, b"");
    // SAFETY: as above.
    assert_eq!(unsafe { NrBytes::EMPTY.as_slice() }, b"");
    let bad = [0xffu8, 0xfe];
    let view = NrStr { ptr: bad.as_ptr(), len: 2 };
    // SAFETY: `bad` outlives the view.
    assert!(unsafe { view.as_str() }.is_err());
    let data = vec![1u8, 2, 3];
    // SAFETY: `data` outlives the view.
    assert_eq!(unsafe { NrBytes::from_slice(&data).as_slice() }, &[1, 2, 3]);
}

#[test]
fn nylon_status_codes_map_both_ways() {
    use kcoro_abi::nylon::NyStatus;
    assert_eq!(NrStatus::Panic.0, 6);
    assert!(NrStatus::Panic.is_terminal());
    assert_eq!(format!("{:?}", NrStatus::Panic), "Panic");
    // nylon-ring's 5 and 6 are kcoro's Panic and Backpressure; 0..=4 are the same.
    for v in 0..=4 {
        assert_eq!(NyStatus(v).to_kcoro(), NrStatus(v));
        assert_eq!(NyStatus::from_kcoro(NrStatus(v)), NyStatus(v));
    }
    assert_eq!((NyStatus(5).to_kcoro(), NyStatus(6).to_kcoro()), (NrStatus::Panic, NrStatus::Backpressure));
    assert_eq!(NyStatus::from_kcoro(NrStatus::Backpressure), NyStatus(6));
    assert_eq!(NyStatus::from_kcoro(NrStatus::Panic), NyStatus(5));
    // Values nylon-ring does not assign are Invalid, both ways.
    assert_eq!(
        (NyStatus(7).to_kcoro(), NyStatus(u32::MAX).to_kcoro()),
        (NrStatus::Invalid, NrStatus::Invalid)
    );
    assert_eq!(NyStatus::from_kcoro(NrStatus(99)), NyStatus::Invalid);
}

#[test]
fn nylon_layouts() {
    use kcoro_abi::nylon::{self, *};
    assert_eq!((size_of::<NyStr>(), offset_of!(NyStr, len), offset_of!(NyStr, _reserved)), (16, 8, 12));
    assert_eq!((size_of::<NrVec>(), align_of::<NrVec>()), (40, 8));
    let offsets = [
        offset_of!(NrVec, ptr),
        offset_of!(NrVec, len),
        offset_of!(NrVec, cap),
        offset_of!(NrVec, owned),
        offset_of!(NrVec, _reserved),
        offset_of!(NrVec, drop_fn),
    ];
    assert_eq!(offsets, [0, 8, 16, 24, 25, 32]);
    assert_eq!(size_of::<NrOwnedBytes>(), 32);
    let offsets = [
        offset_of!(NrOwnedBytes, ptr),
        offset_of!(NrOwnedBytes, len),
        offset_of!(NrOwnedBytes, owner_ctx),
        offset_of!(NrOwnedBytes, release),
    ];
    assert_eq!(offsets, [0, 8, 16, 24]);
    assert_eq!(size_of::<NrBufferLease>(), 24);
    assert_eq!((offset_of!(NrBufferLease, cap), offset_of!(NrBufferLease, token)), (8, 16));
    assert_eq!((size_of::<NyHostExt>(), offset_of!(NyHostExt, get_state)), (16, 8));
    assert_eq!(size_of::<NyPluginInfo<nylon::v2::NyPluginVTable>>(), size_of::<NrPluginInfo>());
    assert_eq!(
        (
            offset_of!(NyPluginInfo<()>, name),
            offset_of!(NyPluginInfo<()>, plugin_ctx),
            offset_of!(NyPluginInfo<()>, vtable)
        ),
        (8, 40, 48)
    );

    assert_eq!((nylon::v01::ENTRY_SYMBOL, nylon::v01::ABI_VERSION), ("nylon_ring_get_plugin_v1", 1));
    assert_eq!(size_of::<nylon::v01::NyHostVTable>(), 8);
    assert_eq!(size_of::<nylon::v01::NyPluginVTable>(), 40);

    assert_eq!((nylon::v2::ENTRY_SYMBOL, nylon::v2::ABI_VERSION), ("nylon_ring_get_plugin", 2));
    use nylon::v2::{NyHostVTable as H2, NyPluginVTable as P2};
    assert_eq!(size_of::<H2>(), 32);
    let offsets = [
        offset_of!(H2, send_result),
        offset_of!(H2, send_result_owned),
        offset_of!(H2, acquire_result_buffer),
        offset_of!(H2, commit_result_buffer),
    ];
    assert_eq!(offsets, [0, 8, 16, 24]);
    assert_eq!(size_of::<P2>(), 56);
    assert_eq!((offset_of!(P2, resolve_entry), offset_of!(P2, handle_by_id)), (40, 48));

    use nylon::early::{VTable3, VTable6};
    assert_eq!(size_of::<VTable3>(), 24);
    assert_eq!(size_of::<VTable6>(), 48);
    let offsets = [
        offset_of!(VTable6, init),
        offset_of!(VTable6, handle),
        offset_of!(VTable6, handle_raw),
        offset_of!(VTable6, shutdown),
        offset_of!(VTable6, stream_data),
        offset_of!(VTable6, stream_close),
    ];
    assert_eq!(offsets, [0, 8, 16, 24, 32, 40]);
}
