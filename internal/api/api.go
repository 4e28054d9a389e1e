// Package api is timq's HTTP API: backends in any language enqueue clear,
// recall and modify operations, read their tasks, run jobs and handle dead
// letters over JSON.
//
// The routes, their parameters and the OpenAPI 3.1 description come from
// huma (github.com/danielgtaylor/huma/v2) on net/http's ServeMux: the
// handlers are typed Go functions and huma derives the description from
// their input and output types, so the description cannot drift from the
// code; openapi.json in this directory is that description, kept in the
// repository and checked by a test. Errors are huma's RFC 9457 problem
// details (application/problem+json); a bad field is named in the
// problem's errors[].location, as "body.MsgSeqList[13].MsgSeq".
//
// Request bodies are not decoded by huma: operations are read as strictly
// as bulk lines (package bulk: invalid UTF-8, repeated keys in any case and
// unknown fields are refused, naming the field), and a job's NDJSON body is
// read as a stream, a line at a time.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/metrics"
	"github.com/timq/timq/internal/msgindex"
)

// huma answers a parameter or body that fails its schema with 422; timq
// answers all bad input with 400, the status its clients handle. huma's
// documented way to shape its errors is to replace huma.NewError, which is
// done once, here, before any server exists.
func init() {
	base := huma.NewError
	huma.NewError = func(status int, msg string, errs ...error) huma.StatusError {
		if status == http.StatusUnprocessableEntity {
			status = http.StatusBadRequest
		}
		return base(status, msg, errs...)
	}
}

// Version is the API's version, in its paths (/v1/...) and description.
const Version = "1.0.0"

// Body limits.
const (
	// MaxOperationBody is the largest body of one operation.
	MaxOperationBody = 64 << 10
	// DefaultMaxJobBody is Config.MaxJobBody's default: 1 GiB, about ten
	// million lines.
	DefaultMaxJobBody = 1 << 30
)

// DefaultIdempotencyTTL is how long an Idempotency-Key is remembered.
const DefaultIdempotencyTTL = 24 * time.Hour

// Config configures a Server.
type Config struct {
	// Redis is where the tasks, jobs and dead letters are.
	Redis asynq.RedisConnOpt
	// Tokens are the bearer tokens a request may carry. With none, every
	// request is let in: serve such a Server on loopback only (CheckAddr).
	Tokens []Token
	// Enqueue is the client operations go through; nil makes one on
	// Redis. The Server does not close a client it was given.
	Enqueue *enqueue.Client
	// MaxJobBody bounds a job's NDJSON body. Defaults to DefaultMaxJobBody.
	MaxJobBody int64
	// IdempotencyTTL is how long an Idempotency-Key is remembered.
	// Defaults to DefaultIdempotencyTTL.
	IdempotencyTTL time.Duration
	// Logger receives the access log and errors. Defaults to slog.Default().
	Logger *slog.Logger
	// Callbacks, when set, enables POST /v1/callbacks/tencent, the
	// receiver of Tencent's webhooks that feeds the message index.
	Callbacks *Callbacks
	// Metrics, when set, receives timq_api_requests_total{route,status}
	// and timq_api_request_duration_seconds{route}.
	Metrics prometheus.Registerer
}

// Server is the API: an http.Handler.
type Server struct {
	cfg     Config
	mux     *http.ServeMux
	api     huma.API
	rdb     redis.UniversalClient
	enq     *enqueue.Client
	ownEnq  bool
	jobs    *jobs.Store
	dlq     *dlq.Store
	insp    *asynq.Inspector
	queues  []string // every queue a task may be in, for GET /v1/tasks/{id}
	log     *slog.Logger
	metrics *metrics.API    // nil: none
	index   *msgindex.Index // the message index POST /v1/purges reads
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Redis == nil {
		return nil, errors.New("api: Config.Redis is required")
	}
	for i, t := range cfg.Tokens {
		if err := t.check(); err != nil {
			return nil, fmt.Errorf("api: Tokens[%d]: %w", i, err)
		}
	}
	if cfg.MaxJobBody <= 0 {
		cfg.MaxJobBody = DefaultMaxJobBody
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	rc, ok := cfg.Redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, fmt.Errorf("api: unsupported Redis connection %T", cfg.Redis)
	}
	s := &Server{cfg: cfg, rdb: rc, jobs: jobs.NewStore(rc, 0), dlq: dlq.New(rc), insp: asynq.NewInspector(cfg.Redis),
		log: cfg.Logger, enq: cfg.Enqueue}
	if cfg.Metrics != nil {
		m, err := metrics.NewAPI(cfg.Metrics)
		if err != nil {
			return nil, fmt.Errorf("api: Metrics: %w", err)
		}
		s.metrics = m
	}
	if s.enq == nil {
		s.enq, s.ownEnq = enqueue.New(cfg.Redis), true
	}
	s.queues = taskQueues()
	s.index = msgindex.New(rc, 0)
	if cfg.Callbacks != nil && cfg.Callbacks.Index != nil {
		s.index = cfg.Callbacks.Index
	}
	s.mux = http.NewServeMux()
	s.api = humago.New(s.mux, s.humaConfig())
	s.api.UseMiddleware(s.authenticate)
	s.register()
	return s, nil
}

// humaConfig is huma's default configuration without its docs page (it
// loads scripts from a CDN) and its schema links in responses.
func (s *Server) humaConfig() huma.Config {
	c := huma.DefaultConfig("timq API", Version)
	c.DocsPath = ""
	c.SchemasPath = ""
	c.CreateHooks = nil // no $schema field in answers
	c.Info.Description = "Queue clear, recall and modify operations of Tencent Cloud Chat groups, run bulk jobs, and handle dead letters."
	c.Components.SecuritySchemes = map[string]*huma.SecurityScheme{
		"bearer": {Type: "http", Scheme: "bearer", Description: "A token of scope enqueue (enqueue and read) or admin (also pause, resume and cancel jobs, requeue and purge dead letters)."},
	}
	return c
}

// ServeHTTP serves the API with an access log line per request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.mux.ServeHTTP(rec, r)
	took := time.Since(start)
	s.metrics.Request(r.Pattern, rec.status, took)
	attrs := []any{"method", r.Method, "route", r.Pattern, "status", rec.status, "duration_ms", took.Milliseconds()}
	if id := r.PathValue("id"); id != "" {
		attrs = append(attrs, "id", id) // the task, job or dead letter the request named
	}
	s.log.Info("api request", attrs...)
}

// statusRecorder remembers a response's status for the access log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Ping checks that the server's Redis answers (its readiness check).
func (s *Server) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// Close releases the Server's connections.
func (s *Server) Close() error {
	if s.ownEnq {
		_ = s.enq.Close()
	}
	_ = s.insp.Close()
	return s.rdb.Close()
}

// OpenAPI returns the API's OpenAPI 3.1 description as JSON.
func (s *Server) OpenAPI() ([]byte, error) {
	return s.api.OpenAPI().MarshalJSON()
}

// CheckAddr returns an error when addr is not loopback and no token is
// configured: the API is never served open on a network.
func CheckAddr(addr string, tokens []Token) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: want HOST:PORT, e.g. 127.0.0.1:8090", addr)
	}
	if len(tokens) > 0 {
		return nil
	}
	if ip := net.ParseIP(host); strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("no API token on %s: set %s or %s (and the admin ones), or listen on 127.0.0.1", addr, EnvToken, EnvTokenFile)
}

// storeError turns an error of Redis or a store into the API's answer:
// 404 for an unknown ID, 409 for a state that forbids the action, 503 with
// Retry-After while Redis does not answer, else 500.
func storeError(what string, err error) error {
	var ve *validationFailure
	switch {
	case errors.As(err, &ve):
		return ve.problem()
	case errors.Is(err, jobs.ErrNotFound), errors.Is(err, dlq.ErrNotFound), errors.Is(err, errTaskNotFound):
		return huma.Error404NotFound(what + " not found")
	case errors.Is(err, jobs.ErrEnded):
		return huma.Error409Conflict(err.Error())
	case unavailable(err):
		return huma.ErrorWithHeaders(huma.Error503ServiceUnavailable("Redis does not answer; try again"), http.Header{"Retry-After": {"1"}})
	}
	return huma.Error500InternalServerError(what + ": " + err.Error())
}

// unavailable reports whether err means Redis could not be reached.
func unavailable(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, redis.ErrClosed) || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "i/o timeout")
}
