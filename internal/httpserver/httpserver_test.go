package httpserver_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/timq/timq/internal/httpserver"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// scrape reads url (a /metrics endpoint) and parses the text format.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}

// value sums the counter, gauge or histogram count of every series of
// family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	f, ok := fams[name]
	if !ok {
		return 0
	}
	total := 0.0
next:
	for _, m := range f.GetMetric() {
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Histogram != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

func TestHealthReadinessAndMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_total", Help: "a probe"})
	reg.MustRegister(c)
	c.Add(3)
	var readyErr error = errors.New("redis: connection refused")
	dash := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "dash "+r.URL.Path) })
	h, err := httpserver.Handler(httpserver.Config{
		Gatherer:  reg,
		Ready:     func(context.Context) error { return readyErr },
		Dashboard: dash,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	if code, body := get(t, srv.URL+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := get(t, srv.URL+"/readyz"); code != 503 || !strings.Contains(body, "connection refused") {
		t.Errorf("/readyz while not ready = %d %q, want 503 with the reason", code, body)
	}
	readyErr = nil
	if code, body := get(t, srv.URL+"/readyz"); code != 200 || strings.TrimSpace(body) != "ready" {
		t.Errorf("/readyz when ready = %d %q", code, body)
	}
	if v := value(scrape(t, srv.URL+"/metrics"), "probe_total", nil); v != 3 {
		t.Errorf("probe_total = %v, want 3", v)
	}
	if code, body := get(t, srv.URL+"/dashboard/queues"); code != 200 || body != "dash /dashboard/queues" {
		t.Errorf("/dashboard/queues = %d %q", code, body)
	}
	if code, _ := get(t, srv.URL+"/nothing"); code != 404 {
		t.Errorf("/nothing = %d, want 404", code)
	}
}

func TestHandlerNeedsAGatherer(t *testing.T) {
	t.Parallel()
	if _, err := httpserver.Handler(httpserver.Config{}); err == nil {
		t.Fatal("Handler without a Gatherer: no error")
	}
}

func TestServeStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- httpserver.Serve(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "hi") }))
	}()
	if code, body := get(t, "http://"+ln.Addr().String()+"/"); code != 200 || body != "hi" {
		t.Fatalf("GET = %d %q", code, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
}
