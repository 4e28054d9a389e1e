package cli

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/dashboard"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/httpserver"
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
	dashReadOnly    bool
	shutdownTimeout time.Duration
	ackDelay        time.Duration
	prefetch        int
	localBudget     bool
	appliedResults  bool
	procs           int
	// sysmonPoll is parsed here for --help and validation only: main acts
	// on --sysmon-poll before anything else (see SysmonPollGODEBUG).
	sysmonPoll bool
	log        logFlags
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
	if s.concurrency, err = config.Int(get, config.EnvConcurrency, worker.DefaultConcurrency, 1, 10000); err != nil {
		return nil, settingError(err)
	}
	if s.maxRetry, err = config.Int(get, config.EnvMaxRetry, worker.DefaultMaxRetry, 1, 1000); err != nil {
		return nil, settingError(err)
	}
	s.httpAddr = get(config.EnvHTTPAddr)
	return s, nil
}

func (s *workerSettings) workerConfig(env *Env) (worker.Config, error) {
	log, err := s.log.logger(env)
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
		AckDelay:          ackDelay(s.ackDelay),
		Prefetch:          prefetchBatch(s.prefetch),
		Logger:            log,
	}, nil
}

// ackDelay maps --ack-delay onto worker.Config.AckDelay, where 0 means the
// default and a negative value means off.
func ackDelay(flag time.Duration) time.Duration {
	if flag <= 0 {
		return -1
	}
	return flag
}

// prefetchBatch maps --prefetch onto worker.Config.Prefetch, where 0 means
// the default: here 0 and 1 both mean one task at a time.
func prefetchBatch(flag int) int {
	if flag <= 1 {
		return -1
	}
	return flag
}

func runWorker(ctx context.Context, env *Env, args []string) error {
	s, err := loadWorkerSettings(env)
	fs := newFlagSet(env, "worker", "[flags]\n\nRuns clear, recall and modify tasks against the Chat REST API.\nSettings: TIMQ_REDIS_URL (or TIMQ_REDIS_CLUSTER_ADDRS), TIMQ_SDKAPPID,\nTIMQ_SECRET_KEY or TIMQ_SECRET_KEY_FILE, TIMQ_ADMIN, TIMQ_REGION or TIMQ_API_BASE,\nTIMQ_RATE, TIMQ_CONCURRENCY, TIMQ_MAX_RETRY, TIMQ_HTTP_ADDR; with --dashboard,\nTIMQ_DASH_USER and TIMQ_DASH_PASSWORD or TIMQ_DASH_TOKEN. Flags override them.")
	if s == nil {
		s = &workerSettings{}
	}
	fs.Float64Var(&s.rate, "rate", s.rate, "the API's limit per endpoint in calls per second (TIMQ_RATE; default 200)")
	fs.IntVar(&s.concurrency, "concurrency", s.concurrency, "clear and modify tasks run at once, per endpoint (TIMQ_CONCURRENCY; default 100)")
	fs.IntVar(&s.recallConc, "recall-concurrency", worker.DefaultRecallConcurrency, "recall tasks run at once; waiting recalls of a group share calls, so keep it high")
	fs.IntVar(&s.maxRetry, "max-retry", s.maxRetry, "most retries of any task before it is dead-lettered (TIMQ_MAX_RETRY; default 10)")
	fs.StringVar(&s.httpAddr, "http-addr", s.httpAddr, "serve /metrics, /healthz and /readyz on HOST:PORT (TIMQ_HTTP_ADDR)")
	fs.BoolVar(&s.dashboard, "dashboard", false, "also serve the dashboard under /dashboard/ on --http-addr (credentials: TIMQ_DASH_USER and TIMQ_DASH_PASSWORD, or TIMQ_DASH_TOKEN)")
	fs.BoolVar(&s.dashReadOnly, "dashboard-read-only", false, "with --dashboard: the dashboard can look but not delete, run, archive or pause")
	fs.BoolVar(&s.appliedResults, "applied-results", false, "write a result for every applied task too, shown on the dashboard (one more Redis command per task)")
	fs.BoolVar(&s.localBudget, "local-budget", false, "pace each endpoint in this process alone instead of sharing the budget with every worker on the Redis (only for a single worker)")
	fs.DurationVar(&s.shutdownTimeout, "shutdown-timeout", worker.DefaultShutdownTimeout, "on SIGTERM, how long to wait for tasks in flight before handing them back")
	fs.DurationVar(&s.ackDelay, "ack-delay", worker.DefaultAckDelay, "how long the Redis script that ends a task well may wait to share a round trip with others (at most 1s; up to a quarter of the smaller of --concurrency and --recall-concurrency at once); 0 sends each on its own. Cuts the Redis round trips per task from two to little more than one, at the cost of up to this long with a finished task still shown active")
	fs.IntVar(&s.prefetch, "prefetch", worker.DefaultPrefetch, "tasks taken from a queue per Redis round trip (at most a quarter of the smaller of --concurrency and --recall-concurrency); taken tasks wait at most 5s in the worker before going back to their queue. 1 takes one at a time, as asynq does")
	fs.IntVar(&s.procs, "procs", DefaultWorkerProcs, "OS threads running Go code at once (GOMAXPROCS); 0 keeps Go's choice, one per core, as does setting GOMAXPROCS in the environment. One is plenty: at the API's limit one worker needs under a quarter of a core (make bench), and more threads add scheduler wake-ups, not speed")
	fs.BoolVar(&s.sysmonPoll, "sysmon-poll", true, "keep the Go runtime's monitor thread polling rather than sleeping between bursts of work: the worker re-executes itself once at start with GODEBUG=schedtrace="+sysmonPollMS+" (one SCHED line on stderr every 24.8 days), which cuts its thread wake-ups per call by three quarters and its CPU by about a quarter (make bench). Off, or a schedtrace already in GODEBUG, leaves the process as started")
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
	procs, err := workerProcs(fs, s.procs, getenvOr(env))
	if err != nil {
		return err
	}
	if procs > 0 && env.SetProcs != nil {
		env.SetProcs(procs)
	}
	cfg, err := s.workerConfig(env)
	if err != nil {
		return err
	}
	if env.ReexecErr != nil {
		cfg.Logger.Warn("could not re-execute with the runtime's monitor polling (--sysmon-poll); running as started", "error", env.ReexecErr)
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
		w, err := worker.New(cfg)
		if err != nil {
			return UsageError("%v", err)
		}
		cfg.Logger.Info("connecting", "redis", s.redis.Display, "api", s.api.Display(), "gomaxprocs", runtime.GOMAXPROCS(0),
			"sysmon_poll", schedtraceMS(getenvOr(env)("GODEBUG")) > 0)
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
	if s.ackDelay > worker.MaxAckDelay {
		return UsageError("--ack-delay: must be at most %v, got %v", worker.MaxAckDelay, s.ackDelay)
	}
	return nil
}

// DefaultWorkerProcs is the GOMAXPROCS of `timq worker` unless --procs or
// the GOMAXPROCS environment variable says otherwise. The API caps an app
// at 200 calls per second per endpoint, which one worker serves with a sixth
// to a fifth of a core in make bench; a second thread only adds scheduler
// wake-ups (futex and nanosleep calls, several per task), which cost a
// quarter to a third of the worker's CPU there. Calls stay paced either
// way.
const DefaultWorkerProcs = 1

// MaxWorkerProcs bounds --procs. The runtime sets up every P it is given:
// --procs 1000000 took over 4 GB before the worker started.
const MaxWorkerProcs = 256

// workerProcs returns the GOMAXPROCS to set for `timq worker`, 0 for none:
// --procs when given, else nothing when the GOMAXPROCS variable is set,
// else DefaultWorkerProcs.
func workerProcs(fs *flag.FlagSet, procs int, getenv func(string) string) (int, error) {
	switch {
	case procs < 0 || procs > MaxWorkerProcs:
		return 0, UsageError("--procs: must be 0 (Go's choice, one per core) to %d, got %d", MaxWorkerProcs, procs)
	case !flagGiven(fs, "procs") && getenv("GOMAXPROCS") != "":
		return 0, nil
	}
	return procs, nil
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
		Inspector: insp, DeadLetters: dlq.New(rdb), Queues: tasks.Queues(), Logger: log,
	})
	if err != nil {
		return err
	}
	reg.MustRegister(qs)
	hcfg := httpserver.Config{Gatherer: reg, Ready: w.Ready, Logger: log}
	if dash != nil {
		hcfg.Dashboard = dash
	}
	h, err := httpserver.Handler(hcfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.httpAddr)
	if err != nil {
		return fmt.Errorf("--http-addr: %w", err)
	}

	cfg.Logger.Info("connecting", "redis", s.redis.Display, "api", s.api.Display(), "gomaxprocs", runtime.GOMAXPROCS(0),
		"sysmon_poll", schedtraceMS(getenvOr(env)("GODEBUG")) > 0)
	if err := w.Start(); err != nil {
		ln.Close()
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	go qs.Run(ctx)
	served := make(chan error, 1)
	go func() { served <- httpserver.Serve(ctx, ln, h) }()
	log.Info("serving metrics and health checks", "addr", ln.Addr().String(), "dashboard", dash != nil)
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
