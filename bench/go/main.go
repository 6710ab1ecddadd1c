// Command kcoro-bench-go runs the Go peers of kcoro-bench.
//
// Usage: kcoro-bench-go <suite> <case> <n>
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
	"runtime/yield":              yieldCase,
	"runtime/spawn_join":         spawnJoinCase,
	"runtime/pingpong_park":      pingpongCase,
	"runtime/sleep_1ms_accuracy": sleepCase,
	"runtime/spawn_1m_parked":    spawnParkedCase,
}

func main() {
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
	loop := func(n int) time.Duration {
		ping, pong := make(chan struct{}), make(chan struct{})
		go func() {
			for i := 0; i < n; i++ {
				<-ping
				pong <- struct{}{}
			}
		}()
		start := time.Now()
		for i := 0; i < n; i++ {
			ping <- struct{}{}
			<-pong
		}
		return time.Since(start)
	}
	loop(warmup(n))
	return perOp(loop(n), n), nil
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
