package worker_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/worker"
)

// validConfig is a configuration New accepts without connecting anywhere.
func validConfig() worker.Config {
	return worker.Config{
		Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"},
		API:   worker.API{SDKAppID: 1400000000, SecretKey: "not-a-real-key", BaseURL: "http://127.0.0.1:1"},
	}
}

// TestNewRejectsBadNumbersNamingTheField: a rate the limiter cannot pace
// by (NaN, infinite, vanishing, negative) or a negative duration is an
// error naming the field, not a worker that calls without a limit or polls
// Redis without a pause.
func TestNewRejectsBadNumbersNamingTheField(t *testing.T) {
	cases := []struct {
		name   string
		change func(*worker.Config)
		want   string
	}{
		{"NaN rate", func(c *worker.Config) { c.Rate = math.NaN() }, "worker: Rate: must be from 0.1 to 100000 calls per second, got NaN"},
		{"infinite rate", func(c *worker.Config) { c.Rate = math.Inf(1) }, "worker: Rate: must be from 0.1 to 100000 calls per second, got +Inf"},
		{"minus infinite rate", func(c *worker.Config) { c.Rate = math.Inf(-1) }, "worker: Rate: "},
		{"negative rate", func(c *worker.Config) { c.Rate = -200 }, "worker: Rate: "},
		{"vanishing rate", func(c *worker.Config) { c.Rate = 1e-300 }, "worker: Rate: "},
		{"rate above the maximum", func(c *worker.Config) { c.Rate = 1e6 }, "worker: Rate: "},
		{"negative RetryBase", func(c *worker.Config) { c.RetryBase = -time.Second }, "worker: RetryBase: must be > 0 (0 for the default), got -1s"},
		{"negative RetryCap", func(c *worker.Config) { c.RetryCap = -time.Second }, "worker: RetryCap: must be > 0"},
		{"RetryCap under RetryBase", func(c *worker.Config) { c.RetryBase, c.RetryCap = time.Minute, time.Second }, "worker: RetryCap (1s) must be at least RetryBase (1m0s)"},
		{"negative ThrottleDelay", func(c *worker.Config) { c.ThrottleDelay = -time.Millisecond }, "worker: ThrottleDelay: must be > 0"},
		{"negative ShutdownTimeout", func(c *worker.Config) { c.ShutdownTimeout = -time.Second }, "worker: ShutdownTimeout: must be > 0"},
		{"negative PollInterval", func(c *worker.Config) { c.PollInterval = -time.Second }, "worker: PollInterval: must be > 0"},
		{"negative IdlePollInterval", func(c *worker.Config) { c.IdlePollInterval = -time.Millisecond }, "worker: IdlePollInterval: must be > 0"},
		{"negative API timeout", func(c *worker.Config) { c.API.Timeout = -time.Second }, "Timeout: -1s is negative"},
		{"negative Concurrency", func(c *worker.Config) { c.Concurrency = -1 }, "worker: Concurrency: must be from 1 to 100000, got -1"},
		// asynq fills a stopping server's semaphore once per slot: with
		// math.MaxInt slots the worker never stopped.
		{"endless Concurrency", func(c *worker.Config) { c.Concurrency = math.MaxInt }, "worker: Concurrency: must be from 1 to 100000"},
		{"endless RecallConcurrency", func(c *worker.Config) { c.RecallConcurrency = math.MaxInt }, "worker: RecallConcurrency: must be from 1 to 100000"},
		{"MaxRetry past asynq's 32 bits", func(c *worker.Config) { c.MaxRetry = 1 << 31 }, "worker: MaxRetry: must be from 1 to 1000, got 2147483648"},
		// asynq would drop the queue and serve "default" instead.
		{"queue priority 0", func(c *worker.Config) {
			c.Queues = map[string]map[string]int{"timq:clear": {"timq-clear": 0}}
		}, `worker: Queues["timq:clear"]["timq-clear"]: the priority must be at least 1, got 0`},
		{"blank queue name", func(c *worker.Config) {
			c.Queues = map[string]map[string]int{"timq:modify": {" ": 1}}
		}, `worker: Queues["timq:modify"]: the queue name must not be blank`},
		{"queue name with spaces around", func(c *worker.Config) {
			c.Queues = map[string]map[string]int{"timq:recall": {" timq-recall ": 1}}
		}, `worker: Queues["timq:recall"]: the queue name must not start or end with white space`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validConfig()
			tc.change(&cfg)
			w, err := worker.New(cfg)
			if err == nil {
				w.Shutdown()
				t.Fatalf("New accepted the configuration")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestNewAcceptsTheRateBoundsAndOffSwitches: the bounds themselves are
// valid rates, and a negative ReconcileInterval means off, as
// documented, not an error.
func TestNewAcceptsTheRateBoundsAndOffSwitches(t *testing.T) {
	for _, change := range []func(*worker.Config){
		func(c *worker.Config) { c.Rate = worker.MinRate },
		func(c *worker.Config) { c.Rate = worker.MaxRate },
		func(c *worker.Config) { c.ReconcileInterval = -1 },
	} {
		cfg := validConfig()
		change(&cfg)
		w, err := worker.New(cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		w.Shutdown()
	}
}
