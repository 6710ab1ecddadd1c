//! The plugin of `kcoro-bench plugin`, nylon-ring side: the same entries and behaviour
//! as `bench/plugins/kcoro`, written the way nylon-ring 0.2.2's README teaches — a
//! [`Plugin`] trait impl exported with [`export_plugin!`], replies as [`Reply`] values
//! and stream frames through [`Session::send_frame`] / [`Session::end_stream`]. Every
//! reply is sent synchronously, inside the call that asked for it:
//!
//! | entry     | behaviour                                                                  |
//! |-----------|----------------------------------------------------------------------------|
//! | `echo`    | `Reply::Bytes(payload.to_vec())`                                           |
//! | `noop`    | `Reply::None` (fire-and-forget)                                            |
//! | `stream5` | 5 × `send_frame(b"frame")`, `end_stream(empty)`, all inside `on_call`      |
//! | `bidi`    | `on_call` replies nothing; `on_stream_data` echoes each chunk as a frame; |
//! |           | `on_stream_close` sends `StreamEnd`                                        |
//!
//! nylon-ring 0.2.2 has no borrowed reply: a reply's bytes cross as an owned `NrVec`
//! made from a `Vec` of this library (the host copies it and frees ours), so `echo`,
//! `stream5` and `bidi` allocate here where the kcoro plugin lends its bytes.

use nylon_ring::plugin::send_result;
use nylon_ring::{NrStatus, NrVec, Plugin, Reply, Session, export_plugin};

/// Frames `stream5` sends before its `StreamEnd`.
const STREAM_FRAMES: usize = 5;

/// Dispatch ids: indexes into [`Plugin::ENTRIES`]. `on_call` matches on the id rather
/// than the name, the cheaper of the two ways [`Session`] offers.
const ECHO: u32 = 0;
const NOOP: u32 = 1;
const STREAM5: u32 = 2;
const BIDI: u32 = 3;

struct Bench;

impl Plugin for Bench {
    type Ctx = ();
    const ENTRIES: &'static [&'static str] = &["echo", "noop", "stream5", "bidi"];

    fn new() -> Self {
        Bench
    }

    fn new_ctx(&self) -> Self::Ctx {}

    fn on_call(&self, session: &mut Session<'_>, _ctx: &mut Self::Ctx) -> Reply {
        match session.entry_id() {
            ECHO => Reply::Bytes(session.payload().to_vec()),
            NOOP | BIDI => Reply::None,
            STREAM5 => {
                for _ in 0..STREAM_FRAMES {
                    let status = session.send_frame(b"frame".to_vec());
                    if status != NrStatus::Ok {
                        return Reply::Fail(status);
                    }
                }
                match session.end_stream(Vec::new()) {
                    NrStatus::Ok => Reply::None,
                    status => Reply::Fail(status),
                }
            }
            _ => Reply::Fail(NrStatus::Invalid),
        }
    }

    fn on_stream_data(&self, sid: u64, data: &[u8]) -> NrStatus {
        send_result(sid, NrStatus::Ok, NrVec::from_vec(data.to_vec()))
    }

    fn on_stream_close(&self, sid: u64) -> NrStatus {
        send_result(sid, NrStatus::StreamEnd, NrVec::from_vec(Vec::new()))
    }
}

export_plugin!(Bench);
