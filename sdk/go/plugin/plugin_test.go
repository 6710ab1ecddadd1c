package plugin

import (
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"kcoro.dev/sdk/go/internal/testhost"
)

// The statuses of crates/kcoro-abi (NrStatus).
const (
	ok          = uint32(StatusOk)
	errS        = uint32(StatusErr)
	invalid     = uint32(StatusInvalid)
	unsupported = uint32(StatusUnsupported)
	streamEnd   = uint32(StatusStreamEnd)
)

var (
	testPlugin *Plugin
	th         testhost.Host
	release    atomic.Pointer[chan struct{}] // closing it lets the "detached" goroutine send
	detachedOK atomic.Bool
)

func describe(req Request) string {
	var hs []string
	for _, h := range req.Headers {
		hs = append(hs, h[0]+"="+h[1])
	}
	return fmt.Sprintf("%s|%s|%s|%s|%d", req.Method, req.Path, req.Query, strings.Join(hs, ";"), req.SID)
}

func stateEntry(_ Request, payload []byte, reply Reply) {
	if !reply.HasState() {
		reply.Send(StatusUnsupported, nil)
		return
	}
	if !reply.SetState("key", payload) {
		reply.Send(StatusErr, []byte("set"))
		return
	}
	v, found := reply.GetState("key")
	if _, other := reply.GetState("missing"); !found || other {
		reply.Send(StatusErr, []byte("get"))
		return
	}
	reply.Send(StatusOk, v)
}

func TestMain(m *testing.M) {
	p := New("go-sdk-test", "0.1.0")
	p.HandleSync("echo", func(_ Request, payload []byte, reply Reply) { reply.Send(StatusOk, payload) })
	p.Handle("async", func(_ Request, payload []byte, reply Reply) { reply.Send(StatusOk, payload) })
	p.HandleSync("req", func(req Request, _ []byte, reply Reply) { reply.Send(StatusOk, []byte(describe(req))) })
	p.Handle("areq", func(req Request, payload []byte, reply Reply) {
		time.Sleep(5 * time.Millisecond) // the host has freed its copies by now
		reply.Send(StatusOk, []byte(describe(req)+"|"+string(payload)))
	})
	p.HandleSync("panic", func(Request, []byte, Reply) { panic("sync") })
	p.Handle("apanic", func(Request, []byte, Reply) { panic("async") })
	p.Handle("stream", func(_ Request, payload []byte, reply Reply) {
		n, _ := strconv.Atoi(string(payload))
		for i := 1; i <= n; i++ {
			reply.Send(StatusOk, []byte("frame-"+strconv.Itoa(i)))
		}
		reply.Send(StatusStreamEnd, nil)
	})
	p.HandleSync("state", stateEntry)
	p.Handle("astate", stateEntry)
	p.HandleSync("try", func(_ Request, payload []byte, reply Reply) {
		reply.Send(StatusOk, []byte(reply.TrySend(StatusOk, payload).String()))
	})
	p.HandleSync("detached", func(_ Request, _ []byte, reply Reply) {
		later := reply.Detached()
		wait := *release.Load()
		go func() {
			<-wait
			later.Send(StatusOk, []byte("late"))
			detachedOK.Store(true)
		}()
	})
	p.HandleSync("silent", func(Request, []byte, Reply) {})
	p.HandleSync("header", func(req Request, _ []byte, reply Reply) {
		v, _ := req.Header("content-TYPE")
		reply.Send(StatusOk, []byte(v))
	})
	p.OnStreamData(func(sid uint64, data []byte, reply Reply) Status {
		switch string(data) {
		case "fail":
			return StatusErr
		case "boom":
			panic("stream data")
		}
		reply.Send(StatusOk, append([]byte("data:"), data...))
		return StatusOk
	})
	p.OnStreamClose(func(sid uint64, reply Reply) Status {
		reply.Send(StatusStreamEnd, nil)
		return StatusOk
	})
	Register(p)
	testPlugin = p
	th = testhost.New(unsafe.Pointer(nylon_ring_get_plugin_v1()))
	os.Exit(m.Run())
}

// setup (re)initialises the plugin with the fake host, attached unless bare.
func setup(t *testing.T, bare bool) {
	t.Helper()
	testhost.Reset()
	if st := th.Init(); st != ok {
		t.Fatalf("init: %d", st)
	}
	if !bare {
		if st := th.Attach(); st != ok {
			t.Fatalf("attach: %d", st)
		}
	}
}

func id(t *testing.T, name string) uint32 {
	t.Helper()
	i, found := testPlugin.index[name]
	if !found {
		t.Fatalf("no entry %q", name)
	}
	return i
}

func frame(sid uint64, status uint32, data string) testhost.Frame {
	return testhost.Frame{SID: sid, Status: status, Data: data}
}

func terminal(fs []testhost.Frame) bool {
	return len(fs) > 0 && Status(fs[len(fs)-1].Status).IsTerminal()
}

func atLeast(n int) func([]testhost.Frame) bool {
	return func(fs []testhost.Frame) bool { return len(fs) >= n }
}

// reply checks that sid got exactly one frame, (status, data).
func reply(t *testing.T, sid uint64, status uint32, data string) {
	t.Helper()
	fs := testhost.Wait(sid, 5*time.Second, atLeast(1))
	time.Sleep(time.Millisecond) // a duplicate would show up
	fs = testhost.Frames(sid)
	if len(fs) != 1 || fs[0].Status != status || fs[0].Data != data {
		t.Fatalf("sid %d: got %+v, want one frame (%d, %q)", sid, fs, status, data)
	}
}

func none(t *testing.T, sid uint64) {
	t.Helper()
	time.Sleep(10 * time.Millisecond)
	if fs := testhost.Frames(sid); len(fs) != 0 {
		t.Fatalf("sid %d: want no frames, got %+v", sid, fs)
	}
}

func TestStatusMatchesTheRustABI(t *testing.T) {
	got := []Status{StatusOk, StatusErr, StatusInvalid, StatusUnsupported, StatusStreamEnd, StatusBackpressure}
	for i, s := range got {
		if uint32(s) != uint32(i) {
			t.Fatalf("%v = %d, want %d", s, uint32(s), i)
		}
	}
	if StatusStreamEnd.String() != "StreamEnd" || Status(9).String() != "Unknown(9)" {
		t.Fatal(StatusStreamEnd.String(), Status(9).String())
	}
	if StatusOk.IsTerminal() || StatusBackpressure.IsTerminal() || !StatusErr.IsTerminal() || !Status(7).IsTerminal() {
		t.Fatal("IsTerminal")
	}
}

func TestInfoNegotiatesTheExtensions(t *testing.T) {
	if th.ABIVersion() != 1 || th.StructSize() != 64 || th.ExtStructSize() != 72 {
		t.Fatalf("abi %d struct_size %d ext %d", th.ABIVersion(), th.StructSize(), th.ExtStructSize())
	}
	if th.Name() != "go-sdk-test" || th.Version() != "0.1.0" {
		t.Fatalf("%q %q", th.Name(), th.Version())
	}
	if got, want := th.Entries(), testPlugin.Entries(); !reflect.DeepEqual(got, want) || want[0] != "echo" || want[1] != "async" {
		t.Fatalf("entries %v, want %v in registration order", got, want)
	}
}

func TestLifecycle(t *testing.T) {
	th.Shutdown()
	if st := th.Handle("echo", 100, nil, "x"); st != invalid {
		t.Fatalf("handle before init: %d", st)
	}
	if st := th.HandleID(0, 100, nil, "x"); st != invalid {
		t.Fatalf("handle_id before init: %d", st)
	}
	if st := th.StreamData(100, "x"); st != invalid {
		t.Fatalf("stream_data before init: %d", st)
	}
	if st := th.Attach(); st != invalid {
		t.Fatalf("attach before init: %d", st)
	}
	if st := th.InitNull(); st != invalid {
		t.Fatalf("init(NULL vtable): %d", st)
	}
	none(t, 100)
	setup(t, false)
	if st := th.Handle("nope", 101, nil, ""); st != unsupported {
		t.Fatalf("unknown entry: %d", st)
	}
	if st := th.Handle("", 101, nil, ""); st != unsupported {
		t.Fatalf("empty entry: %d", st)
	}
	if st := th.HandleID(9999, 101, nil, ""); st != unsupported {
		t.Fatalf("entry id out of range: %d", st)
	}
	none(t, 101)
	if testhost.BadCtx() {
		t.Fatal("a callback got the wrong host_ctx")
	}
}

func TestEcho(t *testing.T) {
	setup(t, false)
	for i, name := range []string{"echo", "async"} {
		sid := uint64(200 + 10*i)
		if st := th.Handle(name, sid, nil, "hello"); st != ok {
			t.Fatalf("%s: %d", name, st)
		}
		reply(t, sid, ok, "hello")
		if st := th.HandleID(id(t, name), sid+1, &testhost.Request{Method: "GET"}, "by id"); st != ok {
			t.Fatalf("%s by id: %d", name, st)
		}
		reply(t, sid+1, ok, "by id")
		if st := th.Handle(name, sid+2, nil, ""); st != ok {
			t.Fatalf("%s empty: %d", name, st)
		}
		reply(t, sid+2, ok, "")
	}
}

func TestRequest(t *testing.T) {
	setup(t, false)
	req := &testhost.Request{Method: "POST", Path: "/p", Query: "a=1", Headers: [][2]string{{"Content-Type", "text/plain"}, {"x", ""}}}
	th.Handle("req", 300, req, "")
	reply(t, 300, ok, "POST|/p|a=1|Content-Type=text/plain;x=|300")
	th.Handle("areq", 301, req, "body") // views would be freed memory by the time it runs
	reply(t, 301, ok, "POST|/p|a=1|Content-Type=text/plain;x=|301|body")
	th.Handle("req", 302, nil, "")
	reply(t, 302, ok, "||||302")
	th.Handle("header", 303, req, "")
	reply(t, 303, ok, "text/plain")
}

func TestPanicsAreContained(t *testing.T) {
	setup(t, false)
	if st := th.Handle("panic", 400, nil, ""); st != errS {
		t.Fatalf("sync panic: handle returned %d", st)
	}
	none(t, 400)
	if st := th.HandleID(id(t, "panic"), 401, nil, ""); st != errS {
		t.Fatalf("sync panic by id: %d", st)
	}
	if st := th.Handle("apanic", 402, nil, ""); st != ok {
		t.Fatalf("async panic: handle returned %d", st)
	}
	reply(t, 402, errS, "")
	if st := th.StreamData(403, "boom"); st != errS {
		t.Fatalf("stream_data panic: %d", st)
	}
	// Still alive.
	th.Handle("echo", 404, nil, "alive")
	reply(t, 404, ok, "alive")
}

func TestStreams(t *testing.T) {
	setup(t, false)
	th.Handle("stream", 500, nil, "3")
	fs := testhost.Wait(500, 5*time.Second, terminal)
	want := []testhost.Frame{frame(500, ok, "frame-1"), frame(500, ok, "frame-2"), frame(500, ok, "frame-3"), frame(500, streamEnd, "")}
	if !reflect.DeepEqual(fs, want) {
		t.Fatalf("stream: %+v", fs)
	}
	// Bidirectional: handle replies nothing, data is echoed, close ends the stream.
	if st := th.Handle("silent", 501, nil, ""); st != ok {
		t.Fatal(st)
	}
	if st := th.StreamData(501, "a"); st != ok {
		t.Fatal(st)
	}
	if st := th.StreamData(501, "fail"); st != errS {
		t.Fatalf("stream_data status: %d", st)
	}
	if st := th.StreamClose(501); st != ok {
		t.Fatal(st)
	}
	fs = testhost.Wait(501, 5*time.Second, terminal)
	want = []testhost.Frame{frame(501, ok, "data:a"), frame(501, streamEnd, "")}
	if !reflect.DeepEqual(fs, want) {
		t.Fatalf("bidi: %+v", fs)
	}
}

func TestState(t *testing.T) {
	setup(t, true) // not attached: no state
	th.Handle("state", 600, nil, "v")
	reply(t, 600, unsupported, "")
	setup(t, false)
	th.Handle("state", 601, nil, "remember")
	reply(t, 601, ok, "remember")
	th.Handle("astate", 602, nil, "async state")
	reply(t, 602, ok, "async state")
}

func TestTrySend(t *testing.T) {
	setup(t, true) // version-1 host: TrySend is Send
	th.Handle("try", 700, nil, "p")
	fs := testhost.Wait(700, 5*time.Second, atLeast(2))
	if len(fs) != 2 || fs[0].Data != "p" || fs[1].Data != "Ok" {
		t.Fatalf("%+v", fs)
	}
	setup(t, false)
	testhost.SetTryAnswer(uint32(StatusBackpressure))
	defer testhost.SetTryAnswer(0)
	th.Handle("try", 701, nil, "p")
	reply(t, 701, ok, "Backpressure") // the frame was not taken
}

func TestDetachedReplyAfterShutdownIsDropped(t *testing.T) {
	setup(t, false)
	wait := make(chan struct{})
	release.Store(&wait)
	detachedOK.Store(false)
	th.Handle("detached", 800, nil, "")
	th.Shutdown()
	close(wait)
	for !detachedOK.Load() {
		time.Sleep(time.Millisecond)
	}
	none(t, 800)
}

func TestSyncEchoDoesNotAllocate(t *testing.T) {
	setup(t, false)
	echo := id(t, "echo")
	if got := th.Loop(echo, 10); got != 10 {
		t.Fatalf("%d replies", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { th.Loop(echo, 100) }); allocs != 0 {
		t.Fatalf("%.1f allocations per 100 sync echo calls", allocs)
	}
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Fatalf("%s: no panic", what)
		}
	}()
	f()
}

func TestRegistrationRules(t *testing.T) {
	noop := func(Request, []byte, Reply) {}
	mustPanic(t, "empty plugin name", func() { New("", "1") })
	p := New("x", "1")
	p.Handle("a", noop)
	mustPanic(t, "duplicate entry", func() { p.HandleSync("a", noop) })
	mustPanic(t, "empty entry", func() { p.Handle("", noop) })
	mustPanic(t, "nil handler", func() { p.Handle("b", nil) })
	mustPanic(t, "entry after Register", func() { testPlugin.Handle("late", noop) })
	mustPanic(t, "second Register", func() { Register(p) })
	if got := p.Entries(); !reflect.DeepEqual(got, []string{"a"}) {
		t.Fatal(got)
	}
}

func BenchmarkSyncEcho(b *testing.B) {
	th.Init()
	th.Attach()
	echo := testPlugin.index["echo"]
	b.ResetTimer()
	if got := th.Loop(echo, b.N); got != uint64(b.N) {
		b.Fatalf("%d replies", got)
	}
}
