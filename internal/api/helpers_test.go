package api_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/timq/timq/internal/api"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/worker"
)

var update = flag.Bool("update", false, "rewrite openapi.json from the server's description")

const (
	enqueueToken = "enqueue-token-for-tests-0123"
	adminToken   = "admin-token-for-tests-456789"
)

// seen records every operation and (operation, status) the tests got, so
// that TestMain can fail when one the description documents was never
// exercised.
var seen = struct {
	sync.Mutex
	m map[string]bool
}{m: map[string]bool{}}

func TestMain(m *testing.M) {
	code := testenv.Main(m)
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		if missing := unexercised(); len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "operations of openapi.json no test exercised: %v\n", missing)
			code = 1
		}
	}
	os.Exit(code)
}

// description is openapi.json as committed, parsed once.
var description = sync.OnceValues(func() (map[string]any, error) {
	b, err := os.ReadFile("openapi.json")
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	return doc, json.Unmarshal(b, &doc)
})

// operations lists "METHOD path" of every operation in the description,
// and "METHOD path STATUS" of every answer it documents but 500, which no
// test provokes.
func operations(t testing.TB) []string {
	doc, err := description()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			out = append(out, strings.ToUpper(method)+" "+path)
			for status := range op.(map[string]any)["responses"].(map[string]any) {
				if status != "500" {
					out = append(out, strings.ToUpper(method)+" "+path+" "+status)
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func unexercised() []string {
	seen.Lock()
	defer seen.Unlock()
	var missing []string
	for _, op := range operations(&testing.T{}) {
		if !seen.m[op] {
			missing = append(missing, op)
		}
	}
	return missing
}

// rig is an API server on a test's Redis, with the emulator and, when
// started, a worker.
type rig struct {
	t       *testing.T
	redis   *testenv.RedisDB
	emu     *testenv.Emulator
	srv     *api.Server
	url     string
	logs    *testenv.LogBuffer
	metrics *prometheus.Registry
}

func newRig(t *testing.T, mutate ...func(*api.Config)) *rig {
	t.Helper()
	r := testenv.Redis(t)
	log, logs := testenv.Logger(t)
	t.Cleanup(logs.Stop)
	reg := prometheus.NewRegistry()
	cfg := api.Config{Redis: r.ConnOpt(), Logger: log, Metrics: reg, Tokens: []api.Token{
		{Secret: enqueueToken, Scope: api.ScopeEnqueue}, {Secret: adminToken, Scope: api.ScopeAdmin},
	}}
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &rig{t: t, redis: r, emu: testenv.StartEmulator(t, sim.Config{}), srv: s, url: hs.URL, logs: logs, metrics: reg}
}

// startWorker runs a worker on the rig's Redis and emulator.
func (r *rig) startWorker() {
	r.t.Helper()
	log, logs := testenv.Logger(r.t)
	r.t.Cleanup(logs.Stop)
	w, err := worker.New(worker.Config{
		Redis:       r.redis.ConnOpt(),
		API:         worker.API{SDKAppID: r.emu.SDKAppID, SecretKey: r.emu.SecretKey, BaseURL: r.emu.URL, Timeout: 2 * time.Second},
		Concurrency: 20, RetryBase: 20 * time.Millisecond, RetryCap: 200 * time.Millisecond, ThrottleDelay: 50 * time.Millisecond,
		PollInterval: 100 * time.Millisecond, ShutdownTimeout: 5 * time.Second, Logger: log,
	})
	if err != nil {
		r.t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(w.Shutdown)
}

// reply is one answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (p reply) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(p.body, v); err != nil {
		t.Fatalf("answer %d %s: %v", p.status, p.body, err)
	}
}

// problem is an RFC 9457 answer.
type problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Errors []struct {
		Message  string `json:"message"`
		Location string `json:"location"`
	} `json:"errors"`
}

func (p reply) problem(t testing.TB) problem {
	t.Helper()
	if ct := p.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("answer %d has Content-Type %q, want application/problem+json: %s", p.status, ct, p.body)
	}
	var pr problem
	p.json(t, &pr)
	if pr.Status != p.status {
		t.Fatalf("problem status %d in an answer of %d", pr.Status, p.status)
	}
	return pr
}

// do sends a request with token (none when "") and checks the answer
// against the description: its status must be documented for the
// operation, and its body must match the documented schema.
func (r *rig) do(method, path, token string, body io.Reader, header ...string) reply {
	r.t.Helper()
	req, err := http.NewRequest(method, r.url+path, body)
	if err != nil {
		r.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	p := reply{status: resp.StatusCode, header: resp.Header, body: b}
	conform(r.t, method, strings.SplitN(path, "?", 2)[0], p)
	return p
}

func (r *rig) post(path, token string, body string, header ...string) reply {
	r.t.Helper()
	return r.do(http.MethodPost, path, token, strings.NewReader(body), header...)
}

func (r *rig) get(path, token string) reply {
	r.t.Helper()
	return r.do(http.MethodGet, path, token, nil)
}

var compiled = struct {
	sync.Mutex
	c map[string]*jsonschema.Schema
}{c: map[string]*jsonschema.Schema{}}

// conform fails the test unless p is a documented answer of the operation
// at method and path, with a body of the documented schema.
func conform(t testing.TB, method, path string, p reply) {
	t.Helper()
	doc, err := description()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := ""
	for candidate := range doc["paths"].(map[string]any) {
		re := "^" + regexp.MustCompile(`\\\{[a-z]+\\\}`).ReplaceAllString(regexp.QuoteMeta(candidate), `[^/]+`) + "$"
		if regexp.MustCompile(re).MatchString(path) {
			tmpl = candidate // anchored: at most one template matches
		}
	}
	if tmpl == "" {
		if path == "/openapi.json" || path == "/openapi.yaml" {
			return
		}
		t.Fatalf("%s %s is not in openapi.json", method, path)
	}
	op, ok := doc["paths"].(map[string]any)[tmpl].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if !ok {
		t.Fatalf("%s %s is not in openapi.json", method, tmpl)
	}
	st := strconv.Itoa(p.status)
	resp, ok := op["responses"].(map[string]any)[st].(map[string]any)
	if !ok {
		resp, ok = op["responses"].(map[string]any)["default"].(map[string]any)
	}
	if !ok {
		t.Fatalf("%s %s answered %d, which openapi.json does not document: %s", method, tmpl, p.status, p.body)
	}
	seen.Lock()
	seen.m[method+" "+tmpl] = true
	seen.m[method+" "+tmpl+" "+st] = true
	seen.Unlock()
	content, _ := resp["content"].(map[string]any)
	if len(content) == 0 {
		if len(bytes.TrimSpace(p.body)) != 0 {
			t.Fatalf("%s %s answered %d with a body openapi.json does not document: %s", method, tmpl, p.status, p.body)
		}
		return
	}
	ct := strings.TrimSpace(strings.Split(p.header.Get("Content-Type"), ";")[0])
	if _, ok := content[ct]; !ok {
		t.Fatalf("%s %s answered %d as %q, openapi.json documents %v", method, tmpl, p.status, ct, content)
	}
	pointer := "#/paths/" + escape(tmpl) + "/" + strings.ToLower(method) + "/responses/" + st + "/content/" + escape(ct) + "/schema"
	compiled.Lock()
	sch, ok := compiled.c[pointer]
	if !ok {
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		if err := c.AddResource("openapi.json", doc); err != nil {
			compiled.Unlock()
			t.Fatal(err)
		}
		if sch, err = c.Compile("openapi.json" + pointer); err != nil {
			compiled.Unlock()
			t.Fatalf("compile %s: %v", pointer, err)
		}
		compiled.c[pointer] = sch
	}
	compiled.Unlock()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(p.body))
	if err != nil {
		t.Fatalf("%s %s answered %d with invalid JSON: %v\n%s", method, tmpl, p.status, err, p.body)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("%s %s answered %d with a body that does not match openapi.json: %v\n%s", method, tmpl, p.status, err, p.body)
	}
}

func escape(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1") }

func jsonIndent(dst *bytes.Buffer, src []byte) error {
	if err := json.Indent(dst, src, "", "  "); err != nil {
		return err
	}
	dst.WriteByte('\n')
	return nil
}

// counterValue returns the value of name{route, status}.
func counterValue(t *testing.T, g prometheus.Gatherer, name, route, status string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["route"] == route && l["status"] == status {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
