// The servers of the net suite, in Go: the same bytes and logic as the Rust servers
// (bench/src/net_suite/proto.rs, kcoro_net.rs), on Go's net package, one goroutine per
// connection (and one more per proxied connection for the way back).
//
// Usage: kcoro-bench-go serve <http|echo|proxy>   (GOMAXPROCS from the environment)
//
// It binds 127.0.0.1:0, prints "port <P>", serves until its stdin closes, then prints
// {"threads":[]} (goroutines move between threads, so there are no per-thread counts)
// and exits.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
)

// response is the one answer of the hello server; proto.rs RESPONSE is the same.
var response = []byte("HTTP/1.1 200 OK\r\nServer: kcoro-bench\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!")

// headEnd ends an HTTP request head.
var headEnd = []byte("\r\n\r\n")

// connBuf is what a server buffers per connection (proto.rs CONN_BUF).
const connBuf = 4096

func serveMain(service string) error {
	var handle func(net.Conn)
	var backend string
	switch service {
	case "http":
		handle = httpConn
	case "echo":
		handle = echoConn
	case "proxy":
		b, err := listen(echoConn)
		if err != nil {
			return err
		}
		backend = b.Addr().String()
		handle = func(c net.Conn) { proxyConn(c, backend) }
	default:
		return fmt.Errorf("no service %q (http, echo, proxy)", service)
	}
	l, err := listen(handle)
	if err != nil {
		return err
	}
	fmt.Printf("port %d\n", l.Addr().(*net.TCPAddr).Port)
	_, _ = io.Copy(io.Discard, os.Stdin)
	fmt.Println(`{"threads":[]}`)
	os.Exit(0)
	return nil
}

// listen binds 127.0.0.1:0 and runs an accept loop that starts handle per connection.
func listen(handle func(net.Conn)) (net.Listener, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return l, nil
}

// httpConn answers every complete request head, pipelined ones in one write.
// Go sets TCP_NODELAY on every TCP connection, as the Rust servers do by hand.
func httpConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, connBuf)
	out := make([]byte, 0, len(response))
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if m == 0 || err != nil {
			return
		}
		n += m
		requests, used := 0, 0
		for {
			end := bytes.Index(buf[used:n], headEnd)
			if end < 0 {
				break
			}
			requests++
			used += end + len(headEnd)
		}
		if requests == 0 {
			if n == len(buf) {
				return
			}
			continue
		}
		n = copy(buf, buf[used:n])
		out = out[:0]
		for i := 0; i < requests; i++ {
			out = append(out, response...)
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// echoConn writes back whatever arrives.
func echoConn(c net.Conn) {
	defer c.Close()
	buf := make([]byte, connBuf)
	for {
		n, err := c.Read(buf)
		if n == 0 || err != nil {
			return
		}
		if _, err := c.Write(buf[:n]); err != nil {
			return
		}
	}
}

// proxyConn connects to the backend and copies each way, the way back on its own
// goroutine. Read/Write loops rather than io.Copy, which would splice(2) and so measure
// a different copy than the Rust proxies do.
func proxyConn(client net.Conn, backend string) {
	defer client.Close()
	upstream, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer upstream.Close()
	done := make(chan struct{})
	go func() {
		pipe(upstream, client)
		close(done)
	}()
	pipe(client, upstream)
	<-done
}

// pipe copies from to to until from ends, then half-closes to.
func pipe(from, to net.Conn) {
	buf := make([]byte, connBuf)
	for {
		n, err := from.Read(buf)
		if n == 0 || err != nil {
			break
		}
		if _, err := to.Write(buf[:n]); err != nil {
			break
		}
	}
	if tc, ok := to.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}
