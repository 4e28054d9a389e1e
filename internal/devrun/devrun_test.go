package devrun

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// TestDevRunShowsWorkFlowingAndDeadLettering runs the zero-setup mode for a
// few seconds and checks, while it runs, that sample work completes, that
// the planned failures are archived, and that the dashboard answers.
func TestDevRunShowsWorkFlowingAndDeadLettering(t *testing.T) {
	t.Parallel()
	log, logs := testenv.Logger(t)
	defer logs.Stop()
	ready := make(chan Endpoints, 1)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- Run(ctx, Options{DashboardAddr: "127.0.0.1:0", SampleRate: 50, Logger: log, Ready: func(e Endpoints) { ready <- e }})
	}()
	var ep Endpoints
	select {
	case ep = <-ready:
	case err := <-done:
		t.Fatalf("Run returned before it was ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready after 20s")
	}

	opt, err := asynq.ParseRedisURI(ep.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	deadline := time.Now().Add(30 * time.Second)
	var completed, archived int
	for time.Now().Before(deadline) {
		completed, archived = 0, 0
		for _, q := range tasks.Queues() {
			if info, err := insp.GetQueueInfo(q); err == nil {
				completed += info.Completed
				archived += info.Archived
			}
		}
		if completed >= 20 && archived >= 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if completed < 20 || archived < 2 {
		t.Fatalf("after 30s: %d completed, %d archived; want at least 20 and 2", completed, archived)
	}

	resp, err := http.Get(strings.TrimSuffix(ep.DashboardURL, "/") + "/api/queues")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var queues struct {
		Queues []struct {
			Queue string `json:"queue"`
		} `json:"queues"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &queues) != nil || len(queues.Queues) == 0 {
		t.Fatalf("dashboard /api/queues: %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not stop within 40s of cancel")
	}
}

// Run refuses a sample rate a ticker cannot take before it starts anything,
// naming the field.
func TestRunRefusesASampleRateItCannotTick(t *testing.T) {
	for _, rate := range []float64{math.NaN(), math.Inf(1), 1e-12, 1e6} {
		err := Run(context.Background(), Options{DashboardAddr: "127.0.0.1:0", SampleRate: rate, Logger: slog.New(slog.DiscardHandler)})
		if err == nil || !strings.HasPrefix(err.Error(), "devrun: SampleRate: must be negative (none) or from 0.001 to 1000 per second") {
			t.Errorf("SampleRate %v: got %v, want the bounds", rate, err)
		}
	}
}
