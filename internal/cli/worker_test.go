package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
)

// A rate the limiter cannot pace by, from TIMQ_RATE or --rate, stops the
// worker before it starts, naming the setting: NaN passed every comparison
// once and made the worker call without a limit.
func TestWorkerRefusesARateItCannotPaceBy(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"TIMQ_REDIS_URL": "redis://127.0.0.1:1", "TIMQ_SDKAPPID": "1400000001", "TIMQ_SECRET_KEY": "k", "TIMQ_API_BASE": "http://127.0.0.1:1",
	}
	for _, tc := range []struct {
		env  string
		args []string
		want string
	}{
		{"NaN", nil, `TIMQ_RATE: must be a number from 0.1 to 100000, got "NaN"`},
		{"nan", nil, `TIMQ_RATE: must be a number from 0.1 to 100000, got "nan"`},
		{"+Inf", nil, `TIMQ_RATE: must be a number from 0.1 to 100000, got "+Inf"`},
		{"", []string{"--rate", "NaN"}, "--rate: must be a number from 0.1 to 100000, got NaN"},
		{"", []string{"--rate", "Inf"}, "--rate: must be a number from 0.1 to 100000, got +Inf"},
		{"", []string{"--rate", "-5"}, "--rate: must be a number from 0.1 to 100000, got -5"},
		{"", []string{"--rate", "0"}, "--rate: must be a number from 0.1 to 100000, got 0"},
	} {
		vars := map[string]string{"TIMQ_RATE": tc.env}
		for k, v := range base {
			vars[k] = v
		}
		env, _, errb := simEnv(vars)
		if code := Main(context.Background(), env, append([]string{"worker"}, tc.args...)); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("TIMQ_RATE=%q %q: exit %d, stderr %q; want 2 and %q", tc.env, tc.args, code, errb, tc.want)
		}
	}
}

// The worker's numeric flags have the bounds of their settings, and a
// value out of them is a usage error naming the flag, not the Config field
// (or, for 0, the default in disguise).
func TestWorkerRefusesFlagsOutOfRange(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		"TIMQ_REDIS_URL": "redis://127.0.0.1:1", "TIMQ_SDKAPPID": "1400000001", "TIMQ_SECRET_KEY": "k", "TIMQ_API_BASE": "http://127.0.0.1:1",
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--concurrency", "0"}, "--concurrency: must be from 1 to 100000, got 0"},
		{[]string{"--concurrency", "9223372036854775807"}, "--concurrency: must be from 1 to 100000, got 9223372036854775807"},
		{[]string{"--recall-concurrency", "0"}, "--recall-concurrency: must be from 1 to 100000, got 0"},
		{[]string{"--recall-concurrency", "100001"}, "--recall-concurrency: must be from 1 to 100000, got 100001"},
		{[]string{"--max-retry", "0"}, "--max-retry: must be from 1 to 1000, got 0"},
		{[]string{"--max-retry", "99999999999"}, "--max-retry: must be from 1 to 1000, got 99999999999"},
		{[]string{"--shutdown-timeout", "0s"}, "--shutdown-timeout: must be more than 0, got 0s"},
	} {
		env, _, errb := simEnv(vars)
		if code := Main(context.Background(), env, append([]string{"worker"}, tc.args...)); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errb, tc.want)
		}
	}
}

func TestParseQueues(t *testing.T) {
	t.Parallel()
	got, err := parseQueues("--queues", "recall:timq-recall=3, recall:cleanup=1,clear:c=2")
	if err != nil || len(got) != 2 || got["timq:recall"]["timq-recall"] != 3 || got["timq:recall"]["cleanup"] != 1 || got["timq:clear"]["c"] != 2 {
		t.Fatalf("parseQueues = %v, %v", got, err)
	}
	for _, bad := range []string{"recall", "recall:x", "drop:x=1", "recall:x=0", "recall:x=two", "recall: x =1"} {
		if _, err := parseQueues("--queues", bad); err == nil || !strings.HasPrefix(err.Error(), "--queues: ") {
			t.Errorf("parseQueues(%q) = %v, want an error naming --queues", bad, err)
		}
	}
}

// A recall queued with --queue is taken by a worker started with --queues
// naming that queue, and applied.
func TestWorkerConsumesANamedQueue(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	emu := testenv.StartEmulator(t, sim.Config{})
	if err := emu.CreateGroup("named-q", sim.GroupPublic); err != nil {
		t.Fatal(err)
	}
	if _, _, err := emu.AddMessages("named-q", "", 3); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"TIMQ_REDIS_URL": r.URL(), "TIMQ_SDKAPPID": fmt.Sprint(emu.SDKAppID), "TIMQ_SECRET_KEY": emu.SecretKey,
		"TIMQ_API_BASE": emu.URL, "TIMQ_QUEUES": "recall:cleanup=1",
	}
	env, _, errb := simEnv(vars)
	if code := Main(context.Background(), env, []string{"enqueue", "recall", "--group", "named-q", "--seq", "2", "--queue", "cleanup"}); code != 0 {
		t.Fatalf("enqueue: exit %d: %s", code, errb)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	wenv, _, werr := simEnv(vars)
	go func() { done <- Main(ctx, wenv, []string{"worker", "--log-level", "warn"}) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m, _ := emu.Message("named-q", "", 2); m.Recalled {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("the recall on queue cleanup was not applied; worker stderr:\n%s", werr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("worker exit %d: %s", code, werr)
	}
}
