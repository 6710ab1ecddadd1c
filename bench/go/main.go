// Command kcoro-bench-go runs the Go peers of kcoro-bench.
//
// Usage: kcoro-bench-go <suite> <case> <n>
//
//	kcoro-bench-go serve <http|echo|proxy>   (a server of the net suite; see net.go)
//
// It runs one case n times on GOMAXPROCS=2 and prints one JSON line,
// {"ns_per_op": ..., "bytes_per_op": ...}, the same shape as a Rust child of the
// harness. bytes_per_op is present only for memory cases.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// result is one run's measurement.
type result struct {
	NsPerOp    float64  `json:"ns_per_op"`
	BytesPerOp *float64 `json:"bytes_per_op,omitempty"`
}

// cases maps "<suite>/<case>" to its runner.
var cases = map[string]func(n int) (result, error){
	"runtime/yield":                yieldCase,
	"runtime/spawn_join":           spawnJoinCase,
	"runtime/pingpong_park":        pingpongCase,
	"runtime/sleep_1ms_accuracy":   sleepCase,
	"runtime/spawn_1m_parked":      spawnParkedCase,
	"runtime/scope_spawn_join_100": scopeSpawnJoinCase,
	"runtime/actor_tell":           actorTellCase,
	"runtime/actor_ask":            actorAskCase,

	"chan/pingpong_rendezvous": chanPingpongCase,
	"chan/prodcons_0":          prodConsCase(0),
	"chan/prodcons_10":         prodConsCase(10),
	"chan/prodcons_100":        prodConsCase(100),
	"chan/spsc_1024":           pipesCase(1, 1, 1024),
	"chan/mpmc_4x4_1024":       pipesCase(4, 4, 1024),
	"chan/mpmc_4x4_0":          pipesCase(4, 4, 0),
	"chan/nonblocking_try":     nonblockingCase,

	"capi/pingpong_rendezvous": capiPingpongCase,
	"capi/spsc_1024_4b":        capiPipesCase(1, 1, func(i int) uint32 { return uint32(i) }),
	"capi/spsc_1024_64b":       capiPipesCase(1, 1, func(i int) [64]byte { return [64]byte{byte(i)} }),
	"capi/mpmc_4x4_1024_4b":    capiPipesCase(4, 4, func(i int) uint32 { return uint32(i) }),
	"capi/mpmc_4x4_1024_64b":   capiPipesCase(4, 4, func(i int) [64]byte { return [64]byte{byte(i)} }),
	"capi/ptr_spsc_64k":        capiPipesCase(1, 1, func(int) []byte { return capiPayload }),

	"select/select2_uncontended":   select2UncontendedCase,
	"select/select_sync_contended": selectSyncContendedCase,
}

func main() {
	// The net suite's servers keep GOMAXPROCS from the environment (1 or 2 workers).
	if len(os.Args) == 3 && os.Args[1] == "serve" {
		if err := serveMain(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: kcoro-bench-go <suite> <case> <n>")
		os.Exit(2)
	}
	runtime.GOMAXPROCS(2)
	key := os.Args[1] + "/" + os.Args[2]
	run, ok := cases[key]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown case %q\n", key)
		os.Exit(2)
	}
	n, err := strconv.Atoi(os.Args[3])
	if err != nil || n <= 0 {
		fmt.Fprintf(os.Stderr, "bad count %q\n", os.Args[3])
		os.Exit(2)
	}
	res, err := run(n)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// perOp spreads d over n operations.
func perOp(d time.Duration, n int) result {
	return result{NsPerOp: float64(d.Nanoseconds()) / float64(n)}
}

// warmup is the untimed pass run before a throughput case.
func warmup(n int) int { return n/10 + 1 }

func yieldCase(n int) (result, error) {
	loop := func(n int) {
		for i := 0; i < n; i++ {
			runtime.Gosched()
		}
	}
	loop(warmup(n))
	start := time.Now()
	loop(n)
	return perOp(time.Since(start), n), nil
}

func spawnJoinCase(n int) (result, error) {
	loop := func(n int) {
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() { wg.Done() }()
			wg.Wait()
		}
	}
	loop(warmup(n))
	start := time.Now()
	loop(n)
	return perOp(time.Since(start), n), nil
}

func pingpongCase(n int) (result, error) {
	loop := pingpong[struct{}]
	loop(warmup(n))
	return perOp(loop(n), n), nil
}

// pingpong runs n round trips of a zero T between the calling goroutine and one it
// starts, over two unbuffered channels, and returns the time of the n round trips.
func pingpong[T any](n int) time.Duration {
	ping, pong := make(chan T), make(chan T)
	go func() {
		for i := 0; i < n; i++ {
			pong <- <-ping
		}
	}()
	var v T
	start := time.Now()
	for i := 0; i < n; i++ {
		ping <- v
		v = <-pong
	}
	return time.Since(start)
}

func sleepCase(n int) (result, error) {
	const want = time.Millisecond
	var over time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		time.Sleep(want)
		over += time.Since(start) - want
	}
	return perOp(over, n), nil
}

func spawnParkedCase(n int) (result, error) {
	base, err := statusBytes("VmRSS")
	if err != nil {
		return result{}, err
	}
	release := make(chan struct{})
	var parked atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			parked.Add(1)
			<-release
			wg.Done()
		}()
	}
	for parked.Load() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	peak, err := statusBytes("VmHWM")
	if err != nil {
		return result{}, err
	}
	close(release)
	wg.Wait()
	res := perOp(time.Since(start), n)
	bytes := float64(peak-base) / float64(n)
	res.BytesPerOp = &bytes
	return res, nil
}

// scopeChildren is how many goroutines each scope of scope_spawn_join_100 starts.
const scopeChildren = 100

// scopeSpawnJoinCase: one op is one scope: scopeChildren goroutines, each adding its
// index to one shared counter, waited for with a sync.WaitGroup.
func scopeSpawnJoinCase(n int) (result, error) {
	var sum atomic.Uint64
	loop := func(n int) {
		for i := 0; i < n; i++ {
			var wg sync.WaitGroup
			wg.Add(scopeChildren)
			for c := 0; c < scopeChildren; c++ {
				go func(c uint64) {
					sum.Add(c)
					wg.Done()
				}(uint64(c))
			}
			wg.Wait()
		}
	}
	loop(warmup(n))
	start := time.Now()
	loop(n)
	d := time.Since(start)
	want := uint64(warmup(n)+n) * (scopeChildren * (scopeChildren - 1) / 2)
	if got := sum.Load(); got != want {
		return result{}, fmt.Errorf("children added %d, expected %d", got, want)
	}
	return perOp(d, n), nil
}

// mailboxSize is the capacity of the actor's mailbox in actor_tell and actor_ask.
const mailboxSize = 1024

// actorMsg is a message to the actor: Add(add) when reply is nil, else Get(reply).
type actorMsg struct {
	add   uint64
	reply chan uint64
}

// actor is the driver's end of a goroutine owning a counter and looping on a bounded
// mailbox until it is closed; done receives the final counter.
type actor struct {
	mailbox chan actorMsg
	done    chan uint64
}

func startActor() *actor {
	a := &actor{mailbox: make(chan actorMsg, mailboxSize), done: make(chan uint64, 1)}
	go func() {
		var count uint64
		for msg := range a.mailbox {
			if msg.reply == nil {
				count += msg.add
			} else {
				msg.reply <- count
			}
		}
		a.done <- count
	}()
	return a
}

// tells sends n fire-and-forget Add(1)s.
func (a *actor) tells(n int) {
	for i := 0; i < n; i++ {
		a.mailbox <- actorMsg{add: 1}
	}
}

// ask is one round trip: a Get carrying a new reply channel of capacity 1.
func (a *actor) ask() uint64 {
	reply := make(chan uint64, 1)
	a.mailbox <- actorMsg{reply: reply}
	return <-reply
}

// stop closes the mailbox and checks the actor's final counter is want.
func (a *actor) stop(want uint64) error {
	close(a.mailbox)
	if got := <-a.done; got != want {
		return fmt.Errorf("actor ended with %d, expected %d", got, want)
	}
	return nil
}

// actorTellCase: one op is one Add(1); the clock stops after a final ask, when the
// actor has handled every tell.
func actorTellCase(n int) (result, error) {
	a := startActor()
	w := uint64(warmup(n))
	a.tells(warmup(n))
	if got := a.ask(); got != w {
		return result{}, fmt.Errorf("actor counted %d, expected %d", got, w)
	}
	start := time.Now()
	a.tells(n)
	count := a.ask()
	d := time.Since(start)
	if count != w+uint64(n) {
		return result{}, fmt.Errorf("actor counted %d, expected %d", count, w+uint64(n))
	}
	if err := a.stop(w + uint64(n)); err != nil {
		return result{}, err
	}
	return perOp(d, n), nil
}

// actorAskCase: one op is one Get and its reply; the actor is told nothing, so every
// reply must be 0.
func actorAskCase(n int) (result, error) {
	a := startActor()
	loop := func(n int) error {
		for i := 0; i < n; i++ {
			if got := a.ask(); got != 0 {
				return fmt.Errorf("actor replied %d, expected 0", got)
			}
		}
		return nil
	}
	if err := loop(warmup(n)); err != nil {
		return result{}, err
	}
	start := time.Now()
	if err := loop(n); err != nil {
		return result{}, err
	}
	d := time.Since(start)
	if err := a.stop(0); err != nil {
		return result{}, err
	}
	return perOp(d, n), nil
}

// The chan suite: see bench/src/chan_suite/mod.rs for the shape of each case. Every
// message is a uint64, as in the Rust rows.

func chanPingpongCase(n int) (result, error) {
	loop := pingpong[uint64]
	loop(warmup(n))
	return perOp(loop(n), n), nil
}

// prodConsBatch is how many sends a producer claims at a time in the prodcons cases,
// as in Go's own BenchmarkChanProdCons.
const prodConsBatch = 1000

// prodConsCase is the shape of Go's BenchmarkChanProdCons{0,10,100} with localWork = 0:
// GOMAXPROCS producers claim batches of prodConsBatch sends from a shared counter, then
// each sends a 0 sentinel; GOMAXPROCS consumers receive until they get a sentinel. One
// op is one message; n is rounded down to whole batches (at least one).
func prodConsCase(size int) func(n int) (result, error) {
	return func(n int) (result, error) {
		loop := func(n int) (time.Duration, int) {
			procs := runtime.GOMAXPROCS(0)
			batches := max(n/prodConsBatch, 1)
			var left atomic.Int64
			left.Store(int64(batches))
			c := make(chan uint64, size)
			var wg sync.WaitGroup
			start := time.Now()
			wg.Add(2 * procs)
			for p := 0; p < procs; p++ {
				go func() {
					defer wg.Done()
					for left.Add(-1) >= 0 {
						for i := 0; i < prodConsBatch; i++ {
							c <- 1
						}
					}
					c <- 0
				}()
				go func() {
					defer wg.Done()
					for <-c != 0 {
					}
				}()
			}
			wg.Wait()
			return time.Since(start), batches * prodConsBatch
		}
		loop(warmup(n))
		d, msgs := loop(n)
		return perOp(d, msgs), nil
	}
}

// pipesCase: producers send n messages in total (split evenly) into one channel of the
// given size, then the channel is closed; consumers receive until it is closed. One op
// is one message.
func pipesCase(producers, consumers, size int) func(n int) (result, error) {
	return func(n int) (result, error) {
		loop := func(n int) (time.Duration, error) {
			c := make(chan uint64, size)
			var received atomic.Int64
			var sent, done sync.WaitGroup
			start := time.Now()
			sent.Add(producers)
			done.Add(consumers)
			for p := 0; p < producers; p++ {
				go func(count int) {
					defer sent.Done()
					for i := 0; i < count; i++ {
						c <- uint64(i)
					}
				}(share(n, producers, p))
			}
			for q := 0; q < consumers; q++ {
				go func() {
					defer done.Done()
					got := int64(0)
					for range c {
						got++
					}
					received.Add(got)
				}()
			}
			sent.Wait()
			close(c)
			done.Wait()
			d := time.Since(start)
			if got := received.Load(); got != int64(n) {
				return d, fmt.Errorf("received %d of %d messages", got, n)
			}
			return d, nil
		}
		if _, err := loop(warmup(n)); err != nil {
			return result{}, err
		}
		d, err := loop(n)
		return perOp(d, n), err
	}
}

// share is party i's part of n operations split over k parties: n/k, plus one for the
// first n%k parties.
func share(n, k, i int) int {
	if i < n%k {
		return n/k + 1
	}
	return n / k
}

// nonblockingCase is Go's BenchmarkChanNonblocking for one goroutine: a receive with
// default on an empty unbuffered channel. One op is one try.
func nonblockingCase(n int) (result, error) {
	c := make(chan uint64)
	loop := func(n int) (hits int) {
		for i := 0; i < n; i++ {
			select {
			case <-c:
				hits++
			default:
			}
		}
		return hits
	}
	loop(warmup(n))
	start := time.Now()
	hits := loop(n)
	d := time.Since(start)
	if hits != 0 {
		return result{}, fmt.Errorf("received %d messages from an empty channel", hits)
	}
	return perOp(d, n), nil
}

// The select suite: see bench/src/select_suite/mod.rs.

// select2UncontendedCase is Go's BenchmarkSelectUncontended for one goroutine: two
// channels of size 1, one holding a value; each select takes it from one and puts it in
// the other. One op is one select and one send.
func select2UncontendedCase(n int) (result, error) {
	c1, c2 := make(chan uint64, 1), make(chan uint64, 1)
	c1 <- 0
	loop := func(n int) {
		for i := 0; i < n; i++ {
			select {
			case <-c1:
				c2 <- 0
			case <-c2:
				c1 <- 0
			}
		}
	}
	loop(warmup(n))
	start := time.Now()
	loop(n)
	return perOp(time.Since(start), n), nil
}

// selectSyncContendedCase is Go's BenchmarkSelectSyncContended with GOMAXPROCS pairs:
// per pair a sender that selects over sending on three shared unbuffered channels or
// receiving from done, and a receiver that selects over receiving from the three. The
// receivers make n receives in total; one op is one receive. The senders are stopped
// (by closing done) after the clock stops.
func selectSyncContendedCase(n int) (result, error) {
	loop := func(n int) time.Duration {
		procs := runtime.GOMAXPROCS(0)
		c1, c2, c3 := make(chan uint64), make(chan uint64), make(chan uint64)
		done := make(chan uint64)
		var senders, receivers sync.WaitGroup
		start := time.Now()
		senders.Add(procs)
		receivers.Add(procs)
		for p := 0; p < procs; p++ {
			go func() {
				defer senders.Done()
				for {
					select {
					case c1 <- 0:
					case c2 <- 0:
					case c3 <- 0:
					case <-done:
						return
					}
				}
			}()
			go func(count int) {
				defer receivers.Done()
				for i := 0; i < count; i++ {
					select {
					case <-c1:
					case <-c2:
					case <-c3:
					}
				}
			}(share(n, procs, p))
		}
		receivers.Wait()
		d := time.Since(start)
		close(done)
		senders.Wait()
		return d
	}
	loop(warmup(n))
	return perOp(loop(n), n), nil
}

// statusBytes reads a kB field of /proc/self/status, in bytes.
func statusBytes(field string) (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad %s line %q: %v", field, line, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s in /proc/self/status", field)
}

// The capi suite: see bench/src/capi_suite/mod.rs. The C API's shapes with Go's own
// element types: uint32 (4 bytes), [64]byte, and a []byte of a 64 KiB buffer for pointer
// mode.

var capiPayload = make([]byte, 64*1024)

func capiPingpongCase(n int) (result, error) {
	loop := pingpong[uint32]
	loop(warmup(n))
	return perOp(loop(n), n), nil
}

// capiPipesCase: producers send n elements in total into a channel of 1024, then it is
// closed; consumers receive until it is closed. One op is one message.
func capiPipesCase[T any](producers, consumers int, make_ func(int) T) func(n int) (result, error) {
	return func(n int) (result, error) {
		loop := func(n int) (time.Duration, error) {
			c := make(chan T, 1024)
			var received atomic.Int64
			var sent, done sync.WaitGroup
			start := time.Now()
			sent.Add(producers)
			done.Add(consumers)
			for p := 0; p < producers; p++ {
				go func(count int) {
					defer sent.Done()
					for i := 0; i < count; i++ {
						c <- make_(i)
					}
				}(share(n, producers, p))
			}
			for q := 0; q < consumers; q++ {
				go func() {
					defer done.Done()
					got := int64(0)
					for range c {
						got++
					}
					received.Add(got)
				}()
			}
			sent.Wait()
			close(c)
			done.Wait()
			d := time.Since(start)
			if got := received.Load(); got != int64(n) {
				return d, fmt.Errorf("received %d of %d messages", got, n)
			}
			return d, nil
		}
		if _, err := loop(warmup(n)); err != nil {
			return result{}, err
		}
		d, err := loop(n)
		return perOp(d, n), err
	}
}
