package metrics_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/metrics"
	"github.com/timq/timq/internal/testenv"
)

func TestCodeLabel(t *testing.T) {
	t.Parallel()
	errAPI := errors.New("refused")
	tests := []struct {
		ci   chatapi.CallInfo
		want string
	}{
		{chatapi.CallInfo{HTTPStatus: 200}, "0"},
		{chatapi.CallInfo{HTTPStatus: 200, Code: 10010, Err: errAPI}, "10010"},
		{chatapi.CallInfo{HTTPStatus: 200, Code: 60007, Err: errAPI}, "60007"},
		{chatapi.CallInfo{HTTPStatus: 200, Err: errAPI}, metrics.CodeBadAnswer},
		{chatapi.CallInfo{HTTPStatus: 502, Err: errAPI}, "http_502"},
		{chatapi.CallInfo{Err: context.DeadlineExceeded}, metrics.CodeNoAnswer},
	}
	for _, tt := range tests {
		if got := metrics.CodeLabel(tt.ci); got != tt.want {
			t.Errorf("CodeLabel(%+v) = %q, want %q", tt.ci, got, tt.want)
		}
	}
}

func TestNilWorkerCountsNothing(t *testing.T) {
	t.Parallel()
	var m *metrics.Worker
	m.ObserveCall(chatapi.CallInfo{Endpoint: chatapi.EndpointClear})
	m.ObserveWait(chatapi.EndpointClear, time.Second)
	m.RateLimited(chatapi.EndpointClear, 60007)
	m.Outcome("timq:clear", metrics.OutcomeRetried)
	m.DeadLetterAdded("timq:clear", "permanent")
	m.EnqueueToCall("timq:clear", time.Second)
	m.JobOperation("timq:clear", "applied")
}

func TestWorkerMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.NewWorker(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.NewWorker(reg); err == nil {
		t.Error("a second NewWorker on the same registry: no error")
	}
	m.ObserveCall(chatapi.CallInfo{Endpoint: chatapi.EndpointRecall, HTTPStatus: 200, Duration: 30 * time.Millisecond})
	m.ObserveCall(chatapi.CallInfo{Endpoint: chatapi.EndpointRecall, HTTPStatus: 200, Code: 20004, Err: errors.New("x")})
	m.RateLimited(chatapi.EndpointRecall, 60007)
	m.ObserveWait(chatapi.EndpointRecall, 5*time.Millisecond)
	m.Outcome("timq:recall", metrics.OutcomeRetried)
	m.Outcome("timq:recall", metrics.OutcomeApplied)
	m.DeadLetterAdded("timq:recall", "permanent")
	m.EnqueueToCall("timq:modify", 20*time.Millisecond)
	m.EnqueueToCall("timq:modify", -time.Millisecond) // clocks apart: counted as 0
	m.JobOperation("timq:modify", "applied")
	m.JobOperation("timq:modify", "applied")
	m.JobOperation("timq:modify", "cancelled")

	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"timq_api_calls_total", map[string]string{"endpoint": "group_msg_recall", "code": "0"}, 1},
		{"timq_api_calls_total", map[string]string{"endpoint": "group_msg_recall", "code": "20004"}, 1},
		{"timq_api_rate_limited_total", map[string]string{"endpoint": "group_msg_recall", "code": "60007"}, 1},
		{"timq_dead_letters_added_total", map[string]string{"task_type": "timq:recall", "reason": "permanent"}, 1},
		{"timq_task_outcomes_total", map[string]string{"task_type": "timq:recall", "outcome": "applied"}, 1},
		{"timq_task_outcomes_total", map[string]string{"task_type": "timq:recall", "outcome": "retried"}, 1},
		{"timq_task_retries_total", map[string]string{"task_type": "timq:recall"}, 1},
		{"timq_api_call_duration_seconds", map[string]string{"endpoint": "group_msg_recall"}, 2},
		{"timq_ratelimit_wait_seconds", map[string]string{"endpoint": "group_msg_recall"}, 1},
		{"timq_interactive_enqueue_to_call_seconds", map[string]string{"task_type": "timq:modify"}, 2},
		{"timq_job_operations_total", map[string]string{"task_type": "timq:modify", "outcome": "applied"}, 2},
		{"timq_job_operations_total", map[string]string{"task_type": "timq:modify", "outcome": "cancelled"}, 1},
	} {
		if got := val(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

// fakeInspector counts reads and can fail.
type fakeInspector struct {
	reads atomic.Int64
	mu    sync.Mutex
	fail  error
	info  map[string]*asynq.QueueInfo
}

func (f *fakeInspector) Queues() ([]string, error) {
	f.reads.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	var out []string
	for q := range f.info {
		out = append(out, q)
	}
	return out, nil
}

func (f *fakeInspector) GetQueueInfo(q string) (*asynq.QueueInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.info[q], nil
}

type fakeJobs map[string]int64

func (f fakeJobs) CountByState(context.Context) (map[string]int64, error) { return f, nil }

type fakeDLQ struct{ n int64 }

func (f fakeDLQ) Count(context.Context) (int64, error) { return f.n, nil }

func TestQueueStatsNeverReadsOnScrape(t *testing.T) {
	t.Parallel()
	insp := &fakeInspector{info: map[string]*asynq.QueueInfo{
		"timq-clear": {Queue: "timq-clear", Pending: 3, Archived: 2, Latency: 1500 * time.Millisecond},
	}}
	qs, err := metrics.NewQueueStats(metrics.QueueStatsConfig{
		Inspector: insp, DeadLetters: fakeDLQ{n: 9}, Jobs: fakeJobs{"running": 2, "done": 5},
		Queues: []string{"timq-clear", "timq-recall"}, Interval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(qs)

	// Before the first read: only the error counter.
	if n := series(t, reg, "timq_queue_tasks"); n != 0 {
		t.Errorf("%d queue series before any read, want 0", n)
	}
	if err := qs.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range 100 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	if n := insp.reads.Load(); n != 1 {
		t.Fatalf("Inspector read %d times for one Refresh and 100 scrapes, want 1", n)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"timq_dead_letters_held", nil, 9},
		{"timq_jobs", map[string]string{"state": "running"}, 2},
		{"timq_jobs", map[string]string{"state": "done"}, 5},
		{"timq_jobs", map[string]string{"state": "paused"}, 0},
		{"timq_queue_latency_seconds", map[string]string{"queue": "timq-clear"}, 1.5},
		{"timq_queue_tasks", map[string]string{"queue": "timq-clear", "state": "pending"}, 3},
		{"timq_queue_tasks", map[string]string{"queue": "timq-clear", "state": "archived"}, 2},
		{"timq_queue_tasks", map[string]string{"queue": "timq-recall", "state": "pending"}, 0},
	} {
		if got := val(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if n := series(t, reg, "timq_queue_tasks"); n != 2*len(metrics.States) {
		t.Errorf("%d timq_queue_tasks series, want %d (2 queues, every state)", n, 2*len(metrics.States))
	}

	// A failed read keeps the last values and counts the error.
	insp.mu.Lock()
	insp.fail = errors.New("redis down")
	insp.mu.Unlock()
	if err := qs.Refresh(context.Background()); err == nil {
		t.Fatal("Refresh with Redis down: no error")
	}
	if v := val(t, reg, "timq_queue_tasks", map[string]string{"queue": "timq-clear", "state": "pending"}); v != 3 {
		t.Errorf("after a failed read pending = %v, want the last value 3", v)
	}
	if v := val(t, reg, "timq_queue_stats_errors_total", nil); v != 1 {
		t.Errorf("timq_queue_stats_errors_total = %v, want 1", v)
	}
}

func TestQueueStatsRunReadsEveryInterval(t *testing.T) {
	t.Parallel()
	insp := &fakeInspector{info: map[string]*asynq.QueueInfo{}}
	qs, err := metrics.NewQueueStats(metrics.QueueStatsConfig{Inspector: insp, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	start := time.Now()
	go func() { qs.Run(ctx); close(done) }()
	testenv.WaitFor(t, 5*time.Second, "three reads", func() bool { return insp.reads.Load() >= 3 })
	cancel()
	<-done
	// Run reads at once, then once per interval: never more often.
	n, elapsed := insp.reads.Load(), time.Since(start)
	if limit := int64(elapsed/(20*time.Millisecond)) + 1; n > limit {
		t.Errorf("Run read %d times in %v at a 20ms interval, want at most %d", n, elapsed, limit)
	}
	if _, err := metrics.NewQueueStats(metrics.QueueStatsConfig{}); err == nil {
		t.Error("NewQueueStats without an Inspector: no error")
	}
}

// val sums the values (counter, gauge, or histogram sample count) of the
// series of name whose labels include want.
func val(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
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
	}
	return total
}

// series counts the series of name.
func series(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}

// slowLimiter takes 20 ms per token, or fails at once when told to.
type slowLimiter struct{ fail bool }

func (s slowLimiter) Wait(ctx context.Context) error {
	if s.fail {
		return context.Canceled
	}
	time.Sleep(20 * time.Millisecond)
	return nil
}
func (slowLimiter) Backoff(time.Duration) {}

func TestTimeWaits(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.NewWorker(reg)
	if err != nil {
		t.Fatal(err)
	}
	l := m.TimeWaits(chatapi.EndpointRecall, slowLimiter{})
	for range 3 {
		if err := l.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.TimeWaits(chatapi.EndpointRecall, slowLimiter{fail: true}).Wait(context.Background()); err == nil {
		t.Fatal("a failed Wait returned nil")
	}
	if n := val(t, reg, "timq_ratelimit_wait_seconds", map[string]string{"endpoint": "group_msg_recall"}); n != 3 {
		t.Errorf("%v waits recorded, want 3 (a failed wait takes no token)", n)
	}
	var none *metrics.Worker
	if got := none.TimeWaits(chatapi.EndpointRecall, slowLimiter{}); got != (slowLimiter{}) {
		t.Errorf("nil Worker wrapped the limiter: %T", got)
	}
}
