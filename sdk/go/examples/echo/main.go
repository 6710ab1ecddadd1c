// Command echo is the Go version of the example plugin every kcoro SDK ships: the same
// entries, checked by the same host battery.
//
//	go build -buildmode=c-shared -o libecho_go.so ./examples/echo
package main

import (
	"strconv"

	"kcoro.dev/sdk/go/plugin"
)

func init() {
	p := plugin.New("echo-go", "1.0.0")

	// echo: the payload back, on the host's thread.
	p.HandleSync("echo", func(_ plugin.Request, payload []byte, reply plugin.Reply) {
		reply.Send(plugin.StatusOk, payload)
	})

	// echo_async: the payload back, from a goroutine.
	p.Handle("echo_async", func(_ plugin.Request, payload []byte, reply plugin.Reply) {
		reply.Send(plugin.StatusOk, payload)
	})

	// stream: N frames "frame-1".."frame-N" (N is the decimal payload, 5 when empty),
	// then an empty StreamEnd.
	p.Handle("stream", func(_ plugin.Request, payload []byte, reply plugin.Reply) {
		n := 5
		if len(payload) > 0 {
			var err error
			if n, err = strconv.Atoi(string(payload)); err != nil || n < 0 {
				reply.Send(plugin.StatusInvalid, []byte("stream: payload must be a decimal count"))
				return
			}
		}
		buf := make([]byte, 0, 32)
		for i := 1; i <= n; i++ {
			buf = strconv.AppendInt(append(buf[:0], "frame-"...), int64(i), 10)
			reply.Send(plugin.StatusOk, buf) // the host copies before Send returns
		}
		reply.Send(plugin.StatusStreamEnd, nil)
	})

	// bidi: handle opens the stream and replies nothing; the host's data is echoed back
	// frame by frame, and its close ends the stream.
	p.HandleSync("bidi", func(plugin.Request, []byte, plugin.Reply) {})
	p.OnStreamData(func(_ uint64, data []byte, reply plugin.Reply) plugin.Status {
		reply.Send(plugin.StatusOk, data)
		return plugin.StatusOk
	})
	p.OnStreamClose(func(_ uint64, reply plugin.Reply) plugin.Status {
		reply.Send(plugin.StatusStreamEnd, nil)
		return plugin.StatusOk
	})

	// state: store the payload in the host's per-sid state, read it back, reply with it.
	p.HandleSync("state", func(_ plugin.Request, payload []byte, reply plugin.Reply) {
		if !reply.HasState() {
			reply.Send(plugin.StatusUnsupported, nil)
			return
		}
		if !reply.SetState("key", payload) {
			reply.Send(plugin.StatusErr, []byte("state: set_state failed"))
			return
		}
		v, _ := reply.GetState("key")
		reply.Send(plugin.StatusOk, v)
	})

	// panic: handle returns Err.
	p.HandleSync("panic", func(plugin.Request, []byte, plugin.Reply) {
		panic("echo-go: the panic entry")
	})

	// error: an Err reply with a payload.
	p.HandleSync("error", func(_ plugin.Request, _ []byte, reply plugin.Reply) {
		reply.Send(plugin.StatusErr, []byte("boom"))
	})

	plugin.Register(p)
}

func main() {}
