package dashboard

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/jobs"
)

// Config configures a Dashboard.
type Config struct {
	// Redis is where timq's queues and dead-letter store are. Required.
	Redis asynq.RedisConnOpt
	// RootPath is the URL path the dashboard lives under, such as
	// "/dashboard". Defaults to "/". It must pass CheckRootPath: New
	// refuses anything else with an error naming RootPath.
	RootPath string
	// ReadOnly makes asynqmon refuse every request but GET, so the
	// dashboard cannot delete, run, archive, cancel or pause anything, and
	// leaves the jobs pages without their pause, resume and cancel
	// buttons. The dead-letter view is read-only either way.
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
//	ROOT/jobs/                 jobs with progress, counts, rate and ETA, newest first
//	ROOT/jobs/{id}             one job, its failures, and (unless ReadOnly) pause, resume, cancel
//	ROOT/jobs/api/jobs[/{id}]  the same as JSON
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
	if err := CheckRootPath(cfg.RootPath); err != nil {
		return nil, fmt.Errorf("dashboard: RootPath %q: %w", cfg.RootPath, err)
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
	jw := &jobsWeb{store: jobs.NewStore(rdb, 0), root: root, readOnly: cfg.ReadOnly, log: cfg.Logger}
	mux, err := newMux(root, web, jw, mon)
	if err != nil {
		mon.Close()
		rdb.Close()
		return nil, fmt.Errorf("dashboard: RootPath %q: %w", cfg.RootPath, err)
	}
	var h http.Handler = mux
	h = http.NewCrossOriginProtection().Handler(h)
	h = securityHeaders(h)
	h = cfg.Auth.Middleware(h)
	return &Dashboard{handler: h, mon: mon, rdb: rdb, root: root}, nil
}

// newMux routes the dead-letter view and asynqmon (mon) under root, which
// is a RootPath without its trailing slash. http.ServeMux panics on a
// pattern it cannot parse; newMux returns that panic as an error instead.
// CheckRootPath keeps such roots out, so the error is a second line of
// defence.
func newMux(root string, web *dlqWeb, jw *jobsWeb, mon http.Handler) (mux *http.ServeMux, err error) {
	defer func() {
		if p := recover(); p != nil {
			mux, err = nil, fmt.Errorf("cannot route it: %v", p)
		}
	}()
	mux = http.NewServeMux()
	mux.HandleFunc("GET "+root+"/dlq/api/entries", web.list)
	mux.HandleFunc("GET "+root+"/dlq/api/entries/{id...}", web.get)
	mux.HandleFunc("GET "+root+"/dlq/{$}", web.html)
	mux.Handle(root+"/dlq", http.RedirectHandler(root+"/dlq/", http.StatusFound))
	mux.HandleFunc("GET "+root+"/jobs/api/jobs", jw.apiList)
	mux.HandleFunc("GET "+root+"/jobs/api/jobs/{id}", jw.apiGet)
	mux.HandleFunc("GET "+root+"/jobs/{$}", jw.list)
	mux.HandleFunc("GET "+root+"/jobs/{id}", jw.show)
	mux.HandleFunc("POST "+root+"/jobs/{id}/{action}", jw.control)
	mux.Handle(root+"/jobs", http.RedirectHandler(root+"/jobs/", http.StatusFound))
	mux.Handle(root+"/", mon)
	if root != "" {
		mux.Handle(root, http.RedirectHandler(root+"/", http.StatusFound))
	}
	return mux, nil
}

// CheckRootPath reports whether p can be a dashboard's RootPath: "" or "/"
// (the root), or a clean absolute path such as "/timq" or "/ops/timq",
// optionally ending in one "/". Each segment may hold only ASCII letters,
// digits, "-", ".", "_" and "~" (the characters a URL path needs no
// escaping for), so "//", "/x/../y", "/a b/", "/{id}" and control
// characters are refused. The error does not repeat p; callers name the
// option.
func CheckRootPath(p string) error {
	if p == "" || p == "/" {
		return nil
	}
	if !strings.HasPrefix(p, "/") {
		return errors.New("must start with /")
	}
	for _, c := range p {
		if !isRootPathChar(c) {
			return errors.New(`may hold only ASCII letters, digits and "/", "-", ".", "_", "~"`)
		}
	}
	if root := strings.TrimSuffix(p, "/"); root == "/" || path.Clean(root) != root {
		return errors.New(`must be a clean path, without "//", "." or ".." segments, such as /timq`)
	}
	return nil
}

func isRootPathChar(c rune) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.ContainsRune("/-._~", c)
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
