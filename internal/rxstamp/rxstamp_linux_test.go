package rxstamp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"testing"
	"time"
)

// serve runs an HTTP server on a stamped loopback listener whose handler
// answers with how long before the handler ran the request arrived, in
// nanoseconds, or "none". The server starts only after start is closed.
func serve(t *testing.T, start <-chan struct{}) (addr string, hs *http.Server) {
	t.Helper()
	ln, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs = &http.Server{
		ConnContext:       ConnContext,
		ReadHeaderTimeout: 300 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			at, ok := Received(r.Context())
			if !ok {
				io.WriteString(w, "none")
				return
			}
			fmt.Fprint(w, time.Since(at).Nanoseconds())
		}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-start
		hs.Serve(ln)
	}()
	t.Cleanup(func() {
		hs.Close()
		ln.Close()
		<-done
	})
	return ln.Addr().String(), hs
}

func readAge(t *testing.T, br *bufio.Reader) time.Duration {
	t.Helper()
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	ns, err := strconv.ParseInt(string(body), 10, 64)
	if err != nil {
		t.Fatalf("answer %q: want the request's age in ns", body)
	}
	return time.Duration(ns)
}

// awaitKernelStamping returns once the kernel stamps incoming segments. Linux
// turns receive stamping on system-wide a moment after the first
// socket asks for it (the switch is deferred work), and off again after the
// last one closes; segments that arrive in between carry no stamp. A probe
// server, kept open until the test ends, holds stamping on.
func awaitKernelStamping(t *testing.T) {
	t.Helper()
	start := make(chan struct{})
	close(start)
	addr, _ := serve(t, start)
	client := &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := client.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if _, err := strconv.ParseInt(string(body), 10, 64); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the kernel stamped no request within 10s (answer %q)", body)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A request that waits in the kernel while the server is not reading keeps
// the time it arrived, not the time it was read; the next request on the
// same connection gets its own stamp.
func TestReceivedIsWhenTheKernelGotTheRequest(t *testing.T) {
	awaitKernelStamping(t)
	start := make(chan struct{})
	addr, _ := serve(t, start)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	const held = 300 * time.Millisecond
	time.Sleep(held) // the server is not accepting yet; the request waits in the kernel
	close(start)
	br := bufio.NewReader(c)
	if age := readAge(t, br); age < held {
		t.Fatalf("first request: stamped %v before the handler ran; want at least %v (the time it waited unread)", age, held)
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	if age := readAge(t, br); age >= held {
		t.Fatalf("second request: stamped %v before the handler ran; it kept the first request's stamp", age)
	}
}

// Stamped connections keep Go's HTTP server behaviour: keep-alive across
// requests, and ReadHeaderTimeout closing a connection that stalls.
func TestStampedConnectionsKeepHTTPBehaviour(t *testing.T) {
	start := make(chan struct{})
	close(start)
	addr, _ := serve(t, start)

	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	reused := 0
	for i := range 3 {
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if info.Reused {
				reused++
			}
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, "http://"+addr+"/", nil)
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if _, err := strconv.ParseInt(string(body), 10, 64); err != nil {
			t.Fatalf("request %d answered %q; want a stamp's age", i, body)
		}
	}
	if reused != 2 {
		t.Fatalf("%d of the 2 later requests reused the connection; want 2", reused)
	}

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\n") // and never the rest
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("a stalled request's connection was not closed by ReadHeaderTimeout: %v", err)
	}
}

func TestReceivedWithoutAStampedConnection(t *testing.T) {
	if _, ok := Received(context.Background()); ok {
		t.Fatal("Received reported a stamp for a context with no connection")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if ctx := ConnContext(context.Background(), a); ctx != context.Background() {
		t.Fatal("ConnContext changed the context of an unstamped connection")
	}
}
