package chatapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A call whose send deadline has passed is not sent at all: the server
// sees nothing, the observer sees no attempt, and the error is
// ErrSendDeadline (retryable). The client's next calls go out as usual, with
// their whole body and its length.
func TestSendDeadlineStopsALateCallBeforeItLeaves(t *testing.T) {
	t.Parallel()
	var seen atomic.Int64
	var bad atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		body, _ := io.ReadAll(r.Body)
		if r.ContentLength != int64(len(body)) || len(r.TransferEncoding) != 0 || !strings.Contains(string(body), `"GroupId":"g"`) {
			bad.Store(fmt.Sprintf("Content-Length %d, Transfer-Encoding %v, body %q", r.ContentLength, r.TransferEncoding, body))
		}
		io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0}`)
	}))
	defer srv.Close()
	var observed atomic.Int64
	c, err := New(Config{SDKAppID: 1400000001, SecretKey: "k", BaseURL: srv.URL, Observer: func(CallInfo) { observed.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	req := &ClearGroupMsgRequest{GroupId: "g"}

	late := WithSendDeadline(context.Background(), time.Now().Add(-time.Millisecond))
	_, err = c.ClearGroupMsg(late, req)
	if !errors.Is(err, ErrSendDeadline) || Classify(err) != ClassRetry {
		t.Fatalf("late call: error %v (class %v), want ErrSendDeadline, retryable", err, Classify(err))
	}
	if seen.Load() != 0 || observed.Load() != 0 {
		t.Fatalf("late call: the server saw %d requests and the observer %d attempts; want none", seen.Load(), observed.Load())
	}

	for i, ctx := range []context.Context{context.Background(), WithSendDeadline(context.Background(), time.Now().Add(time.Minute))} {
		if _, err := c.ClearGroupMsg(ctx, req); err != nil {
			t.Fatalf("call %d after the late one: %v", i, err)
		}
	}
	if seen.Load() != 2 || observed.Load() != 2 {
		t.Fatalf("the server saw %d requests and the observer %d attempts; want 2 and 2", seen.Load(), observed.Load())
	}
	if v := bad.Load(); v != nil {
		t.Fatalf("a request arrived without its whole body or with the wrong length: %v", v)
	}
	if WithSendDeadline(context.Background(), time.Time{}) != context.Background() {
		t.Fatal("a zero deadline changed the context")
	}
}

// The deadline is checked with the request built, right before it is
// written: a call held up after its body, UserSig and URL are ready (as a
// process kept off the CPU would be) is refused and nothing reaches the
// server, over plain HTTP/1.1 and over TLS (HTTP/1.1 though the server
// offers HTTP/2 too). A call in time goes out, on a kept-alive connection
// or on one dialed for it.
func TestSendDeadlineIsCheckedWhenTheRequestIsReady(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			t.Parallel()
			var handled, notHTTP1 atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				handled.Add(1)
				if r.ProtoMajor != 1 {
					notHTTP1.Add(1)
				}
				io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0}`)
			}))
			if useTLS {
				srv.EnableHTTP2 = true // offered; the client must still speak HTTP/1.1
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			c, err := New(Config{SDKAppID: 1400000001, SecretKey: "k", BaseURL: srv.URL})
			if err != nil {
				t.Fatal(err)
			}
			if useTLS {
				c.tr.hc.TLSConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
			}
			defer c.tr.closeIdle()
			var hold atomic.Int64 // how long the next request is held once built
			c.tr.ready = func() { time.Sleep(time.Duration(hold.Swap(0))) }
			req := &ClearGroupMsgRequest{GroupId: "g"}
			for i, step := range []struct {
				hold, slack time.Duration
				late        bool
			}{
				{0, 10 * time.Second, false},                         // dials and goes out
				{50 * time.Millisecond, 10 * time.Millisecond, true}, // held past its deadline: refused
				{0, 10 * time.Second, false},                         // kept alive, goes out
				{50 * time.Millisecond, 10 * time.Second, false},     // held but in time
				{50 * time.Millisecond, 10 * time.Millisecond, true},
			} {
				hold.Store(int64(step.hold))
				ctx := WithSendDeadline(context.Background(), time.Now().Add(step.slack))
				_, err := c.ClearGroupMsg(ctx, req)
				if step.late != errors.Is(err, ErrSendDeadline) || (!step.late && err != nil) {
					t.Fatalf("step %d: error %v; want late %v", i, err, step.late)
				}
			}
			time.Sleep(50 * time.Millisecond) // anything sent would have arrived by now
			if handled.Load() != 3 || notHTTP1.Load() != 0 {
				t.Fatalf("the server handled %d requests (%d not HTTP/1.x); want 3, all HTTP/1.1 (the late calls must send nothing)", handled.Load(), notHTTP1.Load())
			}
		})
	}
}

// A call that finds no free connection dials one; if the dial ends past the
// call's send deadline (a slow handshake, or a process that noticed the
// connection late), the call is not sent and the new connection is kept:
// the next call goes out on it without dialing again.
func TestSendDeadlineIsCheckedAfterADial(t *testing.T) {
	t.Parallel()
	srv, handled, conns := countingServer(t)
	c := newTestClient(t, srv.URL)
	var dials atomic.Int64
	c.tr.hc.DialTimeout = func(addr string, timeout time.Duration) (net.Conn, error) {
		dials.Add(1)
		time.Sleep(50 * time.Millisecond)
		return (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
	}
	req := &ClearGroupMsgRequest{GroupId: "g"}

	ctx := WithSendDeadline(context.Background(), time.Now().Add(10*time.Millisecond))
	if _, err := c.ClearGroupMsg(ctx, req); !errors.Is(err, ErrSendDeadline) {
		t.Fatalf("call whose dial ended past its send deadline: error %v, want ErrSendDeadline", err)
	}
	time.Sleep(50 * time.Millisecond) // anything sent would have arrived by now
	if handled.Load() != 0 {
		t.Fatalf("the server handled %d requests after a dial past the send deadline; want none", handled.Load())
	}
	ctx = WithSendDeadline(context.Background(), time.Now().Add(time.Second))
	if _, err := c.ClearGroupMsg(ctx, req); err != nil {
		t.Fatalf("next call, on the connection dialed for the late one: %v", err)
	}
	if handled.Load() != 1 || dials.Load() != 1 || conns.Load() != 1 {
		t.Fatalf("server handled %d requests on %d connections after %d dials; want 1, 1 and 1 (the late call's connection kept for the next)",
			handled.Load(), conns.Load(), dials.Load())
	}
}

// countingServer starts a server, closed when the test ends, that answers
// every request OK and counts the requests it handled and the connections
// it accepted.
func countingServer(t *testing.T) (srv *httptest.Server, handled, conns *atomic.Int64) {
	handled, conns = new(atomic.Int64), new(atomic.Int64)
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, handled, conns
}

// A call refused as late on a kept-alive connection gives the connection
// back without restarting its idle time if it was in use moments ago, and
// closes it if it had been idle for a while: fasthttp counts idle time from
// the last release, and the connection must not outlive idleConnTimeout by
// a refusal (the server may close it by then, failing the next call).
func TestRefusedCallKeepsOnlyARecentlyUsedConnection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		idle      time.Duration // between the first call and the refused one
		wantConns int64
	}{
		{"just used: kept", 0, 1},
		{"idle a while: closed", reuseAfterRefusal + 100*time.Millisecond, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, handled, conns := countingServer(t)
			c := newTestClient(t, srv.URL)
			var hold atomic.Int64
			c.tr.ready = func() { time.Sleep(time.Duration(hold.Swap(0))) }
			req := &ClearGroupMsgRequest{GroupId: "g"}
			if _, err := c.ClearGroupMsg(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tc.idle)
			hold.Store(int64(30 * time.Millisecond))
			late := WithSendDeadline(context.Background(), time.Now().Add(10*time.Millisecond))
			if _, err := c.ClearGroupMsg(late, req); !errors.Is(err, ErrSendDeadline) {
				t.Fatalf("call held past its send deadline: error %v, want ErrSendDeadline", err)
			}
			if _, err := c.ClearGroupMsg(context.Background(), req); err != nil {
				t.Fatal(err)
			}
			if handled.Load() != 2 || conns.Load() != tc.wantConns {
				t.Fatalf("server handled %d requests on %d connections; want 2 on %d", handled.Load(), conns.Load(), tc.wantConns)
			}
		})
	}
}

// The repeat after a UserSig refusal answers for a call already sent in
// its slot, a round trip before: it is not held to the send deadline.
func TestResignRepeatIsNotHeldToTheSendDeadline(t *testing.T) {
	t.Parallel()
	var seen atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(30 * time.Millisecond) // the deadline passes during the first call
		if seen.Add(1) == 1 {
			io.WriteString(w, `{"ActionStatus":"FAIL","ErrorCode":70001,"ErrorInfo":"UserSig expired"}`)
			return
		}
		io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0}`)
	}))
	defer srv.Close()
	c, err := New(Config{SDKAppID: 1400000001, SecretKey: "k", BaseURL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.sig.get(); err != nil { // sign before the deadline starts
		t.Fatal(err)
	}
	ctx := WithSendDeadline(context.Background(), time.Now().Add(10*time.Millisecond))
	if _, err := c.ClearGroupMsg(ctx, &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
		t.Fatalf("call with a UserSig refusal and a repeat: %v", err)
	}
	if seen.Load() != 2 {
		t.Fatalf("the server saw %d requests, want 2 (the call and its repeat)", seen.Load())
	}
}
