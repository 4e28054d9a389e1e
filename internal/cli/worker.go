package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/timq/timq/internal/api"
	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/dashboard"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/httpserver"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/metrics"
	"github.com/timq/timq/tasks"
	"github.com/timq/timq/worker"
)

// workerSettings reads the worker's TIMQ_* settings. Flags given on the
// command line override them.
type workerSettings struct {
	redis           config.Redis
	api             config.API
	rate            float64
	concurrency     int
	recallConc      int
	maxRetry        int
	httpAddr        string
	dashboard       bool
	serveAPI        bool
	dashReadOnly    bool
	shutdownTimeout time.Duration
	localBudget     bool
	appliedResults  bool
	queues          string // --queues / TIMQ_QUEUES, parsed by parseQueues
	notifySecret    config.Secret
	log             logFlags
}

func loadWorkerSettings(env *Env) (*workerSettings, error) {
	get := getenvOr(env)
	s := &workerSettings{}
	var err error
	if s.redis, err = config.LoadRedis(get); err != nil {
		return nil, settingError(err)
	}
	if s.api, err = config.LoadAPI(get); err != nil {
		return nil, settingError(err)
	}
	if s.rate, err = config.Float(get, config.EnvRate, worker.DefaultRate, worker.MinRate, worker.MaxRate); err != nil {
		return nil, settingError(err)
	}
	if s.concurrency, err = config.Int(get, config.EnvConcurrency, worker.DefaultConcurrency, 1, worker.MaxConcurrency); err != nil {
		return nil, settingError(err)
	}
	if s.maxRetry, err = config.Int(get, config.EnvMaxRetry, worker.DefaultMaxRetry, 1, tasks.MaxRetryLimit); err != nil {
		return nil, settingError(err)
	}
	if s.notifySecret, err = config.LoadNotifySecret(get); err != nil {
		return nil, settingError(err)
	}
	s.httpAddr = get(config.EnvHTTPAddr)
	s.queues = strings.TrimSpace(get(config.EnvQueues))
	return s, nil
}

func (s *workerSettings) workerConfig(env *Env) (worker.Config, error) {
	log, err := s.log.logger(env)
	if err != nil {
		return worker.Config{}, err
	}
	queues, err := parseQueues("--queues", s.queues)
	if err != nil {
		return worker.Config{}, err
	}
	return worker.Config{
		Redis: s.redis.Conn,
		API: worker.API{
			SDKAppID:  s.api.SDKAppID,
			SecretKey: s.api.SecretKey.Reveal(),
			Admin:     s.api.Admin,
			Region:    s.api.Region,
			BaseURL:   s.api.BaseURL,
		},
		Rate:              s.rate,
		LocalBudgetOnly:   s.localBudget,
		AppliedResults:    s.appliedResults,
		Concurrency:       s.concurrency,
		RecallConcurrency: s.recallConc,
		MaxRetry:          s.maxRetry,
		ShutdownTimeout:   s.shutdownTimeout,
		Queues:            queues,
		NotifySecret:      s.notifySecret.Reveal(),
		Logger:            log,
	}, nil
}

// parseQueues reads --queues: comma-separated OP:QUEUE=PRIORITY entries
// (OP is clear, recall or modify; PRIORITY a whole number from 1, asynq's
// weighted priority), such as "recall:timq-recall=3,recall:cleanup=1". An
// operation with entries consumes exactly those queues; one without keeps
// its own queue (timq-clear, timq-recall, timq-modify). Errors name src.
func parseQueues(src, spec string) (map[string]map[string]int, error) {
	if spec == "" {
		return nil, nil
	}
	out := map[string]map[string]int{}
	for _, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		op, rest, ok1 := strings.Cut(entry, ":")
		name, prio, ok2 := strings.Cut(rest, "=")
		if !ok1 || !ok2 {
			return nil, UsageError("%s: %q is not OP:QUEUE=PRIORITY (e.g. recall:cleanup=1)", src, entry)
		}
		typ := "timq:" + op
		if tasks.QueueFor(typ) == "" {
			return nil, UsageError("%s: %q: the operation must be clear, recall or modify, got %q", src, entry, op)
		}
		if err := tasks.CheckName(name); err != nil {
			return nil, UsageError("%s: %q: the queue name %v", src, entry, err)
		}
		p, err := strconv.Atoi(prio)
		if err != nil || p < 1 {
			return nil, UsageError("%s: %q: the priority must be a whole number from 1, got %q", src, entry, prio)
		}
		if out[typ] == nil {
			out[typ] = map[string]int{}
		}
		out[typ][name] = p
	}
	return out, nil
}

func runWorker(ctx context.Context, env *Env, args []string) error {
	s, err := loadWorkerSettings(env)
	fs := newFlagSet(env, "worker", "[flags]\n\nRuns clear, recall and modify tasks against the Chat REST API.\nSettings: TIMQ_REDIS_URL (or TIMQ_REDIS_CLUSTER_ADDRS), TIMQ_SDKAPPID,\nTIMQ_SECRET_KEY or TIMQ_SECRET_KEY_FILE, TIMQ_ADMIN, TIMQ_REGION or TIMQ_API_BASE,\nTIMQ_RATE, TIMQ_CONCURRENCY, TIMQ_MAX_RETRY, TIMQ_HTTP_ADDR, TIMQ_NOTIFY_SECRET\n(signs job completion notices; none are sent without it); with --dashboard,\nTIMQ_DASH_USER and TIMQ_DASH_PASSWORD or TIMQ_DASH_TOKEN. Flags override them.")
	if s == nil {
		s = &workerSettings{}
	}
	fs.Float64Var(&s.rate, "rate", s.rate, "the API's limit per endpoint in calls per second (TIMQ_RATE; default 200)")
	fs.IntVar(&s.concurrency, "concurrency", s.concurrency, "clear and modify tasks run at once, per endpoint (TIMQ_CONCURRENCY; default 100)")
	fs.IntVar(&s.recallConc, "recall-concurrency", worker.DefaultRecallConcurrency, "recall tasks run at once; waiting recalls of a group share calls, so keep it high")
	fs.IntVar(&s.maxRetry, "max-retry", s.maxRetry, "most retries of any task before it is dead-lettered (TIMQ_MAX_RETRY; default 10)")
	fs.StringVar(&s.httpAddr, "http-addr", s.httpAddr, "serve /metrics, /healthz and /readyz on HOST:PORT (TIMQ_HTTP_ADDR)")
	fs.BoolVar(&s.serveAPI, "api", false, "also serve the HTTP API under /v1/ on --http-addr (tokens: TIMQ_API_TOKEN, TIMQ_API_ADMIN_TOKEN; required off loopback)")
	fs.BoolVar(&s.dashboard, "dashboard", false, "also serve the dashboard under /dashboard/ on --http-addr (credentials: TIMQ_DASH_USER and TIMQ_DASH_PASSWORD, or TIMQ_DASH_TOKEN)")
	fs.BoolVar(&s.dashReadOnly, "dashboard-read-only", false, "with --dashboard: the dashboard can look but not delete, run, archive or pause")
	fs.BoolVar(&s.appliedResults, "applied-results", false, "write a result for every applied task too, shown on the dashboard (one more Redis command per task)")
	fs.BoolVar(&s.localBudget, "local-budget", false, "pace each endpoint in this process alone instead of sharing the budget with every worker on the Redis (only for a single worker)")
	fs.StringVar(&s.queues, "queues", s.queues, "the queues each operation consumes, as OP:QUEUE=PRIORITY,... (TIMQ_QUEUES): an operation listed consumes exactly its entries, one not listed its own queue (timq-clear, timq-recall, timq-modify); e.g. recall:timq-recall=3,recall:cleanup=1 also takes recalls queued with --queue cleanup")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", worker.DefaultShutdownTimeout, "on SIGTERM, how long to wait for tasks in flight before handing them back")
	s.log.register(fs)
	if perr := parseFlags(fs, args); perr != nil {
		return perr
	}
	if err != nil {
		return err
	}
	if err := s.checkFlags(); err != nil {
		return err
	}
	cfg, err := s.workerConfig(env)
	if err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(getenvOr(env)(envCPUProfile))
	if err != nil {
		return err
	}
	defer stopProfile()
	if s.httpAddr == "" {
		if s.dashboard {
			return UsageError("--dashboard needs --http-addr (or TIMQ_HTTP_ADDR)")
		}
		if s.serveAPI {
			return UsageError("--api needs --http-addr (or TIMQ_HTTP_ADDR)")
		}
		w, err := worker.New(cfg)
		if err != nil {
			return UsageError("%v", err)
		}
		cfg.Logger.Info("connecting", "redis", s.redis.Display, "api", s.api.Display(), "gomaxprocs", runtime.GOMAXPROCS(0))
		return w.Run(ctx)
	}
	return runWorkerWithHTTP(ctx, env, s, cfg)
}

// checkFlags refuses the worker's numbers out of range, naming the flag
// (or setting) they came from. worker.Config would take 0 as its default
// and name its own fields; here 0 is refused, as TIMQ_CONCURRENCY=0 is.
func (s *workerSettings) checkFlags() error {
	// Written so that NaN fails too.
	if !(s.rate >= worker.MinRate && s.rate <= worker.MaxRate) {
		return UsageError("--rate: must be a number from %g to %g, got %v", worker.MinRate, worker.MaxRate, s.rate)
	}
	for _, f := range []struct {
		name      string
		v, lo, hi int
	}{
		{"--concurrency", s.concurrency, 1, worker.MaxConcurrency},
		{"--recall-concurrency", s.recallConc, 1, worker.MaxConcurrency},
		{"--max-retry", s.maxRetry, 1, tasks.MaxRetryLimit},
	} {
		if f.v < f.lo || f.v > f.hi {
			return UsageError("%s: must be from %d to %d, got %d", f.name, f.lo, f.hi, f.v)
		}
	}
	if s.shutdownTimeout <= 0 {
		return UsageError("--shutdown-timeout: must be more than 0, got %v", s.shutdownTimeout)
	}
	return nil
}

// runWorkerWithHTTP runs the worker and its operations port (see package
// httpserver): metrics on a registry of its own, queue sizes read in the
// background every few seconds, health checks and, with --dashboard, the
// dashboard. The port listens before the worker starts, so a taken port
// fails at once.
func runWorkerWithHTTP(ctx context.Context, env *Env, s *workerSettings, cfg worker.Config) error {
	log := cfg.Logger
	var dash *dashboard.Dashboard
	if s.dashboard {
		auth, err := dashboard.AuthFromEnv(getenvOr(env))
		if err != nil {
			return UsageError("%v", err)
		}
		if err := dashboard.CheckAddr(s.httpAddr, auth); err != nil {
			return UsageError("--http-addr: %v", err)
		}
		if dash, err = dashboard.New(dashboard.Config{
			Redis: s.redis.Conn, RootPath: httpserver.DashboardPath, ReadOnly: s.dashReadOnly, Auth: auth, Logger: log,
		}); err != nil {
			return UsageError("%v", err)
		}
		defer dash.Close()
	} else if s.dashReadOnly {
		return UsageError("--dashboard-read-only needs --dashboard")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Metrics = reg
	w, err := worker.New(cfg)
	if err != nil {
		return UsageError("%v", err)
	}
	insp := asynq.NewInspector(s.redis.Conn)
	defer insp.Close()
	rdb := s.redis.Client()
	defer rdb.Close()
	qs, err := metrics.NewQueueStats(metrics.QueueStatsConfig{
		Inspector: insp, DeadLetters: dlq.New(rdb), Jobs: jobs.NewStore(rdb, 0), Queues: tasks.Queues(), Logger: log,
	})
	if err != nil {
		return err
	}
	reg.MustRegister(qs)
	hcfg := httpserver.Config{Gatherer: reg, Ready: w.Ready, Logger: log}
	if dash != nil {
		hcfg.Dashboard = dash
	}
	if s.serveAPI {
		tokens, err := api.LoadTokens(getenvOr(env))
		if err != nil {
			return settingError(err)
		}
		if err := api.CheckAddr(s.httpAddr, tokens); err != nil {
			return UsageError("--http-addr: %v", err)
		}
		srv, err := api.New(api.Config{Redis: s.redis.Conn, Tokens: tokens, Logger: log, Metrics: reg})
		if err != nil {
			return UsageError("%v", err)
		}
		defer srv.Close()
		hcfg.API = srv
	}
	h, err := httpserver.Handler(hcfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}

	cfg.Logger.Info("connecting", "redis", s.redis.Display, "api", s.api.Display(), "gomaxprocs", runtime.GOMAXPROCS(0))
	if err := w.Start(); err != nil {
		ln.Close()
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go qs.Run(ctx)
	served := make(chan error, 1)
	go func() { served <- httpserver.Serve(ctx, ln, h) }()
	log.Info("serving metrics and health checks", "addr", ln.Addr().String(), "dashboard", dash != nil, "api", s.serveAPI)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		log.Error("operations port stopped", "error", serveErr)
	}
	stop()
	w.Shutdown()
	if serveErr == nil {
		serveErr = <-served
	}
	if serveErr != nil && serveErr != http.ErrServerClosed {
		return fmt.Errorf("--http-addr: %w", serveErr)
	}
	return nil
}
