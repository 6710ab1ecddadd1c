//! The plugin of `kcoro-bench plugin`, kcoro side: built with `kcoro_abi::define_plugin!`
//! and loaded by `kcoro-host`. `bench/plugins/nylon` is the same plugin for
//! `nylon-ring-host`. Every reply is sent synchronously, inside the call that asked for it
//! (the fast path both hosts have):
//!
//! | entry     | behaviour                                                            |
//! |-----------|----------------------------------------------------------------------|
//! | `echo`    | replies `Ok` + the payload                                           |
//! | `noop`    | replies nothing, returns `Ok` (fire-and-forget)                      |
//! | `stream5` | 5 frames `Ok` + `frame`, then `StreamEnd`, all inside `handle`       |
//! | `bidi`    | `handle` replies nothing; each `stream_data` is echoed as one frame; |
//! |           | `stream_close` sends `StreamEnd`                                     |

use kcoro_abi::NrStatus;
use kcoro_abi::plugin::Host;

/// Frames `stream5` sends before its `StreamEnd`.
const STREAM_FRAMES: usize = 5;

fn echo(host: Host, sid: u64, payload: &[u8]) -> NrStatus {
    host.send(sid, NrStatus::Ok, payload);
    NrStatus::Ok
}

fn noop(_host: Host, _sid: u64, _payload: &[u8]) -> NrStatus {
    NrStatus::Ok
}

fn stream5(host: Host, sid: u64, _payload: &[u8]) -> NrStatus {
    for _ in 0..STREAM_FRAMES {
        host.send(sid, NrStatus::Ok, b"frame");
    }
    host.send(sid, NrStatus::StreamEnd, &[]);
    NrStatus::Ok
}

fn bidi(_host: Host, _sid: u64, _payload: &[u8]) -> NrStatus {
    NrStatus::Ok
}

fn on_data(host: Host, sid: u64, data: &[u8]) -> NrStatus {
    host.send(sid, NrStatus::Ok, data);
    NrStatus::Ok
}

fn on_close(host: Host, sid: u64) -> NrStatus {
    host.send(sid, NrStatus::StreamEnd, &[]);
    NrStatus::Ok
}

kcoro_abi::define_plugin! {
    name: "kcoro-bench-plugin",
    version: "1.0.0",
    entries: {},
    raw_entries: {
        "echo" => echo,
        "noop" => noop,
        "stream5" => stream5,
        "bidi" => bidi,
    },
    stream_handlers: { data: on_data, close: on_close },
}
