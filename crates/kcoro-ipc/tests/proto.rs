//! The codec, property-tested: any frame encodes and decodes to itself, in any split of its
//! bytes; typed attributes round-trip; unknown attributes are skipped; stats survive the
//! trip with unknown counters added.

use kcoro_ipc::ChannelStats;
use kcoro_ipc::proto::{Attr, Cmd, FrameBuf, Limits, ProtoError, split_frame};
use proptest::prelude::*;

/// Every command and attribute the protocol defines.
const CMDS: [Cmd; 19] = [
    Cmd::HELLO,
    Cmd::GET_INFO,
    Cmd::GET_STATS,
    Cmd::AUTH,
    Cmd::LIST,
    Cmd::CHAN_MAKE,
    Cmd::CHAN_SEND,
    Cmd::CHAN_TRY_SEND,
    Cmd::CHAN_RECV,
    Cmd::CHAN_TRY_RECV,
    Cmd::CHAN_CLOSE,
    Cmd::CHAN_DESTROY,
    Cmd::CHAN_OPEN,
    Cmd::REGION_SHARE,
    Cmd::REGION_RELEASE,
    Cmd::SELECT_REGISTER,
    Cmd::CANCEL,
    Cmd::NOTIFY,
    Cmd::CREDIT,
];

fn limits() -> Limits {
    Limits { max_attrs: 10_000, ..Limits::default() }
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => (65_536usize..70_000).prop_map(|n| vec![0xAB; n]),
    ]
}

proptest! {
    #[test]
    fn any_frame_round_trips(
        cmd in any::<u16>(),
        flags in any::<u16>(),
        attrs in proptest::collection::vec((0u16..0x8000, value()), 0..12),
        split in any::<proptest::sample::Index>(),
    ) {
        let mut out = Vec::new();
        let mut f = FrameBuf::begin(&mut out, Cmd(cmd), flags);
        for (t, v) in &attrs {
            f.bytes(Attr(*t), v);
        }
        f.finish(u32::MAX).unwrap();
        // Any prefix is "not yet"; the whole is the frame.
        let cut = split.index(out.len());
        prop_assert!(split_frame(&out[..cut], &limits()).unwrap().is_none());
        let (frame, used) = split_frame(&out, &limits()).unwrap().unwrap();
        prop_assert_eq!(used, out.len());
        prop_assert_eq!((frame.cmd, frame.flags), (Cmd(cmd), flags));
        let got: Vec<(u16, Vec<u8>)> = frame.attrs().map(|(a, v)| (a.0, v.to_vec())).collect();
        let want: Vec<(u16, Vec<u8>)> = attrs.iter().map(|(t, v)| (*t, v.clone())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn typed_attributes_round_trip(u in any::<u32>(), i in any::<i32>(), q in any::<u64>(), t in any::<i64>(), s in "\\PC{0,40}") {
        for cmd in CMDS {
            let mut out = Vec::new();
            let mut f = FrameBuf::begin(&mut out, cmd, 0);
            f.u32(Attr::ABI_MAJOR, u).i32(Attr::RESULT, i).u64(Attr::REQ_ID, q).i64(Attr::TIMEOUT_MS, t).str(Attr::NAME, &s);
            f.bytes(Attr(0x7ff0), b"an attribute nobody knows");
            f.finish(u32::MAX).unwrap();
            let (fr, _) = split_frame(&out, &limits()).unwrap().unwrap();
            prop_assert_eq!(fr.cmd.name() != "unknown", true);
            prop_assert_eq!(fr.u32(Attr::ABI_MAJOR).unwrap(), Some(u));
            prop_assert_eq!(fr.result().unwrap(), i);
            prop_assert_eq!(fr.req_id().unwrap(), q);
            prop_assert_eq!(fr.i64(Attr::TIMEOUT_MS).unwrap(), Some(t));
            prop_assert_eq!(fr.str(Attr::NAME).unwrap(), Some(s.as_str()));
            prop_assert_eq!(fr.get(Attr::ELEMENT), None);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = split_frame(&bytes, &Limits::default());
    }
}

#[test]
fn stats_round_trip_and_skip_unknown_counters() {
    let s = ChannelStats {
        chan_id: 9,
        name: Some("jobs".into()),
        kind: -2,
        capacity: None,
        len: 3,
        sends: 10,
        recvs: 7,
        bytes_sent: 100,
        bytes_recv: 70,
        taken_ns: 12345,
        parked_senders: 4,
        parked_receivers: 2,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut f = FrameBuf::begin(&mut out, Cmd::LIST, 1);
    s.encode(&mut f);
    f.finish(u32::MAX).unwrap();
    let (fr, _) = split_frame(&out, &limits()).unwrap().unwrap();
    let mut value = fr.get(Attr::STATS).unwrap().to_vec();
    assert_eq!(ChannelStats::decode(&value).unwrap(), s);
    // A newer server adds counter 200: still readable.
    value.extend_from_slice(&[0, 200, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(ChannelStats::decode(&value).unwrap(), s);
    value.extend_from_slice(&[0, 201, 0, 9]);
    assert_eq!(ChannelStats::decode(&value).unwrap_err(), ProtoError::Truncated("attribute value"));
}

/// The frames in `fuzz/corpus/frames` (the fuzzer's seeds and finds) decode or fail
/// cleanly, without panicking, on stable.
#[test]
fn fuzz_corpus_replays() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frames");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the corpus is checked in") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        kcoro_ipc::proto::fuzz_frames(&bytes);
        n += 1;
    }
    assert!(n >= 8, "corpus has only {n} inputs");
}
