// Package metrics defines timq's Prometheus metrics. Nothing is registered
// globally: every constructor takes the prometheus.Registerer to register
// on, so each worker (and each test) has a registry of its own.
//
// # Metrics
//
// Counted by the worker as things happen (Worker):
//
//	timq_api_calls_total{endpoint,code}             HTTP attempts to the REST API by answer (see CodeLabel)
//	timq_api_call_duration_seconds{endpoint}        latency of those attempts (histogram)
//	timq_ratelimit_wait_seconds{endpoint}           time a call waited for its endpoint's token bucket (histogram)
//	timq_api_rate_limited_total{endpoint,code}      rate-limit answers (60007, 60011, 60018, 60019)
//	timq_task_outcomes_total{task_type,outcome}     task attempts by outcome: applied, retried, throttled, dead_lettered, handed_back
//	timq_task_retries_total{task_type}              task attempts that end in a retry (the "retried" outcome)
//	timq_dead_letters_added_total{task_type,reason} entries written to the dead-letter store
//	timq_interactive_enqueue_to_call_seconds{task_type} time from an interactive operation being due to its first call (histogram)
//	timq_job_operations_total{task_type,outcome}    jobs' operations by how they ended: applied, dead, cancelled
//
// Read from the shared rate budgets at every scrape (NewBudgets):
//
//	timq_ratelimit_slots_total{endpoint,outcome}    budget slots granted or dropped (unused, mostly for waking too late)
//	timq_ratelimit_redis_commands_total{endpoint}   Redis commands the shared budget sent
//	timq_ratelimit_fallback_grants_total{endpoint}  calls the local fallback rate let through while Redis was down
//
// Read from Redis in the background at most every QueueStatsConfig.Interval,
// never on a scrape (QueueStats):
//
//	timq_queue_tasks{queue,state}          tasks per asynq queue and state (pending, active, scheduled, retry, archived, completed, aggregating)
//	timq_queue_latency_seconds{queue}      age of the oldest pending task
//	timq_queue_paused{queue}               1 when the queue is paused
//	timq_dead_letters_held                 entries in the dead-letter store (timq dlq ls)
//	timq_jobs{state}                       jobs kept, by state (queued, running, paused, done, cancelled)
//	timq_queue_stats_updated_timestamp_seconds  when the last successful read finished
//	timq_queue_stats_errors_total          reads that failed (the gauges keep their last values)
package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/ratelimit"
)

// Task outcomes, the values of timq_task_outcomes_total's outcome label.
const (
	OutcomeApplied      = "applied"
	OutcomeRetried      = "retried"
	OutcomeThrottled    = "throttled"
	OutcomeDeadLettered = "dead_lettered"
	OutcomeHandedBack   = "handed_back"
)

// Values of timq_api_calls_total's code label that are not an ErrorCode.
const (
	// CodeNoAnswer: no HTTP answer arrived (connection refused or reset,
	// timeout, canceled).
	CodeNoAnswer = "no_answer"
	// CodeBadAnswer: HTTP 200 whose body was not the API's JSON envelope, or
	// was too large.
	CodeBadAnswer = "bad_answer"
	// CodeHTTPPrefix prefixes the status of an answer other than HTTP 200,
	// as in "http_502".
	CodeHTTPPrefix = "http_"
)

// CodeLabel returns the code label of one HTTP attempt: the API's ErrorCode
// in decimal ("0" for success) when the API answered, "http_NNN" for an
// HTTP status other than 200, CodeBadAnswer for a 200 that was not the
// envelope, and CodeNoAnswer when nothing came back.
func CodeLabel(ci chatapi.CallInfo) string {
	switch {
	case ci.HTTPStatus == 0:
		return CodeNoAnswer
	case ci.HTTPStatus != 200:
		return CodeHTTPPrefix + strconv.Itoa(ci.HTTPStatus)
	case ci.Code != 0:
		return strconv.Itoa(ci.Code)
	case ci.Err != nil:
		return CodeBadAnswer
	}
	return "0"
}

// Worker holds the metrics the worker counts as things happen. A nil
// *Worker is valid and counts nothing, so callers need no nil checks.
type Worker struct {
	calls       *prometheus.CounterVec
	callLatency *prometheus.HistogramVec
	wait        *prometheus.HistogramVec
	rateLimited *prometheus.CounterVec
	outcomes    *prometheus.CounterVec
	retries     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	recallWait  prometheus.Histogram
	recallBatch prometheus.Histogram
	dueToCall   *prometheus.HistogramVec
	jobOps      *prometheus.CounterVec
}

// NewWorker creates the worker's metrics and registers them on reg. It
// fails if reg already holds metrics of the same names (one Worker per
// registry).
func NewWorker(reg prometheus.Registerer) (*Worker, error) {
	m := &Worker{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "timq_api_calls_total",
			Help: "HTTP attempts to the Chat REST API, by endpoint and answer: the ErrorCode (0 is success), http_NNN, bad_answer or no_answer.",
		}, []string{"endpoint", "code"}),
		callLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "timq_api_call_duration_seconds",
			Help:    "Latency of HTTP attempts to the Chat REST API, from sending the request to reading the answer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .2, .3, .5, 1, 2, 3, 5, 10},
		}, []string{"endpoint"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "timq_ratelimit_wait_seconds",
			Help:    "Time a call waited for its endpoint's token bucket before being sent.",
			Buckets: []float64{.0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"endpoint"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "timq_api_rate_limited_total",
			Help: "Rate-limit answers from the Chat REST API (60007, 60011, 60018, 60019), by endpoint and code.",
		}, []string{"endpoint", "code"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "timq_task_outcomes_total",
			Help: "Task attempts by outcome: applied, retried, throttled (no attempt used), dead_lettered or handed_back (worker stopping).",
		}, []string{"task_type", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "timq_task_retries_total",
			Help: "Task attempts that failed transiently and will be retried.",
		}, []string{"task_type"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "timq_dead_letters_added_total",
			Help: "Entries written to the dead-letter store (one per operation; one per message for recalls), by task type and reason.",
		}, []string{"task_type", "reason"}),
		recallWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "timq_recall_batch_wait_seconds",
			Help:    "Time a recall task waited between joining a batch and the batch's call being sent (an idle endpoint sends at once).",
			Buckets: []float64{.0001, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
		recallBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "timq_recall_batch_messages",
			Help:    "Messages per group_msg_recall call (coalesced recalls; at most 10).",
			Buckets: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10},
		}),
		dueToCall: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "timq_interactive_enqueue_to_call_seconds",
			Help:    "Time from an interactive operation being enqueued (or due, when scheduled) to its first attempt's API call being sent; job operations are not counted.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"task_type"}),
		jobOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "timq_job_operations_total",
			Help: "Jobs' operations counted into their job, by task type and outcome: applied, dead (dead-lettered) or cancelled.",
		}, []string{"task_type", "outcome"}),
	}
	for _, c := range []prometheus.Collector{m.calls, m.callLatency, m.wait, m.rateLimited, m.outcomes, m.retries, m.deadLetters, m.recallWait, m.recallBatch, m.dueToCall, m.jobOps} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ObserveCall counts one HTTP attempt and its latency. It has the signature
// of chatapi.Config.Observer.
func (m *Worker) ObserveCall(ci chatapi.CallInfo) {
	if m == nil {
		return
	}
	ep := ci.Endpoint.Short()
	m.calls.WithLabelValues(ep, CodeLabel(ci)).Inc()
	m.callLatency.WithLabelValues(ep).Observe(ci.Duration.Seconds())
}

// RecallBatchSent records one coalesced recall call: its size and how long
// each recall in it waited to be sent.
func (m *Worker) RecallBatchSent(size int, waits []time.Duration) {
	if m == nil {
		return
	}
	m.recallBatch.Observe(float64(size))
	for _, w := range waits {
		m.recallWait.Observe(w.Seconds())
	}
}

// ObserveWait records how long a call waited for its endpoint's token bucket.
func (m *Worker) ObserveWait(ep chatapi.Endpoint, d time.Duration) {
	if m == nil {
		return
	}
	m.wait.WithLabelValues(ep.Short()).Observe(d.Seconds())
}

// RateLimited counts one rate-limit answer.
func (m *Worker) RateLimited(ep chatapi.Endpoint, code int) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(ep.Short(), strconv.Itoa(code)).Inc()
}

// Outcome counts one task attempt's outcome (one of the Outcome constants).
// OutcomeRetried also counts in timq_task_retries_total.
func (m *Worker) Outcome(taskType, outcome string) {
	if m == nil {
		return
	}
	m.outcomes.WithLabelValues(taskType, outcome).Inc()
	if outcome == OutcomeRetried {
		m.retries.WithLabelValues(taskType).Inc()
	}
}

// EnqueueToCall records an interactive operation's time from being due to
// its first call.
func (m *Worker) EnqueueToCall(taskType string, d time.Duration) {
	if m == nil {
		return
	}
	m.dueToCall.WithLabelValues(taskType).Observe(max(d, 0).Seconds())
}

// JobOperation counts one job operation's outcome as its job counted it.
func (m *Worker) JobOperation(taskType, outcome string) {
	if m == nil {
		return
	}
	m.jobOps.WithLabelValues(taskType, outcome).Inc()
}

// DeadLetterAdded counts one entry written to the dead-letter store.
func (m *Worker) DeadLetterAdded(taskType, reason string) {
	if m == nil {
		return
	}
	m.deadLetters.WithLabelValues(taskType, reason).Inc()
}

// TimeWaits returns l with every Wait timed into
// timq_ratelimit_wait_seconds{endpoint}, so each user of the endpoint's
// token bucket (the worker's call path and the recall batcher alike) is
// counted once per token taken. A nil *Worker returns l itself.
func (m *Worker) TimeWaits(ep chatapi.Endpoint, l ratelimit.Limiter) ratelimit.Limiter {
	if m == nil {
		return l
	}
	return timedLimiter{Limiter: l, m: m, ep: ep}
}

type timedLimiter struct {
	ratelimit.Limiter
	m  *Worker
	ep chatapi.Endpoint
}

// Wait waits for a token and records how long that took, unless ctx ended
// first (then no token was taken and nothing is recorded).
func (t timedLimiter) Wait(ctx context.Context) error {
	start := time.Now()
	if err := t.Limiter.Wait(ctx); err != nil {
		return err
	}
	t.m.ObserveWait(t.ep, time.Since(start))
	return nil
}
