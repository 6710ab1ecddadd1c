// echo.cpp: "echo-cpp", the same entry contract as sdk/c/examples/echo.c, on the C++ layer.
// Here `panic` throws, and the wrapper turns the exception into ERR from handle.
//
// Build:
//   c++ -std=c++17 -O2 -fPIC -shared -Isdk/c -Isdk/cpp -o libecho_cpp.so sdk/cpp/examples/echo.cpp -lpthread
#include <charconv>
#include <stdexcept>
#include <string>

#include "kcoro_plugin.hpp"

namespace {

using kcoro::Call;
using kcoro::Status;

// The frame count: decimal digits, empty means 5.
bool parse_count(std::string_view s, uint64_t &n) {
    if (s.empty()) {
        n = 5;
        return true;
    }
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    return ec == std::errc() && end == s.data() + s.size();
}

Status echo(const Call &c) {
    c.host.send(c.sid, NR_STATUS_OK, c.payload);
    return NR_STATUS_OK;
}

Status echo_async(const Call &c) {
    // The payload view dies when handle returns: the thread gets a copy.
    c.spawn([host = c.host, sid = c.sid, data = std::string(c.payload)] { host.send(sid, NR_STATUS_OK, data); });
    return NR_STATUS_OK;
}

Status stream(const Call &c) {
    uint64_t frames = 0;
    if (!parse_count(c.payload, frames)) return NR_STATUS_INVALID;
    c.spawn([host = c.host, sid = c.sid, frames] {
        for (uint64_t i = 1; i <= frames; i++) host.send(sid, NR_STATUS_OK, "frame-" + std::to_string(i));
        host.send(sid, NR_STATUS_STREAM_END, {});
    });
    return NR_STATUS_OK;
}

// The stream stays open; the host feeds it through stream_data / stream_close below.
Status bidi(const Call &) { return NR_STATUS_OK; }

Status state(const Call &c) {
    if (!c.host.has_state()) {
        c.host.send(c.sid, NR_STATUS_UNSUPPORTED, {});
        return NR_STATUS_OK;
    }
    c.host.set_state(c.sid, "key", c.payload);
    c.host.send(c.sid, NR_STATUS_OK, c.host.get_state(c.sid, "key").value_or(std::string()));
    return NR_STATUS_OK;
}

Status panic(const Call &) { throw std::runtime_error("panic entry"); }

Status error(const Call &c) {
    c.host.send(c.sid, NR_STATUS_ERR, "boom");
    return NR_STATUS_OK;
}

void build(kcoro::Plugin &p) {
    p.entry("echo", echo)
        .entry("echo_async", echo_async)
        .entry("stream", stream)
        .entry("bidi", bidi)
        .entry("state", state)
        .entry("panic", panic)
        .entry("error", error)
        .on_stream_data([](kcoro::Host host, uint64_t sid, std::string_view data) {
            host.send(sid, NR_STATUS_OK, data);
            return NR_STATUS_OK;
        })
        .on_stream_close([](kcoro::Host host, uint64_t sid) {
            host.send(sid, NR_STATUS_STREAM_END, {});
            return NR_STATUS_OK;
        });
}

} // namespace

KCORO_EXPORT_PLUGIN("echo-cpp", "1.0.0", build)
