//! The example plugin in Rust. Every SDK's example implements the same entries, and the
//! host's tests run one battery against each:
//!
//! | entry | reply |
//! |---|---|
//! | `echo` | `Ok` + the payload, inside `handle` |
//! | `echo_async` | `Ok` + the payload, from another thread |
//! | `echo_owned` | `Ok` + the payload as an owned buffer (zero-copy on a kcoro host) |
//! | `stream` | N frames `frame-1`..`frame-N` (N = payload, default 5), then `StreamEnd` |
//! | `bidi` | echoes each `stream_data` as a frame; `StreamEnd` on `stream_close` |
//! | `state` | stores the payload under `key`, reads it back, replies with it |
//! | `panic` | panics: the call ends `Err`, the host lives |
//! | `error` | `Err` + `boom` |
//! | `describe` | the request itself as frames: `METHOD PATH?QUERY`, then `K=V` per header, then `StreamEnd` |

use kcoro_abi::NrStatus;
use kcoro_abi::plugin::{Host, Request};

fn echo(host: Host, sid: u64, _req: &Request<'_>, payload: &[u8]) -> NrStatus {
    host.send(sid, NrStatus::Ok, payload);
    NrStatus::Ok
}

fn echo_async(host: Host, sid: u64, _req: &Request<'_>, payload: &[u8]) -> NrStatus {
    let payload = payload.to_vec();
    std::thread::spawn(move || host.send(sid, NrStatus::Ok, &payload));
    NrStatus::Ok
}

fn echo_owned(host: Host, sid: u64, payload: &[u8]) -> NrStatus {
    match host.send_owned(sid, NrStatus::Ok, payload.to_vec()) {
        Ok(_) => NrStatus::Ok,
        Err(_) => NrStatus::Err,
    }
}

/// `N` from the payload; 5 when empty, `None` when not a number.
fn frame_count(payload: &[u8]) -> Option<u32> {
    if payload.is_empty() {
        return Some(5);
    }
    std::str::from_utf8(payload).ok()?.trim().parse().ok()
}

fn stream(host: Host, sid: u64, payload: &[u8]) -> NrStatus {
    let Some(n) = frame_count(payload) else { return NrStatus::Invalid };
    std::thread::spawn(move || {
        for i in 1..=n {
            host.send(sid, NrStatus::Ok, format!("frame-{i}").as_bytes());
        }
        host.send(sid, NrStatus::StreamEnd, &[]);
    });
    NrStatus::Ok
}

/// The synchronous form of `stream`: every frame from inside `handle`.
fn stream_sync(host: Host, sid: u64, payload: &[u8]) -> NrStatus {
    let Some(n) = frame_count(payload) else { return NrStatus::Invalid };
    for i in 1..=n {
        host.send(sid, NrStatus::Ok, format!("frame-{i}").as_bytes());
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

fn state(host: Host, sid: u64, payload: &[u8]) -> NrStatus {
    if !host.set_state(sid, "key", payload) {
        host.send(sid, NrStatus::Unsupported, &[]);
        return NrStatus::Ok;
    }
    match host.get_state(sid, "key") {
        Some(v) => host.send(sid, NrStatus::Ok, &v),
        None => host.send(sid, NrStatus::Err, b"state lost"),
    }
    NrStatus::Ok
}

fn describe(host: Host, sid: u64, req: &Request<'_>, _payload: &[u8]) -> NrStatus {
    host.send(sid, NrStatus::Ok, format!("{} {}?{}", req.method(), req.path(), req.query()).as_bytes());
    for (k, v) in req.headers() {
        host.send(sid, NrStatus::Ok, format!("{k}={v}").as_bytes());
    }
    host.send(sid, NrStatus::StreamEnd, &[]);
    NrStatus::Ok
}

fn panics(_host: Host, _sid: u64, _payload: &[u8]) -> NrStatus {
    panic!("the panic entry panics, as asked");
}

fn error(host: Host, sid: u64, _payload: &[u8]) -> NrStatus {
    host.send(sid, NrStatus::Err, b"boom");
    NrStatus::Ok
}

kcoro_abi::define_plugin! {
    name: "echo-rust",
    version: "1.0.0",
    entries: {
        "echo" => echo,
        "echo_async" => echo_async,
        "describe" => describe,
    },
    raw_entries: {
        "echo_owned" => echo_owned,
        "stream" => stream,
        "stream_sync" => stream_sync,
        "bidi" => bidi,
        "state" => state,
        "panic" => panics,
        "error" => error,
    },
    stream_handlers: { data: on_data, close: on_close },
}
