// kcoro_plugin.hpp: a thin C++17 layer over sdk/c/kcoro_plugin.h (build with -Isdk/c).
//
// A plugin registers handlers by name on a kcoro::Plugin and exports it with
// KCORO_EXPORT_PLUGIN. Every call into the plugin runs inside try/catch: an exception
// never crosses the C ABI (that would be undefined behaviour); it becomes ERR.
//
//     static void build(kcoro::Plugin &p) {
//         p.entry("echo", [](const kcoro::Call &c) {
//             c.host.send(c.sid, NR_STATUS_OK, c.payload);
//             return NR_STATUS_OK;
//         });
//     }
//     KCORO_EXPORT_PLUGIN("my-plugin", "1.0.0", build)
//
// The exported info is a KcPluginInfo: a kcoro host attaches its KcHostApi (state,
// try_send) and dispatches by entry id; a version-1 host sees a plain plugin.
#ifndef KCORO_PLUGIN_HPP
#define KCORO_PLUGIN_HPP

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kcoro_plugin.h"

namespace kcoro {

using Status = NrStatus;

inline std::string_view view(NrStr s) {
    return s.ptr ? std::string_view(reinterpret_cast<const char *>(s.ptr), s.len) : std::string_view();
}
inline std::string_view view(NrBytes b) {
    return b.ptr ? std::string_view(reinterpret_cast<const char *>(b.ptr), static_cast<size_t>(b.len))
                 : std::string_view();
}
inline NrBytes bytes(std::string_view s) { return nr_bytes(s.data(), s.size()); }

// The host that initialised the plugin. Copyable, usable from any thread until shutdown.
class Host {
  public:
    Host() = default;
    Host(void *ctx, const NrHostVTable *vtable, const KcHostApi *api) : ctx_(ctx), vt_(vtable), api_(api) {}

    // A reply (unary) or a frame (stream); the host copies `data`.
    void send(uint64_t sid, Status status, std::string_view data) const {
        vt_->send_result(ctx_, sid, status, bytes(data));
    }

    // Whether a kcoro host attached its extension table.
    bool extended() const { return api_ != nullptr; }
    bool has_state() const { return api_ && KC_COVERS(api_->struct_size, KcHostApi, state); }

    // send, but BACKPRESSURE instead of waiting on a full stream (frame not taken).
    // On a version-1 host this is send and returns OK.
    Status try_send(uint64_t sid, Status status, std::string_view data) const {
        if (!api_ || !KC_COVERS(api_->struct_size, KcHostApi, try_send)) {
            send(sid, status, data);
            return NR_STATUS_OK;
        }
        return api_->try_send(ctx_, sid, status, bytes(data));
    }

    // Per-sid state; false / nullopt without the state extension.
    bool set_state(uint64_t sid, std::string_view key, std::string_view value) const {
        if (!has_state()) return false;
        NrBytes stored = api_->state.set_state(ctx_, sid, key_view(key), bytes(value));
        return stored.ptr != nullptr || value.empty();
    }
    std::optional<std::string> get_state(uint64_t sid, std::string_view key) const {
        if (!has_state()) return std::nullopt;
        NrBytes got = api_->state.get_state(ctx_, sid, key_view(key));
        if (!got.ptr) return std::nullopt;
        return std::string(view(got)); // copied: the view dies when the call ends
    }

  private:
    static NrStr key_view(std::string_view k) {
        if (k.size() > UINT32_MAX) throw std::length_error("kcoro: state key too long");
        return NrStr{reinterpret_cast<const uint8_t *>(k.data()), static_cast<uint32_t>(k.size())};
    }

    void *ctx_ = nullptr;
    const NrHostVTable *vt_ = nullptr;
    const KcHostApi *api_ = nullptr;
};

class Plugin;

// One call: everything a handler sees. The views die when the handler returns.
struct Call {
    Host host;
    uint64_t sid;
    const NrRequest *request; // may be null
    std::string_view payload;
    Plugin *plugin;

    // Runs f on a thread the plugin joins in shutdown (see Plugin::spawn).
    void spawn(std::function<void()> f) const;
};

using Handler = std::function<Status(const Call &)>;
using StreamDataHandler = std::function<Status(Host, uint64_t sid, std::string_view data)>;
using StreamCloseHandler = std::function<Status(Host, uint64_t sid)>;

class Plugin {
  public:
    Plugin(std::string name, std::string version) : name_(std::move(name)), version_(std::move(version)) {}
    Plugin(const Plugin &) = delete;
    Plugin &operator=(const Plugin &) = delete;

    // A thread still running here means the host unloaded us without shutdown; detach
    // rather than std::terminate.
    ~Plugin() {
        for (auto &t : running_) t.second.detach();
        for (auto &t : done_) t.join();
    }

    // Registers an entry; its id is the registration order. Only before info().
    Plugin &entry(std::string name, Handler h) {
        if (frozen_) throw std::logic_error("kcoro: entry() after info()");
        entries_.push_back(Entry{std::move(name), std::move(h)});
        return *this;
    }
    Plugin &on_stream_data(StreamDataHandler h) {
        stream_data_ = std::move(h);
        return *this;
    }
    Plugin &on_stream_close(StreamCloseHandler h) {
        stream_close_ = std::move(h);
        return *this;
    }

    // Runs f on a new thread, joined in shutdown, so that no thread of ours runs library
    // code after shutdown returns (the host may dlclose us then). An exception escaping f
    // is swallowed: reply before throwing if the call needs an answer.
    void spawn(std::function<void()> f) {
        reap();
        std::lock_guard<std::mutex> lock(mu_);
        std::thread t([this, f = std::move(f)]() {
            try {
                f();
            } catch (...) {
            }
            finished(std::this_thread::get_id());
        });
        std::thread::id id = t.get_id();
        running_.emplace(id, std::move(t)); // the thread's finished() waits for this lock
    }

    // The info to return from the entry symbol. Freezes the entry table.
    const NrPluginInfo *info() {
        if (!frozen_) {
            names_.reserve(entries_.size());
            for (uint32_t i = 0; i < entries_.size(); i++) {
                const std::string &n = entries_[i].name;
                names_.push_back(NrStr{reinterpret_cast<const uint8_t *>(n.data()), static_cast<uint32_t>(n.size())});
                by_name_.emplace(std::string_view(n), i);
            }
            ext_ = KcPluginExt{static_cast<uint32_t>(sizeof(KcPluginExt)),
                               0,
                               &Plugin::c_attach,
                               names_.empty() ? nullptr : names_.data(),
                               static_cast<uint32_t>(names_.size()),
                               0,
                               &Plugin::c_handle_id,
                               {0, 0, 0, 0}};
            vtable_ = NrPluginVTable{&Plugin::c_init, &Plugin::c_handle, &Plugin::c_shutdown,
                                     &Plugin::c_stream_data, &Plugin::c_stream_close};
            info_ = KcPluginInfo{NrPluginInfo{NR_ABI_VERSION, static_cast<uint32_t>(sizeof(KcPluginInfo)),
                                              str(name_), str(version_), this, &vtable_},
                                 &ext_};
            frozen_ = true;
        }
        return &info_.base;
    }

    Host host() const {
        return Host(host_ctx_.load(std::memory_order_acquire), host_vt_.load(std::memory_order_acquire),
                    api_.load(std::memory_order_acquire));
    }

  private:
    struct Entry {
        std::string name;
        Handler handler;
    };

    static NrStr str(const std::string &s) {
        return NrStr{reinterpret_cast<const uint8_t *>(s.data()), static_cast<uint32_t>(s.size())};
    }
    static Plugin *self(void *ctx) { return static_cast<Plugin *>(ctx); }
    bool live() const { return host_vt_.load(std::memory_order_acquire) != nullptr; }

    Status dispatch(uint32_t id, uint64_t sid, const NrRequest *req, NrBytes payload) {
        if (!live()) return NR_STATUS_INVALID;
        if (id >= entries_.size()) return NR_STATUS_UNSUPPORTED;
        Call call{host(), sid, req, view(payload), this};
        return entries_[id].handler(call);
    }

    void finished(std::thread::id id) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = running_.find(id);
        if (it != running_.end()) {
            try {
                done_.push_back(std::move(it->second));
            } catch (...) {
                it->second.detach(); // out of memory: detach instead of join
            }
            running_.erase(it);
        }
        if (running_.empty()) idle_.notify_all();
    }

    void reap() {
        std::vector<std::thread> done;
        {
            std::lock_guard<std::mutex> lock(mu_);
            done.swap(done_);
        }
        for (auto &t : done) t.join(); // immediate: each is past finished()
    }

    void join_all() {
        {
            std::unique_lock<std::mutex> lock(mu_);
            idle_.wait(lock, [this] { return running_.empty(); });
        }
        reap();
    }

    // ---- the C ABI; nothing below lets an exception out ----

    static NrStatus c_init(void *ctx, void *host_ctx, const NrHostVTable *vt) noexcept {
        if (!ctx || !vt || !vt->send_result) return NR_STATUS_INVALID;
        Plugin *p = self(ctx);
        p->api_.store(nullptr, std::memory_order_release);
        p->host_ctx_.store(host_ctx, std::memory_order_release);
        p->host_vt_.store(vt, std::memory_order_release);
        return NR_STATUS_OK;
    }

    static NrStatus c_attach(void *ctx, void *, const KcHostApi *api) noexcept {
        if (!ctx || !api) return NR_STATUS_INVALID;
        self(ctx)->api_.store(api, std::memory_order_release);
        return NR_STATUS_OK;
    }

    static NrStatus c_handle(void *ctx, NrStr entry, uint64_t sid, const NrRequest *req, NrBytes payload) noexcept {
        if (!ctx) return NR_STATUS_INVALID;
        Plugin *p = self(ctx);
        auto it = p->by_name_.find(view(entry));
        if (it == p->by_name_.end()) return NR_STATUS_UNSUPPORTED;
        return c_handle_id(ctx, it->second, sid, req, payload);
    }

    static NrStatus c_handle_id(void *ctx, uint32_t id, uint64_t sid, const NrRequest *req,
                                NrBytes payload) noexcept {
        if (!ctx) return NR_STATUS_INVALID;
        try {
            return self(ctx)->dispatch(id, sid, req, payload);
        } catch (...) {
            return NR_STATUS_ERR;
        }
    }

    static void c_shutdown(void *ctx) noexcept {
        if (!ctx) return;
        Plugin *p = self(ctx);
        try {
            p->join_all();
        } catch (...) {
        }
        p->host_vt_.store(nullptr, std::memory_order_release);
        p->api_.store(nullptr, std::memory_order_release);
        p->host_ctx_.store(nullptr, std::memory_order_release);
    }

    static NrStatus c_stream_data(void *ctx, uint64_t sid, NrBytes data) noexcept {
        if (!ctx) return NR_STATUS_INVALID;
        Plugin *p = self(ctx);
        if (!p->live()) return NR_STATUS_INVALID;
        if (!p->stream_data_) return NR_STATUS_UNSUPPORTED;
        try {
            return p->stream_data_(p->host(), sid, view(data));
        } catch (...) {
            return NR_STATUS_ERR;
        }
    }

    static NrStatus c_stream_close(void *ctx, uint64_t sid) noexcept {
        if (!ctx) return NR_STATUS_INVALID;
        Plugin *p = self(ctx);
        if (!p->live()) return NR_STATUS_INVALID;
        if (!p->stream_close_) return NR_STATUS_UNSUPPORTED;
        try {
            return p->stream_close_(p->host(), sid);
        } catch (...) {
            return NR_STATUS_ERR;
        }
    }

    std::string name_, version_;
    std::vector<Entry> entries_;
    std::vector<NrStr> names_;
    std::unordered_map<std::string_view, uint32_t> by_name_;
    StreamDataHandler stream_data_;
    StreamCloseHandler stream_close_;
    bool frozen_ = false;

    NrPluginVTable vtable_{};
    KcPluginExt ext_{};
    KcPluginInfo info_{};

    std::atomic<void *> host_ctx_{nullptr};
    std::atomic<const NrHostVTable *> host_vt_{nullptr};
    std::atomic<const KcHostApi *> api_{nullptr};

    std::mutex mu_;
    std::condition_variable idle_;
    std::map<std::thread::id, std::thread> running_;
    std::vector<std::thread> done_;
};

inline void Call::spawn(std::function<void()> f) const { plugin->spawn(std::move(f)); }

// Builds the plugin once (build(plugin) registers its entries) and exports it as
// nylon_ring_get_plugin_v1. A build that throws makes the symbol return NULL, which the
// host refuses.
#define KCORO_EXPORT_PLUGIN(NAME, VERSION, BUILD)                                  \
    extern "C" NR_EXPORT const NrPluginInfo *nylon_ring_get_plugin_v1(void) {      \
        static const NrPluginInfo *info = []() noexcept -> const NrPluginInfo * {  \
            try {                                                                  \
                static ::kcoro::Plugin plugin((NAME), (VERSION));                  \
                BUILD(plugin);                                                     \
                return plugin.info();                                              \
            } catch (...) {                                                        \
                return nullptr;                                                    \
            }                                                                      \
        }();                                                                       \
        return info;                                                               \
    }

} // namespace kcoro

#endif // KCORO_PLUGIN_HPP
