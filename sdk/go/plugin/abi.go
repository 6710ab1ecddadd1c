package plugin

/*
#cgo noescape kc_try_send
#cgo noescape kc_set_state
#cgo noescape kc_get_state

#include <stdlib.h>
#include <string.h>
#include "kcoro_abi.h"

// The //export functions of export.go, declared as cgo generates them.
extern NrStatus kcoro_go_init(void*, void*, NrHostVTable*);
extern NrStatus kcoro_go_handle(void*, NrStr, uint64_t, NrRequest*, NrBytes);
extern void kcoro_go_shutdown(void*);
extern NrStatus kcoro_go_stream_data(void*, uint64_t, NrBytes);
extern NrStatus kcoro_go_stream_close(void*, uint64_t);
extern NrStatus kcoro_go_attach(void*, void*, KcHostApi*);
extern NrStatus kcoro_go_handle_id(void*, uint32_t, uint64_t, NrRequest*, NrBytes);

static const NrPluginVTable kc_vtable = {
	(NrInitFn)kcoro_go_init,
	(NrHandleFn)kcoro_go_handle,
	(NrShutdownFn)kcoro_go_shutdown,
	(NrStreamDataFn)kcoro_go_stream_data,
	(NrStreamCloseFn)kcoro_go_stream_close,
};

// A NUL-terminated malloc'd copy, never freed; NULL only when out of memory.
static NrStr kc_dup(const char *p, size_t n) {
	NrStr s = { NULL, 0 };
	char *d = malloc(n + 1);
	if (d == NULL) return s;
	if (n) memcpy(d, p, n);
	d[n] = 0;
	s.ptr = (const uint8_t *)d;
	s.len = (uint32_t)n;
	return s;
}

// The extended info, its extension table and entry names, allocated once and never freed:
// the host may read them until the process exits.
static KcPluginInfo *kc_new_info(const char *name, size_t name_len, const char *ver,
                                 size_t ver_len, uint32_t n) {
	KcPluginInfo *info = calloc(1, sizeof *info);
	KcPluginExt *ext = calloc(1, sizeof *ext);
	NrStr *names = calloc(n ? n : 1, sizeof *names);
	if (!info || !ext || !names) {
		free(info);
		free(ext);
		free(names);
		return NULL;
	}
	info->base.abi_version = NR_ABI_VERSION;
	info->base.struct_size = (uint32_t)sizeof(KcPluginInfo);
	info->base.name = kc_dup(name, name_len);
	info->base.version = kc_dup(ver, ver_len);
	info->base.plugin_ctx = info;
	info->base.vtable = &kc_vtable;
	ext->struct_size = (uint32_t)sizeof(KcPluginExt);
	ext->attach = (KcAttachFn)kcoro_go_attach;
	ext->entries = names;
	ext->entries_len = n;
	ext->handle_id = (KcHandleIdFn)kcoro_go_handle_id;
	info->ext = ext;
	return info;
}

static void kc_set_entry(KcPluginInfo *info, uint32_t i, const char *p, size_t n) {
	((NrStr *)info->ext->entries)[i] = kc_dup(p, n);
}

// Go cannot call C function pointers: these trampolines do.
// The pointers are passed as integers so that cgo's pointer checks (a good part of the
// cost of this call) are skipped: ctx and vt are C memory, and for p Reply.Send keeps the
// memory alive while the runtime never moves a goroutine's stack while it is in C.
static void kc_send(uintptr_t ctx, uintptr_t vt, uint64_t sid, NrStatus st, uintptr_t p,
                    uint64_t n) {
	NrBytes b = { (const uint8_t *)p, n };
	((const NrHostVTable *)vt)->send_result((void *)ctx, sid, st, b);
}

static NrStatus kc_try_send(void *ctx, const KcHostApi *api, uint64_t sid, NrStatus st,
                            const void *p, uint64_t n) {
	NrBytes b = { (const uint8_t *)p, n };
	return api->try_send(ctx, sid, st, b);
}

static int kc_set_state(void *ctx, const KcHostApi *api, uint64_t sid, const void *k,
                        uint32_t kn, const void *v, uint64_t vn) {
	NrStr key = { (const uint8_t *)k, kn };
	NrBytes val = { (const uint8_t *)v, vn };
	return api->state.set_state(ctx, sid, key, val).ptr != NULL;
}

static NrBytes kc_get_state(void *ctx, const KcHostApi *api, uint64_t sid, const void *k,
                            uint32_t kn) {
	NrStr key = { (const uint8_t *)k, kn };
	return api->state.get_state(ctx, sid, key);
}
*/
import "C"

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The host, between init and shutdown.
type hostState struct {
	ctx unsafe.Pointer
	vt  *C.NrHostVTable
	api *C.KcHostApi // nil unless attached
}

var (
	host atomic.Pointer[hostState]
	// hostMu orders guarded replies (from goroutines) against init, attach and shutdown:
	// once shutdown has returned, no guarded reply touches the host's pointers.
	hostMu sync.RWMutex
	// info is the table nylon_ring_get_plugin_v1 returns; C memory, never freed.
	info *C.KcPluginInfo
)

// Where fields of KcHostApi end, for its struct_size checks (pinned by kcoro_abi.h).
const (
	apiStateEnd   = 24 // offsetof(KcHostApi, state) + sizeof(NrHostExt)
	apiTrySendEnd = 40 // offsetof(KcHostApi, try_send) + 8
)

func setHost(h *hostState) {
	hostMu.Lock()
	host.Store(h)
	hostMu.Unlock()
}

// publish builds the C tables for p.
func publish(p *Plugin) {
	cstr := func(s string) (*C.char, C.size_t) {
		return (*C.char)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
	}
	if uint64(len(p.name)) > math.MaxUint32 || uint64(len(p.version)) > math.MaxUint32 {
		panic("kcoro/plugin: name or version longer than 4 GiB")
	}
	n, nl := cstr(p.name)
	v, vl := cstr(p.version)
	i := C.kc_new_info(n, nl, v, vl, C.uint32_t(len(p.entries)))
	if i == nil {
		panic("kcoro/plugin: out of memory")
	}
	for id, e := range p.entries {
		s, sl := cstr(e.name)
		C.kc_set_entry(i, C.uint32_t(id), s, sl)
	}
	info = i
}

// Reply sends the answer to one call (sid). It is a small value: copy it freely.
//
// A Reply handed to a [Plugin.Handle] goroutine may be used until shutdown; after
// shutdown its methods do nothing (and report failure). A Reply handed to a HandleSync,
// stream-data or stream-close callback is meant for use during that callback; to reply
// later from another goroutine, take [Reply.Detached] first.
type Reply struct {
	sid     uint64
	guarded bool
}

// SID returns the id of the call or stream this Reply answers.
func (r Reply) SID() uint64 { return r.sid }

// Detached returns a copy of r safe to use from any goroutine after the callback that
// received r has returned (its methods synchronise with shutdown).
func (r Reply) Detached() Reply { return Reply{sid: r.sid, guarded: true} }

func (r Reply) lock() *hostState {
	if r.guarded {
		hostMu.RLock()
	}
	return host.Load()
}

func (r Reply) unlock() {
	if r.guarded {
		hostMu.RUnlock()
	}
}

func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

// Send sends a reply (unary call) or a frame (stream); the host copies data before Send
// returns. After a terminal status the host ignores further sends for the sid. Send may
// wait while the host's stream buffer is full; see [Reply.TrySend].
func (r Reply) Send(status Status, data []byte) {
	if r.guarded {
		hostMu.RLock()
		defer hostMu.RUnlock()
	}
	if h := host.Load(); h != nil {
		send(h, r.sid, status, data)
	}
}

// send calls the host's send_result.
func send(h *hostState, sid uint64, status Status, data []byte) {
	C.kc_send(C.uintptr_t(uintptr(h.ctx)), C.uintptr_t(uintptr(unsafe.Pointer(h.vt))), C.uint64_t(sid),
		C.NrStatus(status), C.uintptr_t(uintptr(bytesPtr(data))), C.uint64_t(len(data)))
	runtime.KeepAlive(data) // passed as an integer: keep the memory alive across the call
}

// TrySend is Send that returns StatusBackpressure instead of waiting when the stream is
// full (the frame was not taken), or StatusInvalid for an unknown or finished sid. On a
// host without kcoro's extensions it is Send and returns StatusOk.
func (r Reply) TrySend(status Status, data []byte) Status {
	h := r.lock()
	defer r.unlock()
	switch {
	case h == nil:
		return StatusInvalid
	case h.api != nil && h.api.struct_size >= apiTrySendEnd:
		return Status(C.kc_try_send(h.ctx, h.api, C.uint64_t(r.sid), C.NrStatus(status), bytesPtr(data),
			C.uint64_t(len(data))))
	default:
		send(h, r.sid, status, data)
		return StatusOk
	}
}

func stateAPI(h *hostState) bool {
	return h != nil && h.api != nil && h.api.struct_size >= apiStateEnd
}

// HasState reports whether the host attached kcoro's per-sid state extension.
func (r Reply) HasState() bool {
	h := r.lock()
	defer r.unlock()
	return stateAPI(h)
}

// SetState stores a copy of v under key for this sid, until the call or stream ends.
// False when the host has no state extension or the sid is unknown.
func (r Reply) SetState(key string, v []byte) bool {
	h := r.lock()
	defer r.unlock()
	if !stateAPI(h) || uint64(len(key)) > math.MaxUint32 {
		return false
	}
	stored := C.kc_set_state(h.ctx, h.api, C.uint64_t(r.sid), unsafe.Pointer(unsafe.StringData(key)),
		C.uint32_t(len(key)), bytesPtr(v), C.uint64_t(len(v)))
	return stored != 0 || len(v) == 0
}

// GetState returns a copy of the value stored under key for this sid.
func (r Reply) GetState(key string) ([]byte, bool) {
	h := r.lock()
	defer r.unlock()
	if !stateAPI(h) || uint64(len(key)) > math.MaxUint32 {
		return nil, false
	}
	view := C.kc_get_state(h.ctx, h.api, C.uint64_t(r.sid), unsafe.Pointer(unsafe.StringData(key)),
		C.uint32_t(len(key)))
	if view.ptr == nil {
		return nil, false
	}
	return append([]byte{}, bytesView(view)...), true
}
