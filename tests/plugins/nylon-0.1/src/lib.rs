//! A plugin built with the published `nylon-ring` 0.1.4 crate and its `define_plugin!`
//! macro, exactly as a nylon-ring user writes one; `crates/kcoro-host/tests/nylon.rs`
//! loads it in kcoro-host (layout `nylon-0.1`). The entries are in `../nylon-common.rs`.

include!("../../nylon-common.rs");

nylon_ring::define_plugin! {
    init: init,
    shutdown: shutdown,
    entries: {
        "echo" => echo,
        "echo_async" => echo_async,
        "stream" => stream,
        "stream_sync" => stream_sync,
        "bidi" => bidi,
        "state" => state,
        "panic" => panics,
        "error" => error,
        "fail" => fail,
        "forever" => forever,
    },
    stream_handlers: {
        data: on_data,
        close: on_close,
    }
}
