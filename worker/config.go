package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/timq/timq/tasks"
)

// Defaults for Config fields left zero.
const (
	// DefaultRate is the API's limit per endpoint: 200 calls per second.
	DefaultRate = 200
	// DefaultConcurrency is the number of tasks each endpoint runs at once.
	// At 200 calls/s and a 300 ms answer, 60 calls are in flight; the rest
	// covers calls stuck on a slow or hanging answer.
	DefaultConcurrency = 100
	// DefaultRecallConcurrency is the number of recall tasks run at once.
	// Recalls waiting for a call token fill each other's calls (up to 10
	// messages each), so enough of them must wait: 2,000 one-message recalls
	// a second over 50 groups need about 10 per group waiting (500) plus
	// about 100 in calls. Each one in flight holds two goroutines and its
	// task: with 1,000 a worker's peak RSS was about 60 MB in make bench,
	// with 600 about 47 MB, and the bench's recall scenarios 7a/7b still sent 10 messages per
	// call at 1,963-1,970 messages/s (300 fell to 8.45 per call).
	DefaultRecallConcurrency = 600
	// DefaultMaxRetry caps the retries of any task, whatever it asked for.
	DefaultMaxRetry = tasks.DefaultMaxRetry
	// DefaultRetryBase is the first retry's delay before jitter.
	DefaultRetryBase = time.Second
	// DefaultRetryCap is the longest delay between two attempts. With the
	// defaults, delays grow 1s, 2s, 4s ... 256s, 5m: ten retries span about
	// 13 minutes, long enough to ride out a Tencent incident, short enough
	// that an operator sees a dead letter the same hour.
	DefaultRetryCap = 5 * time.Minute
	// DefaultNotifyRetryBase is the first retry delay of a failed job
	// notice: 10 s doubling to an hour reaches the receiver for about
	// ten hours (jobs.NoticeMaxRetry attempts).
	DefaultNotifyRetryBase = 10 * time.Second
	// DefaultThrottleDelay is how long an endpoint pauses after a rate-limit
	// answer (60007, 60011, 60018, 60019).
	DefaultThrottleDelay = time.Second
	// DefaultShutdownTimeout is how long a stopping worker waits for tasks in
	// flight before handing them back to the queue.
	DefaultShutdownTimeout = 25 * time.Second
	// DefaultPollInterval is how often retries and delayed tasks are moved
	// to their queue (asynq's DelayedTaskCheckInterval; its default of 5 s
	// is long next to a 1 s retry).
	DefaultPollInterval = time.Second
	// DefaultIdlePollInterval is how often an idle endpoint looks for new
	// tasks (asynq's TaskCheckInterval, default 1 s). 100 ms bounds the
	// enqueue-to-call delay of a lone task at the cost of 10 cheap Redis
	// calls per second per endpoint while idle.
	DefaultIdlePollInterval = 100 * time.Millisecond
	// DefaultRecallProgressTTL bounds how long a recall's per-message progress
	// is kept between its attempts.
	DefaultRecallProgressTTL = 7 * 24 * time.Hour
)

// API configures the Tencent Cloud Chat REST API client.
type API struct {
	// SDKAppID is the app's ID. Required.
	SDKAppID uint64
	// SecretKey is the app's key, used only to sign UserSigs. Required.
	SecretKey string
	// Admin is the app admin identifier. Defaults to "administrator".
	Admin string
	// Region is cn, sgp, kr, jpn, ger, usa, idn or ind. Exactly one of Region
	// and BaseURL is required.
	Region string
	// BaseURL replaces the region's domain, e.g. http://127.0.0.1:9000 for
	// the emulator.
	BaseURL string
	// Timeout bounds one HTTP call. Defaults to 10 s (Tencent's own limit is 3 s).
	Timeout time.Duration
	// HTTPClient sends the API calls, for a caller that needs its own
	// proxies, TLS settings, tracing or test double. Timeout still bounds
	// each call. Defaults to nil: the worker's own client, keeping a
	// connection alive for every call that can be in flight at once.
	HTTPClient *http.Client
}

// Bounds of Config fields.
const (
	// MinRate and MaxRate bound Rate, in calls per second.
	MinRate = 0.1
	MaxRate = 1e5
	// MaxConcurrency bounds Concurrency and RecallConcurrency. asynq hands
	// back a stopping server's tasks only after filling its semaphore once
	// per slot, so a worker with math.MaxInt slots never stopped.
	MaxConcurrency = 100000
)

// Config configures a Worker. Fields left zero take their defaults. A
// negative duration is an error naming the field, except AckDelay and
// ReconcileInterval, where it turns the feature off.
type Config struct {
	// Redis is where the queues are. Required.
	Redis asynq.RedisConnOpt
	// API is how to reach the REST API. Required.
	API API
	// Rate is the API's limit in calls per second for each endpoint. The
	// worker paces a little under it (see internal/ratelimit). Defaults to
	// DefaultRate; from MinRate to MaxRate.
	Rate float64
	// LocalBudgetOnly paces each endpoint in this process alone, with no
	// shared budget in Redis: only right when this is the app's one worker
	// process (tests, a single-process setup). By default every worker
	// sharing the Redis shares each endpoint's budget of Rate calls per
	// second per app (SDKAppID), so adding workers never adds calls.
	LocalBudgetOnly bool
	// AppliedResults makes the worker write a result for every applied task
	// too, shown by the dashboard: {"status":"applied","endpoint":...,
	// "attempt":...,"at":...} for clear and modify, each message's status for
	// a recall. It costs one more Redis command per task, about a tenth of
	// the worker's CPU at full rate, and says what asynq's task info already
	// holds (state completed, retry count, completion time), so it defaults
	// to false: an applied task is one that completed. A recall that is not
	// applied in full (messages retrying or dead-lettered) always gets its
	// per-message result.
	AppliedResults bool
	// Concurrency is how many tasks each endpoint runs at once, at most
	// MaxConcurrency. Defaults to DefaultConcurrency.
	Concurrency int
	// RecallConcurrency is how many recall tasks run at once, at most
	// MaxConcurrency; they share calls (see package recallbatch). Defaults
	// to DefaultRecallConcurrency.
	RecallConcurrency int
	// Queues lists, per task type, the queues its endpoint consumes with
	// their priorities (at least 1 each; names as tasks.CheckName wants).
	// They are served in strict priority order, highest first, and all of
	// them before the endpoint's job lane (see package jobs). Defaults to
	// each type's default queue.
	Queues map[string]map[string]int
	// MaxRetry caps how many times any task is retried, even if it asked for
	// more; from 1 to tasks.MaxRetryLimit. Defaults to DefaultMaxRetry.
	MaxRetry int
	// RetryBase and RetryCap shape the backoff between attempts: attempt n
	// waits a random time in [d/2, d] with d = min(RetryCap, RetryBase*2^n).
	// Default to DefaultRetryBase and DefaultRetryCap.
	RetryBase, RetryCap time.Duration
	// ThrottleDelay is the pause after a rate-limit answer. Defaults to
	// DefaultThrottleDelay.
	ThrottleDelay time.Duration
	// ShutdownTimeout is how long Shutdown waits for tasks in flight.
	// Defaults to DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// PollInterval is how often due retries are moved back to their queue.
	// Defaults to DefaultPollInterval.
	PollInterval time.Duration
	// ReconcileInterval is how often the worker copies into the dead-letter
	// store the tasks asynq archived on its own (see archiveReconciler).
	// Defaults to DefaultReconcileInterval; negative turns it off.
	ReconcileInterval time.Duration
	// JobWindow is how many operations of jobs per endpoint the worker's
	// feeder keeps in the job lane (see package jobs); one worker process at
	// a time feeds. Defaults to jobs.DefaultWindow (two seconds of work at
	// 200 calls a second); negative runs no feeder in this process.
	JobWindow int
	// NotifySecret keys the HMAC signature of job completion notices (the
	// Timq-Signature header; see package jobs). Without it notices are not
	// sent: they wait in asynq's retries, then are archived.
	NotifySecret string
	// NotifyRetryBase is the first retry delay of a notice the receiver
	// failed; it doubles each time up to an hour. Defaults to
	// DefaultNotifyRetryBase.
	NotifyRetryBase time.Duration
	// NotifyClient sends the notices. Defaults to a client that follows no
	// redirect.
	NotifyClient *http.Client
	// IdlePollInterval is how often an endpoint with nothing to do looks for
	// new tasks. Defaults to DefaultIdlePollInterval.
	IdlePollInterval time.Duration
	// Logger receives the worker's logs. Defaults to slog.Default().
	Logger *slog.Logger
	// Metrics, when set, receives the worker's Prometheus metrics (see
	// internal/metrics: API calls by endpoint and code, call latency,
	// token-bucket wait, rate-limit answers, task outcomes and retries, dead
	// letters added, and the shared budgets' slots granted and dropped).
	// New fails if it already holds them. Defaults to nil: no metrics.
	Metrics prometheus.Registerer
}

func (c Config) withDefaults() (Config, error) {
	if c.Redis == nil {
		return c, errors.New("worker: Redis: must be set")
	}
	if c.API.SDKAppID == 0 {
		return c, errors.New("worker: API.SDKAppID: must be set")
	}
	if c.API.SecretKey == "" {
		return c, errors.New("worker: API.SecretKey: must be set")
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	// Written so that NaN fails too: a NaN, infinite or vanishing rate
	// would make the limiter's interval between slots meaningless, and the
	// calls unlimited.
	if !(c.Rate >= MinRate && c.Rate <= MaxRate) {
		return c, fmt.Errorf("worker: Rate: must be from %g to %g calls per second, got %v", MinRate, MaxRate, c.Rate)
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.Concurrency < 0 || c.Concurrency > MaxConcurrency {
		return c, fmt.Errorf("worker: Concurrency: must be from 1 to %d, got %d", MaxConcurrency, c.Concurrency)
	}
	if c.RecallConcurrency == 0 {
		c.RecallConcurrency = DefaultRecallConcurrency
	}
	if c.RecallConcurrency < 0 || c.RecallConcurrency > MaxConcurrency {
		return c, fmt.Errorf("worker: RecallConcurrency: must be from 1 to %d, got %d", MaxConcurrency, c.RecallConcurrency)
	}
	if c.MaxRetry == 0 {
		c.MaxRetry = DefaultMaxRetry
	}
	if c.MaxRetry < 1 || c.MaxRetry > tasks.MaxRetryLimit {
		return c, fmt.Errorf("worker: MaxRetry: must be from 1 to %d, got %d", tasks.MaxRetryLimit, c.MaxRetry)
	}
	var err error
	if c.RetryBase, err = durationOrDefault("RetryBase", c.RetryBase, DefaultRetryBase); err != nil {
		return c, err
	}
	if c.NotifyRetryBase, err = durationOrDefault("NotifyRetryBase", c.NotifyRetryBase, DefaultNotifyRetryBase); err != nil {
		return c, err
	}
	if c.RetryCap, err = durationOrDefault("RetryCap", c.RetryCap, DefaultRetryCap); err != nil {
		return c, err
	}
	if c.RetryCap < c.RetryBase {
		return c, fmt.Errorf("worker: RetryCap (%v) must be at least RetryBase (%v)", c.RetryCap, c.RetryBase)
	}
	if c.ThrottleDelay, err = durationOrDefault("ThrottleDelay", c.ThrottleDelay, DefaultThrottleDelay); err != nil {
		return c, err
	}
	if c.ShutdownTimeout, err = durationOrDefault("ShutdownTimeout", c.ShutdownTimeout, DefaultShutdownTimeout); err != nil {
		return c, err
	}
	if c.PollInterval, err = durationOrDefault("PollInterval", c.PollInterval, DefaultPollInterval); err != nil {
		return c, err
	}
	if c.ReconcileInterval == 0 {
		c.ReconcileInterval = DefaultReconcileInterval
	}
	if c.IdlePollInterval, err = durationOrDefault("IdlePollInterval", c.IdlePollInterval, DefaultIdlePollInterval); err != nil {
		return c, err
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Queues == nil {
		c.Queues = map[string]map[string]int{}
	}
	for _, typ := range tasks.Types() {
		if len(c.Queues[typ]) == 0 {
			c.Queues[typ] = map[string]int{tasks.QueueFor(typ): 1}
		}
	}
	for typ, queues := range c.Queues {
		if tasks.QueueFor(typ) == "" {
			return c, fmt.Errorf("worker: Queues: unknown task type %q", typ)
		}
		// asynq drops a queue with a priority under 1, and with none left
		// serves the queue "default" instead, so a mistake here would
		// start a worker that never takes its tasks.
		for q, prio := range queues {
			if err := tasks.CheckName(q); err != nil {
				return c, fmt.Errorf("worker: Queues[%q]: the queue name %v", typ, err)
			}
			if prio < 1 {
				return c, fmt.Errorf("worker: Queues[%q][%q]: the priority must be at least 1, got %d", typ, q, prio)
			}
		}
	}
	return c, nil
}

// durationOrDefault returns v, or def when v is 0. A negative v is an error
// naming field: asynq would poll Redis without pause for a negative
// interval, and a negative ThrottleDelay would not pause after a
// rate-limit answer at all.
func durationOrDefault(field string, v, def time.Duration) (time.Duration, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 0:
		return v, fmt.Errorf("worker: %s: must be > 0 (0 for the default), got %v", field, v)
	}
	return v, nil
}
