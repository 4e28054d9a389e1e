package dashboard

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/dlq"
)

// Config configures a Dashboard.
type Config struct {
	// Redis is where timq's queues and dead-letter store are. Required.
	Redis asynq.RedisConnOpt
	// RootPath is the URL path the dashboard lives under, such as
	// "/dashboard". Defaults to "/".
	RootPath string
	// ReadOnly makes asynqmon refuse every request but GET, so the
	// dashboard cannot delete, run, archive, cancel or pause anything. The
	// dead-letter view is read-only either way.
	ReadOnly bool
	// Auth holds the credentials every request must carry. The zero Auth
	// lets every request in: check the listening address with CheckAddr.
	Auth Auth
	// Logger receives warnings about failed reads. Defaults to slog.Default().
	Logger *slog.Logger
}

// Dashboard is an http.Handler serving asynqmon and timq's dead-letter view
// for one Redis, behind Auth:
//
//	ROOT/                      asynqmon (queues, tasks with readable payloads and results, servers, Redis)
//	ROOT/dlq/                  the dead-letter store as an HTML table, oldest first
//	ROOT/dlq/api/entries       the same as JSON: ?offset=N&limit=N (1-1000, default 100)&code=N
//	ROOT/dlq/api/entries/{id}  one entry as JSON
//
// Requests other than GET and HEAD from another origin (cross-site request
// forgery riding on a browser's saved basic-auth credentials) are refused
// with 403, and every answer forbids framing.
type Dashboard struct {
	handler http.Handler
	mon     *asynqmon.HTTPHandler
	rdb     redis.UniversalClient
	root    string
}

// New returns a Dashboard for cfg. It connects lazily; Close releases its
// Redis connections.
func New(cfg Config) (*Dashboard, error) {
	if cfg.Redis == nil {
		return nil, errors.New("dashboard: Redis: must be set")
	}
	if err := cfg.Auth.Validate(); err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	if cfg.RootPath == "" {
		cfg.RootPath = "/"
	}
	if !strings.HasPrefix(cfg.RootPath, "/") {
		return nil, fmt.Errorf("dashboard: RootPath %q: must start with /", cfg.RootPath)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	root := strings.TrimSuffix(cfg.RootPath, "/")
	rdb, ok := cfg.Redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, errors.New("dashboard: Redis: connection option did not make a go-redis v9 client")
	}
	mon := asynqmon.New(asynqmon.Options{
		RootPath:         cfg.RootPath,
		RedisConnOpt:     cfg.Redis,
		PayloadFormatter: asynqmon.PayloadFormatterFunc(FormatPayload),
		ResultFormatter:  asynqmon.ResultFormatterFunc(FormatResult),
		ReadOnly:         cfg.ReadOnly,
	})
	web := &dlqWeb{store: dlq.New(rdb), root: root, log: cfg.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+root+"/dlq/api/entries", web.list)
	mux.HandleFunc("GET "+root+"/dlq/api/entries/{id...}", web.get)
	mux.HandleFunc("GET "+root+"/dlq/{$}", web.html)
	mux.Handle(root+"/dlq", http.RedirectHandler(root+"/dlq/", http.StatusFound))
	mux.Handle(root+"/", mon)
	if root != "" {
		mux.Handle(root, http.RedirectHandler(root+"/", http.StatusFound))
	}
	var h http.Handler = mux
	h = http.NewCrossOriginProtection().Handler(h)
	h = securityHeaders(h)
	h = cfg.Auth.Middleware(h)
	return &Dashboard{handler: h, mon: mon, rdb: rdb, root: root}, nil
}

// ServeHTTP implements http.Handler.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) { d.handler.ServeHTTP(w, r) }

// RootPath returns the path the dashboard lives under, without a trailing
// slash ("" for the root).
func (d *Dashboard) RootPath() string { return d.root }

// Close closes the dashboard's Redis connections.
func (d *Dashboard) Close() error {
	return errors.Join(d.mon.Close(), d.rdb.Close())
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
