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
