package chatapi

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// With HTTP_PROXY set, the client reaches the API through the proxy, as
// Go's own HTTP client does; NO_PROXY exempts a host.
func TestProxyFromEnvironment(t *testing.T) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ActionStatus":"OK","ErrorCode":0}`)
	}))
	defer api.Close()
	var tunnels atomic.Int64
	proxy := startConnectProxy(t, api.Listener.Addr().String(), &tunnels)

	t.Setenv("HTTP_PROXY", "http://"+proxy)
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("NO_PROXY", "")
	// Not a loopback name: loopback hosts are never proxied. The proxy
	// takes the tunnel to the test server whatever name it was asked for.
	c := newTestClient(t, "http://api.timq.invalid")
	for range 2 {
		if _, err := c.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
			t.Fatalf("call through the proxy: %v", err)
		}
	}
	if n := tunnels.Load(); n != 1 {
		t.Fatalf("the proxy opened %d tunnels, want 1 (two calls on one kept-alive connection)", n)
	}

	t.Setenv("NO_PROXY", "api.timq.invalid")
	direct := newTestClient(t, "http://api.timq.invalid")
	if _, err := direct.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err == nil {
		t.Fatal("call to an unresolvable host exempted by NO_PROXY succeeded; want it to go direct and fail")
	}
	if n := tunnels.Load(); n != 1 {
		t.Fatalf("the proxy opened %d tunnels, want still 1", n)
	}

	// Loopback hosts never go through a proxy, as with net/http: the
	// emulator on 127.0.0.1 stays reachable behind a corporate proxy.
	t.Setenv("NO_PROXY", "")
	local := newTestClient(t, api.URL)
	if _, err := local.ClearGroupMsg(t.Context(), &ClearGroupMsgRequest{GroupId: "g"}); err != nil {
		t.Fatalf("call to a loopback host with HTTP_PROXY set: %v", err)
	}
	if n := tunnels.Load(); n != 1 {
		t.Fatalf("the proxy opened %d tunnels, want still 1 (loopback goes direct)", n)
	}

	// A proxy scheme the transport cannot speak is refused when the client
	// is made, without quoting the setting (it may hold a password).
	t.Setenv("HTTPS_PROXY", "ftp://user:hunter2@proxy.timq.invalid:3128")
	_, err := New(Config{SDKAppID: testApp, SecretKey: testKey, BaseURL: "https://api.timq.invalid"})
	if err == nil || !strings.Contains(err.Error(), "HTTPS_PROXY") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("New with an ftp:// proxy: %v, want an error naming the setting without its password", err)
	}
}

// startConnectProxy serves as an HTTP proxy on loopback: a CONNECT tunnel,
// or plain requests for http:// URLs, go to target whatever host they name.
// It counts the connections it opened to target.
func startConnectProxy(t *testing.T, target string, tunnels *atomic.Int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				up, err := net.Dial("tcp", target)
				if err != nil {
					io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					return
				}
				defer up.Close()
				tunnels.Add(1)
				if req.Method == http.MethodConnect {
					io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
				} else if err := req.Write(up); err != nil {
					// A plain request for an http:// URL: pass it and every
					// later one on this connection through.
					return
				}
				go func() { _, _ = io.Copy(up, br); up.Close() }()
				_, _ = io.Copy(conn, up)
			}()
		}
	}()
	return ln.Addr().String()
}
