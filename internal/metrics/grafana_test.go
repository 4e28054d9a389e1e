package metrics_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/metrics"
	"github.com/timq/timq/internal/ratelimit"
)

// TestGrafanaDashboardUsesOnlyRealMetrics reads grafana/timq.json and checks
// that every timq_ metric its queries name is one this package exports, so
// a renamed metric cannot leave an empty panel behind.
func TestGrafanaDashboardUsesOnlyRealMetrics(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../grafana/timq.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana/timq.json: %v", err)
	}

	reg := prometheus.NewRegistry()
	m, err := metrics.NewWorker(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveCall(chatapi.CallInfo{Endpoint: chatapi.EndpointClear, HTTPStatus: 200})
	m.ObserveWait(chatapi.EndpointClear, time.Millisecond)
	m.RateLimited(chatapi.EndpointClear, 60007)
	m.Outcome("timq:clear", metrics.OutcomeRetried)
	m.DeadLetterAdded("timq:clear", "permanent")
	qs, err := metrics.NewQueueStats(metrics.QueueStatsConfig{
		Inspector: &fakeInspector{info: map[string]*asynq.QueueInfo{}}, DeadLetters: fakeDLQ{}, Queues: []string{"q"},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(qs)
	reg.MustRegister(metrics.NewBudgets(func() map[chatapi.Endpoint]ratelimit.SharedStats {
		return map[chatapi.Endpoint]ratelimit.SharedStats{chatapi.EndpointClear: {Grants: 1}}
	}))
	if err := qs.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, f := range fams {
		known[f.GetName()] = true
	}

	name := regexp.MustCompile(`timq_[a-z_]+`)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(n, suf); ok && known[b] {
						base = b
					}
				}
				if !known[base] {
					t.Errorf("panel %q queries %s, which timq does not export", p.Title, n)
				}
				used[base] = true
			}
		}
	}
	for n := range known {
		if !used[n] {
			t.Errorf("metric %s has no panel in grafana/timq.json", n)
		}
	}
}
