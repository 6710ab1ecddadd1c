// Package plugin writes kcoro plugins in Go.
//
// A plugin is a main package built with -buildmode=c-shared. It declares its entries on a
// [Plugin] and registers it from init:
//
//	func init() {
//		p := plugin.New("echo-go", "1.0.0")
//		p.HandleSync("echo", func(req plugin.Request, payload []byte, reply plugin.Reply) {
//			reply.Send(plugin.StatusOk, payload)
//		})
//		plugin.Register(p)
//	}
//
//	func main() {}
//
// The package exports nylon_ring_get_plugin_v1 (the nylon-ring version-1 entry symbol)
// with kcoro's extension table: entry ids in registration order (handle_id) and an attach
// hook through which a kcoro host hands over per-sid state and a non-blocking send. A
// version-1 host sees a plain version-1 plugin.
//
// Handlers registered with [Plugin.HandleSync] run on the host's thread inside handle:
// they must be quick, and the payload and request they see are borrowed views valid only
// until they return. Handlers registered with [Plugin.Handle] run in their own goroutine
// on copies, so handle returns at once. Every handler runs behind recover: a panic becomes
// a StatusErr reply (goroutine handlers) or a StatusErr return from handle (sync ones).
package plugin

import (
	"fmt"
	"math"
	"strings"
)

// Status is a reply or return code; the values are the ABI's NrStatus.
type Status uint32

const (
	// StatusOk is success; a non-final frame of a stream.
	StatusOk Status = 0
	// StatusErr is a runtime error in the plugin (or a recovered panic).
	StatusErr Status = 1
	// StatusInvalid is bad input or state: malformed request, unknown sid, no host.
	StatusInvalid Status = 2
	// StatusUnsupported is an unknown entry or a missing stream handler.
	StatusUnsupported Status = 3
	// StatusStreamEnd is the last frame of a stream.
	StatusStreamEnd Status = 4
	// StatusBackpressure (kcoro extension) means the stream's buffer is full: the frame
	// was not taken, try again later. Only [Reply.TrySend] returns it.
	StatusBackpressure Status = 5
)

var statusNames = [...]string{"Ok", "Err", "Invalid", "Unsupported", "StreamEnd", "Backpressure"}

// String returns the status's name, or "Unknown(n)".
func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Unknown(%d)", uint32(s))
}

// IsTerminal reports whether a frame with this status ends a stream: anything but Ok and
// Backpressure.
func (s Status) IsTerminal() bool {
	return s != StatusOk && s != StatusBackpressure
}

// Request is the request metadata handed to a handler.
//
// For [Plugin.HandleSync] handlers the strings are views of host memory valid only until
// the handler returns (use strings.Clone to keep one); for [Plugin.Handle] handlers they
// are Go copies.
type Request struct {
	Method  string
	Path    string
	Query   string
	Headers [][2]string // key, value; in order
	SID     uint64
}

// Header returns the value of the first header named name (ASCII case-insensitive).
func (r Request) Header(name string) (string, bool) {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1], true
		}
	}
	return "", false
}

// HandlerFunc handles one call of an entry and replies through reply: once for a unary
// call, once per frame for a stream (the last with a terminal status).
type HandlerFunc func(req Request, payload []byte, reply Reply)

// StreamDataFunc receives data the host sends on a bidirectional stream. It runs on the
// host's thread; data is valid only until it returns.
type StreamDataFunc func(sid uint64, data []byte, reply Reply) Status

// StreamCloseFunc is called when the host closes its side of a bidirectional stream.
type StreamCloseFunc func(sid uint64, reply Reply) Status

type entry struct {
	name  string
	fn    HandlerFunc
	async bool
}

// Plugin is a set of entries and stream handlers, exported by [Register].
type Plugin struct {
	name, version string
	entries       []entry
	index         map[string]uint32
	streamData    StreamDataFunc
	streamClose   StreamCloseFunc
	frozen        bool
}

// New returns an empty plugin called name at version.
func New(name, version string) *Plugin {
	if name == "" {
		panic("kcoro/plugin: empty plugin name")
	}
	return &Plugin{name: name, version: version, index: map[string]uint32{}}
}

// Name returns the plugin's name.
func (p *Plugin) Name() string { return p.name }

// Version returns the plugin's version.
func (p *Plugin) Version() string { return p.version }

// Entries returns the entry names; the index of a name is its entry id.
func (p *Plugin) Entries() []string {
	names := make([]string, len(p.entries))
	for i, e := range p.entries {
		names[i] = e.name
	}
	return names
}

func (p *Plugin) add(name string, fn HandlerFunc, async bool) {
	switch {
	case p.frozen:
		panic("kcoro/plugin: entry " + name + " added after Register")
	case name == "":
		panic("kcoro/plugin: empty entry name")
	case fn == nil:
		panic("kcoro/plugin: nil handler for entry " + name)
	case uint64(len(name)) > math.MaxUint32:
		panic("kcoro/plugin: entry name longer than 4 GiB")
	}
	if _, dup := p.index[name]; dup {
		panic("kcoro/plugin: duplicate entry " + name)
	}
	p.index[name] = uint32(len(p.entries))
	p.entries = append(p.entries, entry{name: name, fn: fn, async: async})
}

// Handle registers entry: each call runs fn in a new goroutine, on copies of the request
// and payload, and handle returns StatusOk at once. fn replies through reply whenever it
// likes. A panic in fn sends StatusErr for the call's sid.
func (p *Plugin) Handle(entry string, fn HandlerFunc) { p.add(entry, fn, true) }

// HandleSync registers entry: each call runs fn on the host's thread inside handle (no
// goroutine, no copies), which returns StatusOk when fn returns, or StatusErr if it
// panics. fn must be quick and must not keep payload, req's strings or reply past its
// return (copy them, or use [Reply.Detached]).
func (p *Plugin) HandleSync(entry string, fn HandlerFunc) { p.add(entry, fn, false) }

// OnStreamData sets the handler for data on bidirectional streams; without one the
// plugin answers StatusUnsupported.
func (p *Plugin) OnStreamData(fn StreamDataFunc) {
	if p.frozen {
		panic("kcoro/plugin: OnStreamData after Register")
	}
	p.streamData = fn
}

// OnStreamClose sets the handler for the host closing a bidirectional stream; without
// one the plugin answers StatusUnsupported.
func (p *Plugin) OnStreamClose(fn StreamCloseFunc) {
	if p.frozen {
		panic("kcoro/plugin: OnStreamClose after Register")
	}
	p.streamClose = fn
}

// active is the registered plugin. It is written once, from a package init, before the
// runtime lets any exported function run, and only read after.
var active *Plugin

// Register makes p the plugin this library exports. Call it once, from an init function;
// p cannot change afterwards.
func Register(p *Plugin) {
	if p == nil {
		panic("kcoro/plugin: Register(nil)")
	}
	if active != nil {
		panic("kcoro/plugin: Register called twice")
	}
	p.frozen = true
	publish(p) // builds the C tables
	active = p
}

// runSync runs a HandleSync handler; the caller's recover turns a panic into StatusErr.
func runSync(fn HandlerFunc, req Request, payload []byte) Status {
	fn(req, payload, Reply{sid: req.SID})
	return StatusOk
}

// runAsync is the body of a Handle goroutine.
func runAsync(fn HandlerFunc, req Request, payload []byte) {
	reply := Reply{sid: req.SID, guarded: true}
	defer func() {
		if recover() != nil {
			reply.Send(StatusErr, nil)
		}
	}()
	fn(req, payload, reply)
}
