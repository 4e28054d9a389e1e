package sim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/tencentyun/tls-sig-api-v2-golang/tencentyun"
	"github.com/timq/timq/internal/chatapi"
)

const (
	testApp   = 1400000001
	testKey   = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testAdmin = "administrator"
)

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now().Truncate(time.Second)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fixture is a Server with a valid admin UserSig.
type fixture struct {
	t   *testing.T
	srv *Server
	sig string
}

func setup(t *testing.T, cfg Config) *fixture {
	t.Helper()
	if cfg.SDKAppID == 0 {
		cfg.SDKAppID = testApp
	}
	if cfg.SecretKey == "" {
		cfg.SecretKey = testKey
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(srv.Close)
	return &fixture{t: t, srv: srv, sig: genSig(t, testApp, testKey, testAdmin)}
}

func genSig(t testing.TB, app int, key, id string) string {
	t.Helper()
	sig, err := tencentyun.GenUserSig(app, key, id, 86400)
	if err != nil {
		t.Fatalf("GenUserSig: %v", err)
	}
	return sig
}

// query returns a valid request query; mods may change it.
func (f *fixture) query(mods ...func(url.Values)) url.Values {
	q := url.Values{
		"sdkappid":    {"1400000001"},
		"identifier":  {testAdmin},
		"usersig":     {f.sig},
		"random":      {"12345"},
		"contenttype": {"json"},
	}
	for _, m := range mods {
		m(q)
	}
	return q
}

// raw posts body to path?query and returns the recorder.
func (f *fixture) raw(method, path string, q url.Values, body string) *httptest.ResponseRecorder {
	f.t.Helper()
	target := path
	if q != nil {
		target += "?" + q.Encode()
	}
	req := httptest.NewRequest(method, target, bytes.NewBufferString(body))
	rec := httptest.NewRecorder()
	f.srv.ServeHTTP(rec, req)
	return rec
}

// call makes a valid call to ep with body (a string is sent as is) and
// decodes the answer into out (when non-nil); it returns the envelope.
func (f *fixture) call(ep chatapi.Endpoint, body any, out any) chatapi.Envelope {
	f.t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			f.t.Fatal(err)
		}
	}
	rec := f.raw(http.MethodPost, "/v4/"+string(ep), f.query(), string(b))
	if rec.Code != http.StatusOK {
		f.t.Fatalf("%s: HTTP %d: %s", ep.Short(), rec.Code, rec.Body)
	}
	var env chatapi.Envelope
	if err := json.Unmarshal(rec.Body.Bytes(), &env); err != nil {
		f.t.Fatalf("%s: answer is not the envelope: %v: %s", ep.Short(), err, rec.Body)
	}
	if (env.ErrorCode == 0) != (env.ActionStatus == "OK") {
		f.t.Fatalf("%s: ActionStatus %q with ErrorCode %d", ep.Short(), env.ActionStatus, env.ErrorCode)
	}
	if out != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			f.t.Fatalf("%s: decode answer: %v", ep.Short(), err)
		}
	}
	return env
}

func (f *fixture) group(id string, typ GroupType, n int) {
	f.t.Helper()
	if err := f.srv.CreateGroup(id, typ); err != nil {
		f.t.Fatalf("CreateGroup(%q, %s): %v", id, typ, err)
	}
	if _, _, err := f.srv.AddMessages(id, "", n); err != nil {
		f.t.Fatalf("AddMessages: %v", err)
	}
}

func (f *fixture) msg(group, topic string, seq uint64) MessageState {
	f.t.Helper()
	m, ok := f.srv.Message(group, topic, seq)
	if !ok {
		f.t.Fatalf("Message(%q, %q, %d) not found", group, topic, seq)
	}
	return m
}

func seqs(n ...uint64) []chatapi.MsgSeqItem {
	out := make([]chatapi.MsgSeqItem, len(n))
	for i, s := range n {
		out[i] = chatapi.MsgSeqItem{MsgSeq: s}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
