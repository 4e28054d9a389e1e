// Package worker runs timq's tasks: it takes clear, recall and modify tasks
// from asynq queues and calls the Tencent Cloud Chat REST API for each,
// holding every endpoint under its call budget, retrying transient failures
// with backoff and dead-lettering the rest.
//
// # Outcomes
//
// A task ends in exactly one of these ways:
//   - applied: the API answered success (for recall, every message's RetCode
//     was 0). asynq marks the task completed; with Config.AppliedResults
//     the task also gets a result (asynq's result writer) saying so. A
//     recall that is not applied in full always gets a result listing each
//     message's outcome.
//   - retried: a transient failure (ErrorCode 10002, 20004, 20005, 91000, or
//     no code at all: connection refused or reset, timeout, HTTP 5xx, an
//     answer that is not JSON). The task comes back after Config.RetryBase
//     doubling per attempt up to Config.RetryCap, with jitter, and uses an
//     attempt.
//   - throttled: a rate-limit answer (60007, 60011, 60018, 60019). The
//     endpoint pauses for Config.ThrottleDelay and the call is repeated; no
//     attempt is used.
//   - dead-lettered: any other ErrorCode, a payload that does not parse or
//     validate, or a transient failure on the last attempt. The operation is
//     written to the durable dead-letter store (see `timq dlq`) and the task
//     is archived in asynq with the error, code included.
//   - handed back: the worker is stopping; asynq returns the task to its
//     queue for another worker.
//
// Recall outcomes are per message: a message recalled is done, a message with
// a transient RetCode is retried on its own (the task's next attempt sends
// only the messages not yet settled), and a message with a permanent RetCode
// is dead-lettered on its own with that code.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/metrics"
	"github.com/timq/timq/internal/ratelimit"
	"github.com/timq/timq/internal/recallbatch"
	"github.com/timq/timq/tasks"
)

// Worker runs timq's task handlers on one asynq server per endpoint, so a
// backlog of one operation never occupies the goroutines another needs.
type Worker struct {
	cfg          Config
	log          *slog.Logger
	api          *chatapi.Client
	rdb          redis.UniversalClient
	dlq          *dlq.Store
	jobs         *jobs.Store
	progress     *recallProgress
	pacers       map[chatapi.Endpoint]ratelimit.Limiter
	jobWaiters   map[chatapi.Endpoint]chan struct{}     // see waitTurn
	budgets      map[chatapi.Endpoint]*ratelimit.Shared // the shared budgets behind pacers; nil with LocalBudgetOnly
	recalls      *recallbatch.Batcher
	startRecalls sync.Once
	metrics      *metrics.Worker // nil: no metrics
	// calls is the context of every API call the worker makes; cutCalls
	// ends it when a shutdown's timeout has passed (see Shutdown).
	calls    context.Context
	cutCalls context.CancelFunc

	mu        sync.Mutex
	servers   []*asynq.Server
	asynqRDB  redis.UniversalClient // the servers' shared client; they do not close it
	started   bool
	stopBg    context.CancelFunc // stops the archive reconciler
	bgDone    chan struct{}
	inspector *asynq.Inspector
	// feederClient enqueues the job feeder's tasks (nil: no feeder).
	feederClient *asynq.Client
}

// New returns a Worker for cfg. It connects to nothing until Start or Run.
func New(cfg Config) (*Worker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var m *metrics.Worker
	if cfg.Metrics != nil {
		if m, err = metrics.NewWorker(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("worker: Metrics: %w", err)
		}
	}
	api, err := chatapi.New(chatapi.Config{
		SDKAppID:  cfg.API.SDKAppID,
		SecretKey: cfg.API.SecretKey,
		Admin:     cfg.API.Admin,
		Region:    cfg.API.Region,
		BaseURL:   cfg.API.BaseURL,
		Timeout:   cfg.API.Timeout,
		// A connection for every call that can be in flight at once.
		MaxConns:   max(chatapi.DefaultMaxConns, 2*cfg.Concurrency+cfg.RecallConcurrency),
		Observer:   m.ObserveCall,
		HTTPClient: cfg.API.HTTPClient,
	})
	if err != nil {
		return nil, fmt.Errorf("worker: API: %w", err)
	}
	rdb, err := newRedisClient(cfg.Redis)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		cfg:      cfg,
		log:      cfg.Logger,
		api:      api,
		rdb:      rdb,
		dlq:      dlq.New(rdb),
		jobs:     jobs.NewStore(rdb, 0),
		progress: &recallProgress{rdb: rdb, ttl: DefaultRecallProgressTTL},
		pacers:   map[chatapi.Endpoint]ratelimit.Limiter{},
		metrics:  m,
		jobWaiters: map[chatapi.Endpoint]chan struct{}{
			chatapi.EndpointClear:  make(chan struct{}, maxJobWaiters),
			chatapi.EndpointModify: make(chan struct{}, maxJobWaiters),
		},
	}
	for _, ep := range []chatapi.Endpoint{chatapi.EndpointClear, chatapi.EndpointRecall, chatapi.EndpointModify} {
		if cfg.LocalBudgetOnly {
			w.pacers[ep] = ratelimit.NewPacer(cfg.Rate)
			continue
		}
		// The API's limit is per app and endpoint: one budget per pair.
		name := fmt.Sprintf("%d:%s", cfg.API.SDKAppID, ep.Short())
		opts := []ratelimit.SharedOption{ratelimit.WithLogger(cfg.Logger.With("endpoint", ep.Short()))}
		if ep != chatapi.EndpointRecall {
			// One goroutine per task waits here; the ramp is for the recall
			// batcher, whose dispatchers wait only for batches already
			// queued: one at a time when recalls come one by one.
			opts = append(opts, ratelimit.WithoutRamp())
		}
		shared := ratelimit.NewShared(rdb, name, cfg.Rate, opts...)
		if w.budgets == nil {
			w.budgets = map[chatapi.Endpoint]*ratelimit.Shared{}
		}
		w.budgets[ep] = shared
		w.pacers[ep] = shared
	}
	if cfg.Metrics != nil && len(w.budgets) > 0 {
		if err := cfg.Metrics.Register(metrics.NewBudgets(w.sharedStats)); err != nil {
			return nil, fmt.Errorf("worker: Metrics: %w", err)
		}
	}
	// Every wait for a token is timed, whoever waits (a task or the recall
	// batcher).
	for ep, l := range w.pacers {
		w.pacers[ep] = m.TimeWaits(ep, l)
	}
	w.calls, w.cutCalls = context.WithCancel(context.Background())
	w.recalls = recallbatch.New(w.pacers[chatapi.EndpointRecall], w.sendRecall, recallbatch.Options{
		CallContext:   w.calls,
		ThrottleDelay: cfg.ThrottleDelay,
		OnSend:        func(_ recallbatch.Key, size int, waits []time.Duration) { m.RecallBatchSent(size, waits) },
		Dispatchers:   recallbatch.DispatchersFor(cfg.Rate),
	})
	return w, nil
}

// Handler returns the handler of all three task types, for use in an asynq
// server of the caller's own. Start and Run use it too.
func (w *Worker) Handler() asynq.Handler {
	mux := asynq.NewServeMux()
	mux.HandleFunc(tasks.TypeClear, w.handleClear)
	mux.HandleFunc(tasks.TypeRecall, w.handleRecall)
	mux.HandleFunc(tasks.TypeModify, w.handleModify)
	if w.metrics != nil {
		mux.Use(w.countOutcomes)
	}
	mux.Use(w.refuseUnknownTypes)
	mux.Use(w.jobLane)
	return mux
}

// Start starts one asynq server per endpoint and returns. Call Shutdown to stop.
func (w *Worker) Start() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return errors.New("worker: already started")
	}
	// A worker that cannot reach Redis says so and does not start, rather
	// than log that it started and then only errors.
	ping, cancel := context.WithTimeout(context.Background(), startPingTimeout)
	err := w.rdb.Ping(ping).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("worker: Redis does not answer: %w", err)
	}
	handler := w.Handler()
	// One Redis client for the three servers.
	asynqRDB, err := newRedisClient(w.cfg.Redis)
	if err != nil {
		return err
	}
	for _, typ := range tasks.Types() {
		concurrency := w.cfg.Concurrency
		if typ == tasks.TypeRecall {
			concurrency = w.cfg.RecallConcurrency
		}
		srv := asynq.NewServerFromRedisClient(asynqRDB, asynq.Config{
			Concurrency:              concurrency,
			Queues:                   w.serveQueues(typ),
			StrictPriority:           true,
			RetryDelayFunc:           func(n int, err error, _ *asynq.Task) time.Duration { return w.backoff(n, err) },
			IsFailure:                isFailure,
			ShutdownTimeout:          w.cfg.ShutdownTimeout,
			BaseContext:              func() context.Context { return w.calls },
			DelayedTaskCheckInterval: w.cfg.PollInterval,
			TaskCheckInterval:        w.cfg.IdlePollInterval,
			Logger:                   asynqLogger{w.log.With("component", "asynq", "task_type", typ)},
			LogLevel:                 asynq.WarnLevel,
		})
		if err := srv.Start(handler); err != nil {
			for _, s := range w.servers {
				s.Shutdown()
			}
			w.servers = nil
			_ = asynqRDB.Close()
			return fmt.Errorf("worker: start %s server: %w", typ, err)
		}
		w.servers = append(w.servers, srv)
	}
	if err := w.startNoticeServer(asynqRDB); err != nil {
		for _, s := range w.servers {
			s.Shutdown()
		}
		w.servers = nil
		_ = asynqRDB.Close()
		return err
	}
	w.started = true
	w.asynqRDB = asynqRDB
	ctx, cancel := context.WithCancel(context.Background())
	w.stopBg, w.bgDone = cancel, make(chan struct{})
	var bg sync.WaitGroup
	if w.cfg.ReconcileInterval > 0 {
		w.inspector = asynq.NewInspector(w.cfg.Redis)
		var queues []string
		for _, typ := range tasks.Types() {
			for q := range w.serveQueues(typ) {
				queues = append(queues, q)
			}
		}
		rec := &archiveReconciler{rdb: w.rdb, insp: w.inspector, store: w.dlq, queues: queues,
			onTask: w.jobArchived,
			onAdd: func(e dlq.Entry) {
				w.metrics.DeadLetterAdded(e.Type, e.Reason)
				w.log.Error("dead-lettered", "dlq_id", e.ID, "task_type", e.Type, "queue", e.Queue, "reason", e.Reason, "info", e.Info)
			}}
		bg.Add(1)
		go func() { defer bg.Done(); w.runReconciler(ctx, rec, w.cfg.ReconcileInterval) }()
	}
	if w.cfg.JobWindow >= 0 {
		w.feederClient = asynq.NewClientFromRedisClient(w.rdb)
		feeder := jobs.NewFeeder(w.jobs, w.feederClient, jobs.FeederOptions{
			Window: w.cfg.JobWindow, MaxRetry: w.cfg.MaxRetry, Logger: w.log.With("component", "job-feeder"),
		})
		bg.Add(1)
		go func() { defer bg.Done(); feeder.Run(ctx) }()
	}
	go func() { bg.Wait(); close(w.bgDone) }()
	w.log.Info("worker started", "rate", w.cfg.Rate, "shared_budget", !w.cfg.LocalBudgetOnly, "concurrency", w.cfg.Concurrency, "max_retry", w.cfg.MaxRetry)
	return nil
}

// startPingTimeout bounds Start's check that Redis answers.
const startPingTimeout = 5 * time.Second

// cutCallsAfter is how long after the shutdown timeout the calls still in
// flight are cut off.
const cutCallsAfter = 100 * time.Millisecond

// Shutdown stops taking tasks, waits up to Config.ShutdownTimeout for the
// tasks in flight, hands the unfinished ones back to their queues, and
// closes the worker's connections. It is safe to call more than once.
//
// The timeout bounds the stop: API calls still waiting for their answer
// when it has passed are cut off (a hung API cannot hold the process), and
// their tasks go back to the queue to run again; every operation is
// idempotent. The worker cannot be started again after Shutdown.
func (w *Worker) Shutdown() {
	w.mu.Lock()
	servers := w.servers
	w.servers = nil
	w.mu.Unlock()
	if len(servers) > 0 {
		// Just after asynq's own timeout, so that asynq hands the tasks
		// back before their calls fail.
		cut := time.AfterFunc(w.cfg.ShutdownTimeout+cutCallsAfter, w.cutCalls)
		defer cut.Stop()
	}
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.Shutdown() }()
	}
	wg.Wait()
	w.mu.Lock()
	if w.asynqRDB != nil && len(servers) > 0 {
		_ = w.asynqRDB.Close()
		w.asynqRDB = nil
	}
	w.mu.Unlock()
	// After the servers: a recall handler still running may be waiting for
	// its batch.
	w.recalls.Stop()
	w.mu.Lock()
	stopBg, bgDone, insp := w.stopBg, w.bgDone, w.inspector
	w.stopBg, w.inspector = nil, nil
	w.mu.Unlock()
	if stopBg != nil {
		stopBg()
		<-bgDone
		if insp != nil {
			_ = insp.Close()
		}
		if w.feederClient != nil {
			_ = w.feederClient.Close()
		}
	}
	if len(servers) > 0 {
		args := []any{}
		for ep, st := range w.BudgetStats() {
			args = append(args, ep, st)
		}
		w.log.Info("worker stopped", args...)
	}
	_ = w.rdb.Close()
}

// newRedisClient makes a go-redis client from opt, as asynq does.
func newRedisClient(opt asynq.RedisConnOpt) (redis.UniversalClient, error) {
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, errors.New("worker: Redis: connection option did not make a go-redis v9 client")
	}
	return rdb, nil
}

// Run starts the worker and blocks until ctx ends, then shuts down
// gracefully (see Shutdown) and returns nil.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	w.Shutdown()
	return nil
}

// BudgetStat is what one endpoint's shared budget did in this process.
type BudgetStat struct {
	// Commands is the number of Redis commands the budget sent.
	Commands int64
	// Grants is the number of API calls it let through.
	Grants int64
	// Reserved is the number of slots Redis handed to this process.
	Reserved int64
	// Wasted is the number of reserved slots not used: their call gave up
	// or woke too late.
	Wasted int64
	// FallbackGrants is the number of calls let through at the fallback
	// rate while Redis did not answer.
	FallbackGrants int64
}

// BudgetStats returns, per endpoint (keyed by its name, such as
// "group_msg_recall"), what its shared budget did, or nil with
// LocalBudgetOnly.
func (w *Worker) BudgetStats() map[string]BudgetStat {
	if len(w.budgets) == 0 {
		return nil
	}
	out := map[string]BudgetStat{}
	for ep, st := range w.sharedStats() {
		out[ep.Short()] = BudgetStat(st)
	}
	return out
}

// sharedStats is BudgetStats by endpoint, for the metrics.
func (w *Worker) sharedStats() map[chatapi.Endpoint]ratelimit.SharedStats {
	if len(w.budgets) == 0 {
		return nil
	}
	out := map[chatapi.Endpoint]ratelimit.SharedStats{}
	for ep, b := range w.budgets {
		out[ep] = b.Stats()
	}
	return out
}

// Ping checks that Redis answers (for readiness checks).
func (w *Worker) Ping(ctx context.Context) error { return w.rdb.Ping(ctx).Err() }

// Ready returns nil when the worker's servers run (so every task type has
// its handler registered) and Redis answers; otherwise an error saying
// which is missing. It backs the /readyz check.
func (w *Worker) Ready(ctx context.Context) error {
	w.mu.Lock()
	running := len(w.servers)
	w.mu.Unlock()
	if running == 0 {
		return errors.New("worker not running: no task handlers registered")
	}
	if err := w.Ping(ctx); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	return nil
}

// countOutcomes is the middleware that counts each task attempt's outcome
// in the metrics, from the error its handler returned.
func (w *Worker) countOutcomes(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := next.ProcessTask(ctx, t)
		var throttled *throttledError
		outcome := metrics.OutcomeRetried
		switch {
		case err == nil:
			outcome = metrics.OutcomeApplied
		case errors.As(err, &throttled):
			outcome = metrics.OutcomeThrottled
		case errors.Is(err, asynq.SkipRetry):
			outcome = metrics.OutcomeDeadLettered
		case ctx.Err() != nil || chatapi.Classify(err) == chatapi.ClassCanceled:
			outcome = metrics.OutcomeHandedBack
		case w.attemptOf(ctx, t).last:
			outcome = metrics.OutcomeDeadLettered // asynq archives it
		}
		w.metrics.Outcome(t.Type(), outcome)
		return err
	})
}
