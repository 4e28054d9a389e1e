package cli

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/timq/timq/internal/api"
	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/httpserver"
	"github.com/timq/timq/internal/msgindex"
)

// DefaultAPIAddr is where timq api listens without --addr.
const DefaultAPIAddr = "127.0.0.1:8090"

const apiUsage = `[--addr HOST:PORT] [--max-job-body BYTES]

Serves timq's HTTP API: enqueue operations, read tasks, run jobs and handle
dead letters over JSON under /v1/, described at /openapi.json (OpenAPI 3.1),
with Prometheus metrics at /metrics and the checks /healthz (the process
serves) and /readyz (its Redis answers) for a load balancer.
Settings: TIMQ_REDIS_URL (or TIMQ_REDIS_CLUSTER_ADDRS), TIMQ_ENQUEUE_REPLICAS;
bearer tokens TIMQ_API_TOKEN (scope enqueue: enqueue and read) and
TIMQ_API_ADMIN_TOKEN (scope admin: also pause, resume and cancel jobs,
requeue and purge dead letters), comma-separated, or TIMQ_API_TOKEN_FILE and
TIMQ_API_ADMIN_TOKEN_FILE with one per line. Tokens are required unless
--addr is a loopback address.

With TIMQ_SDKAPPID set it also receives Tencent's webhooks at
/v1/callbacks/tencent (set that as the app's callback URL), checked with
TIMQ_CALLBACK_TOKEN, the app's callback
authentication token, and records each after-send message in the message
index that timq purge reads.`

// runAPI serves the HTTP API until ctx ends.
func runAPI(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "api", apiUsage)
	addr := fs.String("addr", DefaultAPIAddr, "listen on HOST:PORT")
	maxJob := fs.Int64("max-job-body", api.DefaultMaxJobBody, "the largest job body in `bytes` (413 past it)")
	indexFor := fs.Duration("index-retention", msgindex.DefaultRetention, "how long the message index keeps a message from Tencent's after-send callbacks")
	var lf logFlags
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected argument %q", fs.Arg(0))
	}
	if *maxJob < 1<<10 {
		return UsageError("--max-job-body: want at least 1024 bytes, got %d", *maxJob)
	}
	log, err := lf.logger(env)
	if err != nil {
		return err
	}
	get := getenvOr(env)
	stopProfile, err := startCPUProfile(get(envCPUProfile))
	if err != nil {
		return err
	}
	defer stopProfile()
	tokens, err := api.LoadTokens(get)
	if err != nil {
		return settingError(err)
	}
	if err := api.CheckAddr(*addr, tokens); err != nil {
		return UsageError("--addr: %v", err)
	}
	r, err := config.LoadRedis(get)
	if err != nil {
		return settingError(err)
	}
	enq, _, err := newEnqueueClient(env, r.Conn)
	if err != nil {
		return err
	}
	defer enq.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg := api.Config{Redis: r.Conn, Tokens: tokens, Enqueue: enq, MaxJobBody: *maxJob, Logger: log, Metrics: reg}
	if raw := get(config.EnvSDKAppID); raw != "" {
		app, err := strconv.ParseUint(raw, 10, 32)
		if err != nil || app == 0 {
			return settingError(fmt.Errorf("%s: must be a positive integer, got %q", config.EnvSDKAppID, raw))
		}
		token, err := config.LoadCallbackToken(get)
		if err != nil {
			return settingError(err)
		}
		if *indexFor < time.Hour {
			return UsageError("--index-retention: want at least 1h, got %v", *indexFor)
		}
		idx := r.Client()
		defer idx.Close()
		cfg.Callbacks = &api.Callbacks{SDKAppID: app, Token: token.Reveal(), Index: msgindex.New(idx, *indexFor)}
		if token.IsZero() {
			log.Warn("callbacks without " + config.EnvCallbackToken + ": anyone who can reach the API can feed the message index")
		}
	}
	srv, err := api.New(cfg)
	if err != nil {
		return UsageError("%v", err)
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	if len(tokens) == 0 {
		log.Warn("API without tokens: anyone on this host can use it", "addr", ln.Addr().String())
	}
	log.Info("serving the API", "url", "http://"+ln.Addr().String()+"/v1/", "openapi", "http://"+ln.Addr().String()+"/openapi.json",
		"redis", r.Display, "tokens", len(tokens))
	h, err := httpserver.Handler(httpserver.Config{Gatherer: reg, Ready: srv.Ping, API: srv, Logger: log})
	if err != nil {
		ln.Close()
		return err
	}
	return httpserver.Serve(ctx, ln, h)
}
