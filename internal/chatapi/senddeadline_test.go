package chatapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
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

// A call still in time when handed to the HTTP client but late by the time
// its kept-alive connection is written to is refused by the connection:
// nothing reaches the server, over plain HTTP/1.1 or TLS (where the server
// offers HTTP/2 too), and the transport does not send it again on another.
// A call on a connection opened for it is sent, late or not.
func TestSendDeadlineIsCheckedAtTheConnection(t *testing.T) {
	t.Parallel()
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "http", true: "https"}[useTLS], func(t *testing.T) {
			t.Parallel()
			var handled, active atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				handled.Add(1)
				io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0}`)
			}))
			srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateActive { // the first bytes of a request arrived
					active.Add(1)
				}
			}
			hc := NewHTTPClient()
			if useTLS {
				srv.EnableHTTP2 = true // offered; the client must still speak HTTP/1.1
				srv.StartTLS()
				hc.Transport.(*http.Transport).TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
			} else {
				srv.Start()
			}
			defer srv.Close()
			c, err := New(Config{SDKAppID: 1400000001, SecretKey: "k", BaseURL: srv.URL, HTTPClient: hc})
			if err != nil {
				t.Fatal(err)
			}
			req := &ClearGroupMsgRequest{GroupId: "g"}
			// Sign the UserSig now: the first signing can take longer
			// (under -race) than the deadlines below, which would then
			// pass before the request reached the HTTP client at all.
			if _, err := c.sig.get(); err != nil {
				t.Fatal(err)
			}
			// slow holds a request between getting its connection and
			// writing to it, as a process kept off the CPU would.
			slow := func(d time.Duration) context.Context {
				ctx := WithSendDeadline(context.Background(), time.Now().Add(d))
				return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { time.Sleep(50 * time.Millisecond) }})
			}
			for i, step := range []struct {
				ctx  func() context.Context
				late bool
			}{
				// A new connection is ready only after its dial (here held
				// up 50 ms): the call goes out, or no call would ever go
				// out where a handshake takes longer than the slack.
				{func() context.Context { return slow(10 * time.Millisecond) }, false},
				// On the kept-alive one: refused, and that connection closed,
				{func() context.Context { return slow(10 * time.Millisecond) }, true},
				// so this one opens a new one and goes out;
				{func() context.Context { return slow(10 * time.Millisecond) }, false},
				// kept alive again: refused.
				{func() context.Context { return slow(10 * time.Millisecond) }, true},
				{func() context.Context { return slow(10 * time.Second) }, false}, // slow but in time
				{context.Background, false},
			} {
				_, err := c.ClearGroupMsg(step.ctx(), req)
				if step.late != errors.Is(err, ErrSendDeadline) {
					t.Fatalf("step %d: error %v; late %v", i, err, step.late)
				}
			}
			time.Sleep(50 * time.Millisecond) // anything sent would have arrived by now
			if handled.Load() != 4 || active.Load() != 4 {
				t.Fatalf("the server handled %d requests and saw %d start; want 4 and 4 (the late calls on kept-alive connections must send nothing)", handled.Load(), active.Load())
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
