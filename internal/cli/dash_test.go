package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
)

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// getUntil GETs url until it answers want or 10 s pass, and returns the body.
func getUntil(t *testing.T, url string, hdr map[string]string, want int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("GET", url, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return string(b)
			}
			err = &statusError{resp.StatusCode, string(b)}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: want %d, last: %v", url, want, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return strconv.Itoa(e.code) + " " + e.body }

func TestDashRefusesAnOpenAddressWithoutCredentials(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		env, _, errb := simEnv(map[string]string{"TIMQ_REDIS_URL": r.URL()})
		if code := Main(context.Background(), env, []string{"dash", "--addr", addr}); code != 2 {
			t.Errorf("dash --addr %s without credentials: exit %d, want 2", addr, code)
		}
		msg := errb.String()
		if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, "TIMQ_DASH_USER") || !strings.Contains(msg, "TIMQ_DASH_TOKEN") {
			t.Errorf("dash --addr %s: want one line naming the settings, got %q", addr, msg)
		}
	}
}

func TestDashServesBehindCredentials(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	addr := freeAddr(t)
	env, _, errb := simEnv(map[string]string{"TIMQ_REDIS_URL": r.URL(), "TIMQ_DASH_TOKEN": "tok-dash-test"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, env, []string{"dash", "--addr", addr, "--read-only", "--log-format", "json"})
	}()
	base := "http://" + addr
	getUntil(t, base+"/api/queues", nil, 401)
	bearer := map[string]string{"Authorization": "Bearer tok-dash-test"}
	getUntil(t, base+"/api/queues", bearer, 200)
	getUntil(t, base+"/dlq/api/entries", bearer, 200)
	stopDash(t, cancel, done, errb)
	if strings.Contains(errb.String(), "tok-dash-test") {
		t.Errorf("dash logged its token:\n%s", errb)
	}
}

func TestWorkerServesMetricsHealthAndDashboard(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	emu := testenv.StartEmulator(t, sim.Config{})
	vars := map[string]string{
		"TIMQ_REDIS_URL":  r.URL(),
		"TIMQ_SDKAPPID":   strconv.FormatUint(emu.SDKAppID, 10),
		"TIMQ_SECRET_KEY": emu.SecretKey,
		"TIMQ_API_BASE":   emu.URL,
		"TIMQ_HTTP_ADDR":  freeAddr(t),
	}
	env, _, errb := simEnv(vars)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, env, []string{"worker", "--dashboard", "--api", "--shutdown-timeout", "1s", "--log-format", "json"})
	}()
	base := "http://" + vars["TIMQ_HTTP_ADDR"]
	getUntil(t, base+"/healthz", nil, 200)
	getUntil(t, base+"/readyz", nil, 200)
	// Queue sizes and the dead-letter count are read in the background, so
	// the first scrape may come before the first read: wait for them.
	wants := []string{"timq_queue_tasks{queue=\"timq-clear\",state=\"pending\"} 0", "timq_dead_letters_held 0", "go_goroutines", "process_"}
	var metrics string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		metrics = getUntil(t, base+"/metrics", nil, 200)
		missing := 0
		for _, want := range wants {
			if !strings.Contains(metrics, want) {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q after 15s", want)
		}
	}
	getUntil(t, base+"/dashboard/api/queues", nil, 200) // loopback: no credentials needed
	// The HTTP API is mounted beside them, and counted in the same metrics.
	resp, err := http.Post(base+"/v1/clear", "application/json", strings.NewReader(`{"GroupId":"@TGS#w"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/clear on the worker's port: %d", resp.StatusCode)
	}
	if m := getUntil(t, base+"/metrics", nil, 200); !strings.Contains(m, `timq_api_requests_total{route="POST /v1/clear",status="202"} 1`) {
		t.Errorf("/metrics lacks the API request")
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("worker exit %d after its context ended, want 0; stderr:\n%s", code, errb)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("worker did not stop")
	}
	if strings.Contains(errb.String(), emu.SecretKey) {
		t.Error("the worker logged its secret key")
	}
}

func TestWorkerDashboardRefusesAnOpenAddressWithoutCredentials(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	env, _, errb := simEnv(map[string]string{
		"TIMQ_REDIS_URL": r.URL(), "TIMQ_SDKAPPID": "1400000001", "TIMQ_SECRET_KEY": "k", "TIMQ_API_BASE": "http://127.0.0.1:1",
	})
	if code := Main(context.Background(), env, []string{"worker", "--http-addr", "0.0.0.0:0", "--dashboard"}); code != 2 {
		t.Errorf("worker --dashboard on 0.0.0.0 without credentials: exit %d, want 2; stderr %q", code, errb)
	}
	if !strings.Contains(errb.String(), "TIMQ_DASH_USER") {
		t.Errorf("stderr %q does not name the settings", errb)
	}
	env, _, errb = simEnv(map[string]string{
		"TIMQ_REDIS_URL": r.URL(), "TIMQ_SDKAPPID": "1400000001", "TIMQ_SECRET_KEY": "k", "TIMQ_API_BASE": "http://127.0.0.1:1",
	})
	if code := Main(context.Background(), env, []string{"worker", "--dashboard"}); code != 2 {
		t.Errorf("worker --dashboard without --http-addr: exit %d, want 2; stderr %q", code, errb)
	}
	env, _, errb = simEnv(map[string]string{
		"TIMQ_REDIS_URL": r.URL(), "TIMQ_SDKAPPID": "1400000001", "TIMQ_SECRET_KEY": "k", "TIMQ_API_BASE": "http://127.0.0.1:1",
	})
	if code := Main(context.Background(), env, []string{"worker", "--http-addr", "0.0.0.0:0", "--api"}); code != 2 || !strings.Contains(errb.String(), "TIMQ_API_TOKEN") {
		t.Errorf("worker --api on 0.0.0.0 without tokens: exit %d, want 2 naming TIMQ_API_TOKEN; stderr %q", code, errb)
	}
}

// timq worker leaves GOMAXPROCS to Go and has no --procs flag: the
// runtime's own choice is the conventional one.
func TestWorkerHasNoProcsFlag(t *testing.T) {
	t.Parallel()
	env, _, errb := simEnv(map[string]string{"TIMQ_REDIS_URL": "redis://127.0.0.1:1", "TIMQ_SDKAPPID": "1400000001", "TIMQ_SECRET_KEY": "k", "TIMQ_API_BASE": "http://127.0.0.1:1"})
	if code := Main(context.Background(), env, []string{"worker", "--procs", "1"}); code != 2 || !strings.Contains(errb.String(), "flag provided but not defined: -procs") {
		t.Errorf("--procs: exit %d, stderr %q; want 2, an unknown flag", code, errb)
	}
}

// TestDashRefusesABadRootPath: a --root-path the dashboard cannot route
// (these panicked in http.ServeMux before) is a one-line usage error naming
// the flag, before any setting is read or any address is listened on.
func TestDashRefusesABadRootPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ root, why string }{
		{"//", `must be a clean path, without "//", "." or ".." segments, such as /timq`},
		{"/x/../y", `must be a clean path, without "//", "." or ".." segments, such as /timq`},
		{"/a b/", `may hold only ASCII letters, digits and "/", "-", ".", "_", "~"`},
		{"timq", "must start with /"},
	} {
		env, out, errb := simEnv(map[string]string{"TIMQ_REDIS_URL": "redis://127.0.0.1:1/0"})
		code := Main(context.Background(), env, []string{"dash", "--addr", "127.0.0.1:0", "--root-path", tc.root})
		want := "timq dash: --root-path " + strconv.Quote(tc.root) + ": " + tc.why + "\n"
		if code != 2 || errb.String() != want || out.String() != "" {
			t.Errorf("--root-path %q: exit %d, stderr %q, stdout %q; want 2 and stderr %q", tc.root, code, errb, out, want)
		}
	}
}

// TestDashServesUnderARootPath: a --root-path with a trailing slash serves
// under the path without it.
func TestDashServesUnderARootPath(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	addr := freeAddr(t)
	env, _, errb := simEnv(map[string]string{"TIMQ_REDIS_URL": r.URL()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- Main(ctx, env, []string{"dash", "--addr", addr, "--root-path", "/monitoring/"}) }()
	getUntil(t, "http://"+addr+"/monitoring/dlq/api/entries", nil, 200)
	getUntil(t, "http://"+addr+"/dlq/api/entries", nil, 404)
	stopDash(t, cancel, done, errb)
}

// stopDash cancels a running `timq dash` and checks that it exits 0 within
// 15 s; errb is its stderr, shown when it does not.
func stopDash(t *testing.T, cancel context.CancelFunc, done <-chan int, errb fmt.Stringer) {
	t.Helper()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("dash exit %d after its context ended, want 0; stderr:\n%s", code, errb)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("dash did not stop")
	}
}
