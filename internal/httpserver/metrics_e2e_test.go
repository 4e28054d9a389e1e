package httpserver_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/httpserver"
	"github.com/timq/timq/internal/metrics"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
	"github.com/timq/timq/worker"
)

// TestMetricsMatchTheEmulator runs a faulty mix of work through a worker
// against the emulator, then scrapes /metrics and checks every API counter
// against what the emulator counted on its side, and the dead-letter and
// queue gauges against Redis.
func TestMetricsMatchTheEmulator(t *testing.T) {
	t.Parallel()
	log, logs := testenv.Logger(t)
	t.Cleanup(logs.Stop)
	r := testenv.Redis(t)
	emu := testenv.StartEmulator(t, sim.Config{
		Seed: 7,
		Rate: 40, // under the worker's pace: more rate-limit answers when Redis is fast
		Faults: map[chatapi.Endpoint]sim.Faults{
			chatapi.EndpointClear:  {Codes: map[int]float64{10002: 0.2}, HTTP502: 0.1},
			chatapi.EndpointRecall: {Codes: map[int]float64{20004: 0.15, 60007: 0.1}},
			chatapi.EndpointModify: {Codes: map[int]float64{91000: 0.1, 10004: 0.1}, HTTP502: 0.05},
		},
	})
	const group = "@TGS#2METRICS"
	if err := emu.CreateGroup(group, sim.GroupPublic); err != nil {
		t.Fatal(err)
	}
	if _, _, err := emu.AddMessages(group, "", 200); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	w, err := worker.New(worker.Config{
		Redis:         r.ConnOpt(),
		API:           worker.API{SDKAppID: emu.SDKAppID, SecretKey: emu.SecretKey, BaseURL: emu.URL, Timeout: 2 * time.Second},
		Rate:          100,
		Concurrency:   20,
		MaxRetry:      3,
		RetryBase:     10 * time.Millisecond,
		RetryCap:      50 * time.Millisecond,
		ThrottleDelay: 30 * time.Millisecond,
		PollInterval:  50 * time.Millisecond,
		Logger:        log,
		Metrics:       reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(r.ConnOpt())
	t.Cleanup(func() { insp.Close() })
	store := dlq.New(r.Client(t))
	qs, err := metrics.NewQueueStats(metrics.QueueStatsConfig{Inspector: insp, DeadLetters: store, Queues: tasks.Queues(), Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	reg.MustRegister(qs)
	h, err := httpserver.Handler(httpserver.Config{Gatherer: reg, Ready: w.Ready, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if code, _ := get(t, srv.URL+"/readyz"); code != 503 {
		t.Errorf("/readyz before Start = %d, want 503", code)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	if code, body := get(t, srv.URL+"/readyz"); code != 200 {
		t.Errorf("/readyz after Start = %d %q, want 200", code, body)
	}

	client := asynq.NewClient(r.ConnOpt())
	t.Cleanup(func() { client.Close() })
	enqueue := func(p tasks.Payload) {
		task, err := tasks.NewTask(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(task); err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i := uint64(1); i <= 40; i++ {
		seq := i
		enqueue(tasks.Clear{GroupId: group, MsgSeq: &seq})
		enqueue(tasks.Recall{GroupId: group, MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: 100 + 2*i}, {MsgSeq: 101 + 2*i}}})
		enqueue(tasks.Modify{GroupId: group, MsgSeq: 50 + i, MsgBody: tasks.TextBody(fmt.Sprintf("edit %d", i))})
		total += 3
	}
	enqueue(tasks.Clear{GroupId: "@TGS#MISSING"}) // 10010: dead-lettered at once
	total++

	testenv.WaitSettled(t, insp, total, 60*time.Second)
	if err := qs.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, srv.URL+"/metrics")
	stats := emu.Stats()

	sawRateLimit, sawFault := false, false
	for _, ep := range []chatapi.Endpoint{chatapi.EndpointClear, chatapi.EndpointRecall, chatapi.EndpointModify} {
		st := stats.Endpoints[ep]
		short := ep.Short()
		if got := value(fams, "timq_api_calls_total", map[string]string{"endpoint": short}); got != float64(st.Calls) {
			t.Errorf("%s: timq_api_calls_total = %v, emulator saw %d calls", short, got, st.Calls)
		}
		for code, n := range st.Codes {
			got := value(fams, "timq_api_calls_total", map[string]string{"endpoint": short, "code": strconv.Itoa(code)})
			if got != float64(n) {
				t.Errorf("%s: timq_api_calls_total{code=%d} = %v, emulator answered it %d times", short, code, got, n)
			}
			if code != 0 {
				sawFault = true
			}
		}
		if got := value(fams, "timq_api_calls_total", map[string]string{"endpoint": short, "code": "http_502"}); got != float64(st.HTTP502) {
			t.Errorf("%s: timq_api_calls_total{code=http_502} = %v, emulator sent %d 502s", short, got, st.HTTP502)
		}
		if got := value(fams, "timq_api_call_duration_seconds", map[string]string{"endpoint": short}); got != float64(st.Calls) {
			t.Errorf("%s: latency histogram holds %v calls, emulator saw %d", short, got, st.Calls)
		}
		if got := value(fams, "timq_api_rate_limited_total", map[string]string{"endpoint": short}); got != float64(st.Codes[60007]) {
			t.Errorf("%s: timq_api_rate_limited_total = %v, emulator answered 60007 %d times", short, got, st.Codes[60007])
		}
		if st.Codes[60007] > 0 {
			sawRateLimit = true
		}
		// Every call used a slot of the shared budget; a few granted slots
		// may go unused by a caller that gave up.
		const maxEmpty = 4
		bs := w.BudgetStats()[ep.Short()]
		granted := value(fams, "timq_ratelimit_slots_total", map[string]string{"endpoint": short, "outcome": metrics.SlotGranted})
		if granted != float64(bs.Grants) || granted < float64(st.Calls) || granted > float64(st.Calls+int64(maxEmpty)) {
			t.Errorf("%s: timq_ratelimit_slots_total{outcome=granted} = %v, want the budget's %d grants, the emulator's %d calls plus at most %d left empty",
				short, granted, bs.Grants, st.Calls, maxEmpty)
		}
		if got := value(fams, "timq_ratelimit_slots_total", map[string]string{"endpoint": short, "outcome": metrics.SlotDropped}); got != float64(bs.Wasted) {
			t.Errorf("%s: timq_ratelimit_slots_total{outcome=dropped} = %v, the budget dropped %d", short, got, bs.Wasted)
		}
		if got := value(fams, "timq_ratelimit_redis_commands_total", map[string]string{"endpoint": short}); got != float64(bs.Commands) || got == 0 {
			t.Errorf("%s: timq_ratelimit_redis_commands_total = %v, the budget sent %d (want more than 0)", short, got, bs.Commands)
		}
		// Every call waited for the token bucket once: each wait is
		// recorded before the send.
		if got := value(fams, "timq_ratelimit_wait_seconds", map[string]string{"endpoint": short}); got != float64(st.Calls) {
			t.Errorf("%s: timq_ratelimit_wait_seconds holds %v waits, emulator saw %d calls", short, got, st.Calls)
		}
	}
	if !sawRateLimit || !sawFault {
		t.Errorf("the run did not exercise rate limits (%v) and faults (%v): %+v", sawRateLimit, sawFault, stats.Endpoints)
	}

	held, err := store.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if held == 0 {
		t.Error("no dead letters: the missing group should have made one")
	}
	if got := value(fams, "timq_dead_letters_added_total", nil); got != float64(held) {
		t.Errorf("timq_dead_letters_added_total = %v, the store holds %d", got, held)
	}
	if got := value(fams, "timq_dead_letters_held", nil); got != float64(held) {
		t.Errorf("timq_dead_letters_held = %v, the store holds %d", got, held)
	}
	var completed, archived int
	for _, q := range tasks.Queues() {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		completed += info.Completed
		archived += info.Archived
	}
	if got := value(fams, "timq_queue_tasks", map[string]string{"state": "completed"}); got != float64(completed) {
		t.Errorf("timq_queue_tasks{state=completed} = %v, asynq holds %d", got, completed)
	}
	if got := value(fams, "timq_queue_tasks", map[string]string{"state": "archived"}); got != float64(archived) {
		t.Errorf("timq_queue_tasks{state=archived} = %v, asynq holds %d", got, archived)
	}
	applied := value(fams, "timq_task_outcomes_total", map[string]string{"outcome": metrics.OutcomeApplied})
	dead := value(fams, "timq_task_outcomes_total", map[string]string{"outcome": metrics.OutcomeDeadLettered})
	if applied != float64(completed) || dead != float64(archived) {
		t.Errorf("outcomes applied=%v dead_lettered=%v, asynq holds %d completed and %d archived", applied, dead, completed, archived)
	}
	if retries := value(fams, "timq_task_retries_total", nil); retries == 0 ||
		retries != value(fams, "timq_task_outcomes_total", map[string]string{"outcome": metrics.OutcomeRetried}) {
		t.Errorf("timq_task_retries_total = %v, want > 0 and equal to the retried outcomes", retries)
	}
}
