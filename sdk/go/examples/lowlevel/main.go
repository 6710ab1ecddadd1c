// Command lowlevel is a kcoro plugin written straight against the C ABI with cgo, no SDK:
// a plain nylon-ring version-1 plugin (struct_size 56, no kcoro extensions) with the
// `echo` and `stream` entries of the shared example contract.
//
//	go build -buildmode=c-shared -o libecho_go_lowlevel.so ./examples/lowlevel
package main

/*
#include <stdint.h>
#include <stdlib.h>

// nylon-ring version 1 (crates/kcoro-abi/src/lib.rs), only what this plugin touches.
typedef uint32_t NrStatus;
typedef struct { const uint8_t *ptr; uint32_t len; } NrStr;
typedef struct { const uint8_t *ptr; uint64_t len; } NrBytes;
typedef struct { NrStr key; NrStr value; } NrHeader;
typedef struct {
	NrStr path, method, query;
	const NrHeader *headers;
	uint32_t headers_len, _reserved0;
	uint64_t _reserved1;
} NrRequest;
typedef struct {
	void (*send_result)(void *host_ctx, uint64_t sid, NrStatus status, NrBytes payload);
} NrHostVTable;
typedef struct {
	NrStatus (*init)(void *, void *, NrHostVTable *);
	NrStatus (*handle)(void *, NrStr, uint64_t, NrRequest *, NrBytes);
	void (*shutdown)(void *);
	NrStatus (*stream_data)(void *, uint64_t, NrBytes);
	NrStatus (*stream_close)(void *, uint64_t);
} NrPluginVTable;
typedef struct {
	uint32_t abi_version, struct_size;
	NrStr name, version;
	void *plugin_ctx;
	const NrPluginVTable *vtable;
} NrPluginInfo;
_Static_assert(sizeof(NrRequest) == 72 && sizeof(NrPluginVTable) == 40, "nylon-ring v1 layout");
_Static_assert(sizeof(NrPluginInfo) == 56, "nylon-ring v1 layout");

// The //export functions below (a file with //export may only declare in its preamble;
// static inline functions are the exception that works, one copy per C file).
extern NrStatus ll_init(void *, void *, NrHostVTable *);
extern NrStatus ll_handle(void *, NrStr, uint64_t, NrRequest *, NrBytes);
extern void ll_shutdown(void *);
extern NrStatus ll_stream_data(void *, uint64_t, NrBytes);
extern NrStatus ll_stream_close(void *, uint64_t);

// Go cannot call a C function pointer; this does.
static inline void ll_send(void *ctx, const NrHostVTable *vt, uint64_t sid, NrStatus st,
                           const void *p, uint64_t n) {
	NrBytes b = { (const uint8_t *)p, n };
	vt->send_result(ctx, sid, st, b);
}
*/
import "C"

import (
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"
)

const (
	statusOk          = 0
	statusErr         = 1
	statusInvalid     = 2
	statusUnsupported = 3
	statusStreamEnd   = 4
)

type hostRef struct {
	ctx unsafe.Pointer
	vt  *C.NrHostVTable
}

var (
	host atomic.Pointer[hostRef]
	info *C.NrPluginInfo // C memory, built once, never freed
	// inflight counts stream goroutines still sending.
	inflight sync.WaitGroup
)

// cstr is a malloc'd, never-freed NrStr copy of s.
func cstr(s string) C.NrStr {
	return C.NrStr{ptr: (*C.uint8_t)(C.CBytes([]byte(s))), len: C.uint32_t(len(s))}
}

func init() {
	vt := (*C.NrPluginVTable)(C.calloc(1, C.sizeof_NrPluginVTable))
	vt.init = (*[0]byte)(C.ll_init)
	vt.handle = (*[0]byte)(C.ll_handle)
	vt.shutdown = (*[0]byte)(C.ll_shutdown)
	vt.stream_data = (*[0]byte)(C.ll_stream_data)
	vt.stream_close = (*[0]byte)(C.ll_stream_close)
	info = (*C.NrPluginInfo)(C.calloc(1, C.sizeof_NrPluginInfo))
	info.abi_version = 1
	info.struct_size = C.sizeof_NrPluginInfo // 56: version 1, no extensions
	info.name = cstr("echo-go-lowlevel")
	info.version = cstr("1.0.0")
	info.plugin_ctx = unsafe.Pointer(info)
	info.vtable = vt
}

//export nylon_ring_get_plugin_v1
func nylon_ring_get_plugin_v1() *C.NrPluginInfo { return info }

func send(h *hostRef, sid uint64, status uint32, data []byte) {
	var p unsafe.Pointer
	if len(data) > 0 {
		p = unsafe.Pointer(&data[0])
	}
	C.ll_send(h.ctx, h.vt, C.uint64_t(sid), C.NrStatus(status), p, C.uint64_t(len(data)))
}

//export ll_init
func ll_init(ctx unsafe.Pointer, hostCtx unsafe.Pointer, vt *C.NrHostVTable) C.NrStatus {
	if vt == nil || vt.send_result == nil {
		return statusInvalid
	}
	host.Store(&hostRef{ctx: hostCtx, vt: vt})
	return statusOk
}

//export ll_shutdown
func ll_shutdown(ctx unsafe.Pointer) {
	host.Store(nil)
	inflight.Wait()
}

//export ll_handle
func ll_handle(ctx unsafe.Pointer, entry C.NrStr, sid C.uint64_t, req *C.NrRequest, payload C.NrBytes) (st C.NrStatus) {
	defer func() { // no panic may unwind into C
		if recover() != nil {
			st = statusErr
		}
	}()
	h := host.Load()
	if h == nil {
		return statusInvalid
	}
	var data []byte // a view of the host's payload, valid until we return
	if payload.ptr != nil && payload.len > 0 {
		data = unsafe.Slice((*byte)(unsafe.Pointer(payload.ptr)), int(payload.len))
	}
	var name string
	if entry.ptr != nil {
		name = unsafe.String((*byte)(unsafe.Pointer(entry.ptr)), int(entry.len))
	}
	switch name {
	case "echo":
		send(h, uint64(sid), statusOk, data)
		return statusOk
	case "stream":
		n := 5
		if len(data) > 0 {
			var err error
			if n, err = strconv.Atoi(string(data)); err != nil || n < 0 {
				return statusInvalid
			}
		}
		// handle must return at once: the frames go out from a goroutine, which
		// shutdown waits for (the host's pointers are valid only until it returns).
		inflight.Add(1)
		go func(sid uint64) {
			defer inflight.Done()
			for i := 1; i <= n; i++ {
				send(h, sid, statusOk, []byte("frame-"+strconv.Itoa(i)))
			}
			send(h, sid, statusStreamEnd, nil)
		}(uint64(sid))
		return statusOk
	default:
		return statusUnsupported
	}
}

//export ll_stream_data
func ll_stream_data(ctx unsafe.Pointer, sid C.uint64_t, data C.NrBytes) C.NrStatus {
	return statusUnsupported
}

//export ll_stream_close
func ll_stream_close(ctx unsafe.Pointer, sid C.uint64_t) C.NrStatus { return statusUnsupported }

func main() {}
