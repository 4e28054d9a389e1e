package chatapi

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(LingeringGoroutines[0]), goleak.IgnoreAnyFunction(LingeringGoroutines[1]))
}

const (
	testApp  uint64 = 1400000001
	testKey         = "5bd2850fff3ecb11d7c805251c51ee463a25727bddc2385f3fa8bfee1bb93b5e"
	okAnswer        = `{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0}`
)

// recorded is one request the fake API received.
type recorded struct {
	Method      string
	Path        string
	RawQuery    string
	Query       url.Values
	ContentType string
	Body        []byte
}

// fakeAPI is an httptest server that records every request and answers with
// a scripted handler; n is the request's 1-based number.
type fakeAPI struct {
	srv *httptest.Server

	mu   sync.Mutex
	reqs []recorded
}

func newFakeAPI(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, n int)) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("fake API: read body: %v", err)
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{
			Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Query: r.URL.Query(),
			ContentType: r.Header.Get("Content-Type"), Body: body,
		})
		n := len(f.reqs)
		f.mu.Unlock()
		answer(w, r, n)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

// always answers every request with status and body.
func always(status int, body string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, _ *http.Request, _ int) { reply(w, status, body) }
}

func reply(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// hang blocks until the client goes away (or a safety timeout).
func hang(_ http.ResponseWriter, r *http.Request, _ int) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// newTestClient returns a Client for base with a per-test HTTP client whose
// idle connections are closed when the test ends. mods adjust the Config.
func newTestClient(t *testing.T, base string, mods ...func(*Config)) *Client {
	t.Helper()
	cfg := Config{SDKAppID: testApp, SecretKey: testKey, BaseURL: base, Timeout: 5 * time.Second}
	for _, mod := range mods {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.tr.closeIdle)
	return c
}

// serveInMemory points c's connections at h, served over an in-memory
// listener instead of the network, until the test ends.
func serveInMemory(tb testing.TB, c *Client, h http.Handler) {
	tb.Helper()
	ln := newPipeListener()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	tr := c.tr.hc.Transport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return ln.dial(ctx) }
	c.tr.hc = &http.Client{Transport: tr, CheckRedirect: c.tr.hc.CheckRedirect}
	tb.Cleanup(func() { c.tr.closeIdle(); _ = srv.Close() })
}

// sigLog wraps the client's signer to record every sig it makes.
type sigLog struct {
	mu   sync.Mutex
	sigs []string
}

func recordSigs(c *Client) *sigLog {
	l := &sigLog{}
	sign := c.sig.sign
	c.sig.sign = func(expire int) (string, error) {
		sig, err := sign(expire)
		l.mu.Lock()
		l.sigs = append(l.sigs, sig)
		l.mu.Unlock()
		return sig, err
	}
	return l
}

func (l *sigLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.sigs...)
}

// sigDoc is a decoded UserSig.
type sigDoc struct {
	Ver        string `json:"TLS.ver"`
	Identifier string `json:"TLS.identifier"`
	SDKAppID   int64  `json:"TLS.sdkappid"`
	Expire     int64  `json:"TLS.expire"`
	Time       int64  `json:"TLS.time"`
	Sig        string `json:"TLS.sig"`
}

// verifySig decodes a UserSig the way Tencent does and checks it was signed
// with key for app and identifier, and is unexpired.
func verifySig(sig, key string, app uint64, identifier string) (sigDoc, error) {
	var doc sigDoc
	std := strings.NewReplacer("*", "+", "-", "/", "_", "=").Replace(sig)
	raw, err := base64.StdEncoding.DecodeString(std)
	if err != nil {
		return doc, fmt.Errorf("base64: %w", err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return doc, fmt.Errorf("zlib: %w", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		return doc, fmt.Errorf("inflate: %w", err)
	}
	if err := json.Unmarshal(plain, &doc); err != nil {
		return doc, fmt.Errorf("json: %w", err)
	}
	if doc.Ver != "2.0" || doc.Identifier != identifier || uint64(doc.SDKAppID) != app {
		return doc, fmt.Errorf("sig is for %q/%d (ver %s), want %q/%d", doc.Identifier, doc.SDKAppID, doc.Ver, identifier, app)
	}
	content := "TLS.identifier:" + doc.Identifier + "\n" +
		"TLS.sdkappid:" + strconv.FormatInt(doc.SDKAppID, 10) + "\n" +
		"TLS.time:" + strconv.FormatInt(doc.Time, 10) + "\n" +
		"TLS.expire:" + strconv.FormatInt(doc.Expire, 10) + "\n"
	h := hmac.New(sha256.New, []byte(key))
	h.Write([]byte(content))
	if want := base64.StdEncoding.EncodeToString(h.Sum(nil)); want != doc.Sig {
		return doc, errors.New("HMAC mismatch")
	}
	if time.Now().Unix() > doc.Time+doc.Expire {
		return doc, errors.New("expired")
	}
	return doc, nil
}

// assertNoSecrets fails if s holds the key or any of sigs, raw or
// query-escaped, or the first or last 32 bytes of one (a truncated quote).
func assertNoSecrets(t *testing.T, what, s string, sigs ...string) {
	t.Helper()
	for _, secret := range append([]string{testKey}, sigs...) {
		if secret == "" {
			continue
		}
		if strings.Contains(s, secret) || strings.Contains(s, url.QueryEscape(secret)) ||
			(len(secret) > 32 && (strings.Contains(s, secret[:32]) || strings.Contains(s, secret[len(secret)-32:]))) {
			t.Errorf("%s leaks a secret: %s", what, s)
		}
	}
}

// assertErrNoSecrets checks every printed form of err, and of every error in
// its chain, for secrets.
func assertErrNoSecrets(t *testing.T, err error, sigs ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error")
	}
	var walk func(e error)
	walk = func(e error) {
		if e == nil {
			return
		}
		assertNoSecrets(t, "Error()", e.Error(), sigs...)
		assertNoSecrets(t, "%v", fmt.Sprintf("%v", e), sigs...)
		assertNoSecrets(t, "%+v", fmt.Sprintf("%+v", e), sigs...)
		assertNoSecrets(t, "%#v", fmt.Sprintf("%#v", e), sigs...)
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, inner := range u.Unwrap() {
				walk(inner)
			}
		}
	}
	walk(err)
}

func ptr[T any](v T) *T { return &v }

// decodeJSON decodes s into a generic value for comparing JSON documents.
func decodeJSON(t *testing.T, s []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(s, &v); err != nil {
		t.Fatalf("not JSON: %v: %s", err, s)
	}
	return v
}

// pipeListener is an in-memory net.Listener: each dial is one net.Pipe.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { l.once.Do(func() { close(l.closed) }); return nil }

func (l *pipeListener) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "pipe"} }

func (l *pipeListener) dial(ctx context.Context) (net.Conn, error) {
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
