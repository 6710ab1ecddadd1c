package plugin

// The functions the host calls. abi.go's C tables point at them. A file with //export may
// only declare things in its preamble, so the C definitions live in abi.go.

/*
#include "kcoro_abi.h"
*/
import "C"

import (
	"strings"
	"unsafe"
)

const (
	cOk          = C.NrStatus(StatusOk)
	cErr         = C.NrStatus(StatusErr)
	cInvalid     = C.NrStatus(StatusInvalid)
	cUnsupported = C.NrStatus(StatusUnsupported)
)

// maxView bounds a view's length; anything longer is a corrupt host argument.
const maxView = 1 << 48

// strView is a Go string over host memory, valid as long as the memory.
func strView(s C.NrStr) string {
	if s.ptr == nil || s.len == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Pointer(s.ptr)), int(s.len))
}

// bytesView is a slice over host memory, valid as long as the memory.
func bytesView(b C.NrBytes) []byte {
	if b.ptr == nil || b.len == 0 || b.len > maxView {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(b.ptr)), int(b.len))
}

// request reads req as views of host memory.
func request(req *C.NrRequest, sid uint64) (r Request) {
	r.SID = sid
	if req != nil {
		r.Method, r.Path, r.Query = strView(req.method), strView(req.path), strView(req.query)
		if req.headers != nil && req.headers_len > 0 {
			r.Headers = headers(req)
		}
	}
	return r
}

func headers(req *C.NrRequest) [][2]string {
	raw := unsafe.Slice(req.headers, int(req.headers_len))
	hs := make([][2]string, len(raw))
	for i := range raw {
		hs[i] = [2]string{strView(raw[i].key), strView(raw[i].value)}
	}
	return hs
}

// cloneRequest reads req as Go copies.
func cloneRequest(req *C.NrRequest, sid uint64) Request {
	r := request(req, sid)
	r.Method, r.Path, r.Query = strings.Clone(r.Method), strings.Clone(r.Path), strings.Clone(r.Query)
	for i := range r.Headers {
		r.Headers[i] = [2]string{strings.Clone(r.Headers[i][0]), strings.Clone(r.Headers[i][1])}
	}
	return r
}

// dispatch runs entry id of p; the caller recovers panics.
func dispatch(p *Plugin, id uint32, sid uint64, req *C.NrRequest, payload C.NrBytes) C.NrStatus {
	if host.Load() == nil {
		return cInvalid
	}
	if uint64(id) >= uint64(len(p.entries)) {
		return cUnsupported
	}
	if payload.len > maxView {
		return cInvalid
	}
	e := &p.entries[id]
	if !e.async {
		return C.NrStatus(runSync(e.fn, request(req, sid), bytesView(payload)))
	}
	var data []byte
	if view := bytesView(payload); len(view) > 0 {
		data = append(make([]byte, 0, len(view)), view...)
	}
	go runAsync(e.fn, cloneRequest(req, sid), data)
	return cOk
}

//export nylon_ring_get_plugin_v1
func nylon_ring_get_plugin_v1() *C.NrPluginInfo {
	return (*C.NrPluginInfo)(unsafe.Pointer(info))
}

//export kcoro_go_init
func kcoro_go_init(ctx unsafe.Pointer, hostCtx unsafe.Pointer, vt *C.NrHostVTable) (st C.NrStatus) {
	defer func() {
		if recover() != nil {
			st = cErr
		}
	}()
	if ctx == nil || vt == nil || vt.send_result == nil || active == nil {
		return cInvalid
	}
	setHost(&hostState{ctx: hostCtx, vt: vt})
	return cOk
}

//export kcoro_go_attach
func kcoro_go_attach(ctx unsafe.Pointer, hostCtx unsafe.Pointer, api *C.KcHostApi) (st C.NrStatus) {
	defer func() {
		if recover() != nil {
			st = cErr
		}
	}()
	if ctx == nil {
		return cInvalid
	}
	hostMu.Lock()
	defer hostMu.Unlock()
	cur := host.Load()
	if cur == nil {
		return cInvalid // attach comes after a successful init
	}
	next := *cur
	next.api = api
	host.Store(&next)
	return cOk
}

//export kcoro_go_shutdown
func kcoro_go_shutdown(ctx unsafe.Pointer) {
	defer func() { _ = recover() }()
	setHost(nil)
}

//export kcoro_go_handle
func kcoro_go_handle(ctx unsafe.Pointer, entry C.NrStr, sid C.uint64_t, req *C.NrRequest, payload C.NrBytes) (st C.NrStatus) {
	defer func() {
		if recover() != nil {
			st = cErr
		}
	}()
	p := active
	if ctx == nil || p == nil {
		return cInvalid
	}
	id, ok := p.index[strView(entry)]
	if !ok {
		return cUnsupported
	}
	return dispatch(p, id, uint64(sid), req, payload)
}

//export kcoro_go_handle_id
func kcoro_go_handle_id(ctx unsafe.Pointer, id C.uint32_t, sid C.uint64_t, req *C.NrRequest, payload C.NrBytes) (st C.NrStatus) {
	defer func() {
		if recover() != nil {
			st = cErr
		}
	}()
	p := active
	if ctx == nil || p == nil {
		return cInvalid
	}
	return dispatch(p, uint32(id), uint64(sid), req, payload)
}

//export kcoro_go_stream_data
func kcoro_go_stream_data(ctx unsafe.Pointer, sid C.uint64_t, data C.NrBytes) (st C.NrStatus) {
	defer func() {
		if recover() != nil {
			st = cErr
		}
	}()
	p := active
	switch {
	case ctx == nil || p == nil || host.Load() == nil || data.len > maxView:
		return cInvalid
	case p.streamData == nil:
		return cUnsupported
	}
	return C.NrStatus(p.streamData(uint64(sid), bytesView(data), Reply{sid: uint64(sid)}))
}

//export kcoro_go_stream_close
func kcoro_go_stream_close(ctx unsafe.Pointer, sid C.uint64_t) (st C.NrStatus) {
	defer func() {
		if recover() != nil {
			st = cErr
		}
	}()
	p := active
	switch {
	case ctx == nil || p == nil || host.Load() == nil:
		return cInvalid
	case p.streamClose == nil:
		return cUnsupported
	}
	return C.NrStatus(p.streamClose(uint64(sid), Reply{sid: uint64(sid)}))
}
