// Package testhost is a fake kcoro host in C for the plugin package's tests: it calls a
// plugin through the C ABI exactly as a real host does (function pointers taken from the
// info nylon_ring_get_plugin_v1 returns), records every frame the plugin sends, and keeps
// a small per-sid state map for the KcHostApi extension.
//
// Its C structs are written out independently of plugin/kcoro_abi.h, so the tests also
// cross-check the SDK's declarations.
package testhost

/*
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const uint8_t *ptr; uint32_t len; } TStr;
typedef struct { const uint8_t *ptr; uint64_t len; } TBytes;
typedef struct { TStr key, value; } THeader;
typedef struct {
	TStr path, method, query;
	const THeader *headers;
	uint32_t headers_len, r0;
	uint64_t r1;
} TRequest;
typedef struct { void (*send_result)(void *, uint64_t, uint32_t, TBytes); } THostVT;
typedef struct {
	uint32_t (*init)(void *, void *, const THostVT *);
	uint32_t (*handle)(void *, TStr, uint64_t, const TRequest *, TBytes);
	void (*shutdown)(void *);
	uint32_t (*stream_data)(void *, uint64_t, TBytes);
	uint32_t (*stream_close)(void *, uint64_t);
} TPluginVT;
typedef struct {
	uint32_t abi_version, struct_size;
	TStr name, version;
	void *plugin_ctx;
	const TPluginVT *vtable;
} TInfo;
typedef struct THostApi THostApi;
typedef struct {
	uint32_t struct_size, flags;
	uint32_t (*attach)(void *, void *, const THostApi *);
	const TStr *entries;
	uint32_t entries_len, r0;
	uint32_t (*handle_id)(void *, uint32_t, uint64_t, const TRequest *, TBytes);
	uint64_t r[4];
} TExt;
typedef struct { TInfo base; const TExt *ext; } TKcInfo;
struct THostApi {
	uint32_t struct_size, flags;
	TBytes (*set_state)(void *, uint64_t, TStr, TBytes);
	TBytes (*get_state)(void *, uint64_t, TStr);
	uint32_t (*send_owned)(void *, uint64_t, uint32_t, TBytes, void (*)(void *), void *);
	uint32_t (*try_send)(void *, uint64_t, uint32_t, TBytes);
	uint64_t r[4];
};
_Static_assert(sizeof(TRequest) == 72 && sizeof(TInfo) == 56 && sizeof(TKcInfo) == 64, "layout");
_Static_assert(sizeof(TExt) == 72 && sizeof(THostApi) == 72, "layout");

// ---- frames ----
typedef struct { uint64_t sid; uint32_t status; uint8_t *data; uint64_t len; } TFrame;
static pthread_mutex_t th_mu = PTHREAD_MUTEX_INITIALIZER;
static TFrame *th_frames;
static size_t th_n, th_cap;
static int th_count_only;
static uint64_t th_counted;
static int th_token; // host_ctx
static int th_bad_ctx;
static uint32_t th_try_answer; // what try_send answers (0: take the frame)

static void th_record(void *ctx, uint64_t sid, uint32_t st, TBytes p) {
	if (ctx != &th_token) __atomic_store_n(&th_bad_ctx, 1, __ATOMIC_RELAXED);
	if (th_count_only) { __atomic_fetch_add(&th_counted, 1, __ATOMIC_RELAXED); return; }
	uint8_t *copy = malloc(p.len ? p.len : 1);
	if (p.len) memcpy(copy, p.ptr, p.len);
	pthread_mutex_lock(&th_mu);
	if (th_n == th_cap) {
		th_cap = th_cap ? th_cap * 2 : 256;
		th_frames = realloc(th_frames, th_cap * sizeof *th_frames);
	}
	th_frames[th_n++] = (TFrame){ sid, st, copy, p.len };
	pthread_mutex_unlock(&th_mu);
}
static const THostVT th_vt = { th_record };

// ---- state ----
typedef struct { uint64_t sid; char *key; uint32_t klen; uint8_t *val; uint64_t len; } TSlot;
static TSlot th_slots[256];
static size_t th_nslots;
static TBytes th_set_state(void *ctx, uint64_t sid, TStr key, TBytes v) {
	TBytes out = { NULL, 0 };
	pthread_mutex_lock(&th_mu);
	TSlot *s = NULL;
	for (size_t i = 0; i < th_nslots; i++)
		if (th_slots[i].sid == sid && th_slots[i].klen == key.len && !memcmp(th_slots[i].key, key.ptr, key.len))
			s = &th_slots[i];
	if (!s && th_nslots < 256) {
		s = &th_slots[th_nslots++];
		s->sid = sid; s->klen = key.len; s->key = malloc(key.len + 1); memcpy(s->key, key.ptr, key.len);
		s->val = NULL;
	}
	if (s) {
		free(s->val);
		s->val = malloc(v.len + 1); memcpy(s->val, v.ptr, v.len); s->len = v.len;
		out.ptr = s->val; out.len = s->len;
	}
	pthread_mutex_unlock(&th_mu);
	return out;
}
static TBytes th_get_state(void *ctx, uint64_t sid, TStr key) {
	TBytes out = { NULL, 0 };
	pthread_mutex_lock(&th_mu);
	for (size_t i = 0; i < th_nslots; i++)
		if (th_slots[i].sid == sid && th_slots[i].klen == key.len && !memcmp(th_slots[i].key, key.ptr, key.len)) {
			out.ptr = th_slots[i].val; out.len = th_slots[i].len;
		}
	pthread_mutex_unlock(&th_mu);
	return out;
}
static uint32_t th_send_owned(void *c, uint64_t s, uint32_t st, TBytes p, void (*rel)(void *), void *rc) {
	th_record(c, s, st, p);
	if (rel) rel(rc);
	return 0;
}
static uint32_t th_try_send(void *c, uint64_t s, uint32_t st, TBytes p) {
	uint32_t a = __atomic_load_n(&th_try_answer, __ATOMIC_RELAXED);
	if (a == 0) th_record(c, s, st, p);
	return a;
}
static const THostApi th_api = { sizeof(THostApi), 0, th_set_state, th_get_state, th_send_owned, th_try_send, {0} };

static void th_set_try_answer(uint32_t a) { __atomic_store_n(&th_try_answer, a, __ATOMIC_RELAXED); }
static int th_get_bad_ctx(void) { return __atomic_load_n(&th_bad_ctx, __ATOMIC_RELAXED); }

// ---- calls into the plugin ----
static const TInfo *th_info(void *info) { return (const TInfo *)info; }
static uint32_t th_init(void *info) { return th_info(info)->vtable->init(th_info(info)->plugin_ctx, &th_token, &th_vt); }
static uint32_t th_init_null(void *info) { return th_info(info)->vtable->init(th_info(info)->plugin_ctx, &th_token, NULL); }
static uint32_t th_attach(void *info) {
	const TExt *ext = ((const TKcInfo *)info)->ext;
	return ext->attach(th_info(info)->plugin_ctx, &th_token, &th_api);
}
static void th_shutdown(void *info) { th_info(info)->vtable->shutdown(th_info(info)->plugin_ctx); }

static TStr th_str(const char *p, size_t n) { TStr s = { (const uint8_t *)p, (uint32_t)n }; return s; }

// A request built from Go strings copied into C memory by the caller.
static uint32_t th_handle(void *info, const char *e, size_t en, uint64_t sid, const TRequest *req,
                          const char *p, size_t pn) {
	TBytes b = { (const uint8_t *)p, pn };
	return th_info(info)->vtable->handle(th_info(info)->plugin_ctx, th_str(e, en), sid, req, b);
}
static uint32_t th_handle_id(void *info, uint32_t id, uint64_t sid, const TRequest *req, const char *p, size_t pn) {
	TBytes b = { (const uint8_t *)p, pn };
	const TExt *ext = ((const TKcInfo *)info)->ext;
	return ext->handle_id(th_info(info)->plugin_ctx, id, sid, req, b);
}
static uint32_t th_stream_data(void *info, uint64_t sid, const char *p, size_t pn) {
	TBytes b = { (const uint8_t *)p, pn };
	return th_info(info)->vtable->stream_data(th_info(info)->plugin_ctx, sid, b);
}
static uint32_t th_stream_close(void *info, uint64_t sid) {
	return th_info(info)->vtable->stream_close(th_info(info)->plugin_ctx, sid);
}

// n synchronous calls of entry id with a fixed payload; the host only counts replies.
static uint64_t th_loop(void *info, uint32_t id, uint64_t n) {
	static const char payload[] = "hello, kcoro";
	TRequest req = { th_str("/echo", 5), th_str("GET", 3), th_str("", 0), NULL, 0, 0, 0 };
	TBytes b = { (const uint8_t *)payload, sizeof payload - 1 };
	const TExt *ext = ((const TKcInfo *)info)->ext;
	void *ctx = th_info(info)->plugin_ctx;
	th_counted = 0;
	th_count_only = 1;
	for (uint64_t i = 0; i < n; i++) ext->handle_id(ctx, id, i, &req, b);
	th_count_only = 0;
	return th_counted;
}

static void th_reset(void) {
	pthread_mutex_lock(&th_mu);
	for (size_t i = 0; i < th_n; i++) free(th_frames[i].data);
	th_n = 0;
	pthread_mutex_unlock(&th_mu);
}

// Copies the frames of sid into out (up to max); returns how many exist.
static size_t th_frames_of(uint64_t sid, TFrame *out, size_t max) {
	pthread_mutex_lock(&th_mu);
	size_t k = 0;
	for (size_t i = 0; i < th_n; i++)
		if (th_frames[i].sid == sid) {
			if (k < max) {
				out[k] = th_frames[i];
				out[k].data = malloc(th_frames[i].len + 1);
				memcpy(out[k].data, th_frames[i].data, th_frames[i].len);
			}
			k++;
		}
	pthread_mutex_unlock(&th_mu);
	return k;
}
*/
import "C"

import (
	"time"
	"unsafe"
)

// Frame is one send_result the plugin made.
type Frame struct {
	SID    uint64
	Status uint32
	Data   string
}

// Host drives one plugin through its C ABI.
type Host struct{ info unsafe.Pointer }

// New wraps the pointer nylon_ring_get_plugin_v1 returned.
func New(info unsafe.Pointer) Host { return Host{info} }

func (h Host) base() *C.TInfo { return (*C.TInfo)(h.info) }

func gostr(s C.TStr) string { return C.GoStringN((*C.char)(unsafe.Pointer(s.ptr)), C.int(s.len)) }

// ABIVersion, StructSize, Name and Version read the info.
func (h Host) ABIVersion() uint32 { return uint32(h.base().abi_version) }
func (h Host) StructSize() uint32 { return uint32(h.base().struct_size) }
func (h Host) Name() string       { return gostr(h.base().name) }
func (h Host) Version() string    { return gostr(h.base().version) }

// Entries reads the extension's entry table.
func (h Host) Entries() []string {
	ext := (*C.TKcInfo)(h.info).ext
	if ext == nil {
		return nil
	}
	raw := unsafe.Slice(ext.entries, int(ext.entries_len))
	names := make([]string, len(raw))
	for i, s := range raw {
		names[i] = gostr(s)
	}
	return names
}

// ExtStructSize is KcPluginExt.struct_size.
func (h Host) ExtStructSize() uint32 { return uint32((*C.TKcInfo)(h.info).ext.struct_size) }

// Init calls init with the fake host's vtable; InitNull passes a null vtable.
func (h Host) Init() uint32     { return uint32(C.th_init(h.info)) }
func (h Host) InitNull() uint32 { return uint32(C.th_init_null(h.info)) }

// Attach hands the plugin the fake KcHostApi.
func (h Host) Attach() uint32 { return uint32(C.th_attach(h.info)) }

// Shutdown calls shutdown.
func (h Host) Shutdown() { C.th_shutdown(h.info) }

// Request is the metadata passed with a call; nil means a null request pointer.
type Request struct {
	Method, Path, Query string
	Headers             [][2]string
}

// cmem holds C copies of Go strings for one call.
type cmem []unsafe.Pointer

func (m *cmem) str(s string) C.TStr {
	p := C.CBytes([]byte(s))
	*m = append(*m, p)
	return C.TStr{ptr: (*C.uint8_t)(p), len: C.uint32_t(len(s))}
}

func (m *cmem) free() {
	for _, p := range *m {
		C.free(p)
	}
}

func (m *cmem) request(r *Request) *C.TRequest {
	if r == nil {
		return nil
	}
	req := (*C.TRequest)(C.calloc(1, C.sizeof_TRequest))
	*m = append(*m, unsafe.Pointer(req))
	req.method, req.path, req.query = m.str(r.Method), m.str(r.Path), m.str(r.Query)
	if len(r.Headers) > 0 {
		hs := (*C.THeader)(C.calloc(C.size_t(len(r.Headers)), C.sizeof_THeader))
		*m = append(*m, unsafe.Pointer(hs))
		slots := unsafe.Slice(hs, len(r.Headers))
		for i, kv := range r.Headers {
			slots[i].key, slots[i].value = m.str(kv[0]), m.str(kv[1])
		}
		req.headers, req.headers_len = hs, C.uint32_t(len(r.Headers))
	}
	return req
}

// Handle calls handle(entry) with C copies of everything.
func (h Host) Handle(entry string, sid uint64, req *Request, payload string) uint32 {
	var m cmem
	defer m.free()
	e, p := m.str(entry), m.str(payload)
	return uint32(C.th_handle(h.info, (*C.char)(unsafe.Pointer(e.ptr)), C.size_t(e.len), C.uint64_t(sid),
		m.request(req), (*C.char)(unsafe.Pointer(p.ptr)), C.size_t(p.len)))
}

// HandleID calls handle_id.
func (h Host) HandleID(id uint32, sid uint64, req *Request, payload string) uint32 {
	var m cmem
	defer m.free()
	p := m.str(payload)
	return uint32(C.th_handle_id(h.info, C.uint32_t(id), C.uint64_t(sid), m.request(req),
		(*C.char)(unsafe.Pointer(p.ptr)), C.size_t(p.len)))
}

// StreamData and StreamClose call the stream functions.
func (h Host) StreamData(sid uint64, data string) uint32 {
	var m cmem
	defer m.free()
	p := m.str(data)
	return uint32(C.th_stream_data(h.info, C.uint64_t(sid), (*C.char)(unsafe.Pointer(p.ptr)), C.size_t(p.len)))
}

func (h Host) StreamClose(sid uint64) uint32 {
	return uint32(C.th_stream_close(h.info, C.uint64_t(sid)))
}

// Loop makes n synchronous handle_id calls of entry id from C, counting replies only.
func (h Host) Loop(id uint32, n int) uint64 {
	return uint64(C.th_loop(h.info, C.uint32_t(id), C.uint64_t(n)))
}

// SetTryAnswer sets what the fake try_send answers (0 takes the frame).
func SetTryAnswer(status uint32) { C.th_set_try_answer(C.uint32_t(status)) }

// BadCtx reports whether any callback saw a host_ctx other than the one init passed.
func BadCtx() bool { return C.th_get_bad_ctx() != 0 }

// Reset forgets every recorded frame.
func Reset() { C.th_reset() }

// Frames returns the frames recorded for sid so far.
func Frames(sid uint64) []Frame {
	buf := make([]C.TFrame, 64)
	n := int(C.th_frames_of(C.uint64_t(sid), &buf[0], C.size_t(len(buf))))
	if n > len(buf) {
		n = len(buf)
	}
	out := make([]Frame, n)
	for i := range out {
		f := buf[i]
		out[i] = Frame{SID: uint64(f.sid), Status: uint32(f.status), Data: C.GoStringN((*C.char)(unsafe.Pointer(f.data)), C.int(f.len))}
		C.free(unsafe.Pointer(f.data))
	}
	return out
}

// Wait polls until sid has a frame for which done reports true, or the timeout.
func Wait(sid uint64, timeout time.Duration, done func([]Frame) bool) []Frame {
	deadline := time.Now().Add(timeout)
	for {
		fs := Frames(sid)
		if done(fs) || time.Now().After(deadline) {
			return fs
		}
		time.Sleep(time.Millisecond)
	}
}
