// Package httpserver serves the worker's operations port: Prometheus
// metrics, health and readiness checks and, when asked, the dashboard.
//
//	GET /metrics     Prometheus text format, from Config.Gatherer
//	GET /healthz     200 "ok" while the process serves HTTP
//	GET /readyz      200 "ready" when Config.Ready returns nil, else 503 with its error
//	/dashboard/...   Config.Dashboard, when set (it brings its own authentication)
//	/v1/...          Config.API, when set, with /openapi.json (its own tokens)
//
// /metrics, /healthz and /readyz need no credentials: they reveal counts,
// not tasks or secrets.
package httpserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts of the server and its checks.
const (
	// ReadyTimeout bounds one readiness check.
	ReadyTimeout = 2 * time.Second
	// ShutdownTimeout is how long Serve waits for requests in flight once
	// its context ends.
	ShutdownTimeout = 5 * time.Second
)

// DashboardPath is where Config.Dashboard is mounted. The dashboard must be
// built with this root path.
const DashboardPath = "/dashboard"

// Config configures Handler.
type Config struct {
	// Gatherer is what /metrics serves. Required.
	Gatherer prometheus.Gatherer
	// Ready is the readiness check behind /readyz, given a context bounded
	// by ReadyTimeout. Defaults to always ready.
	Ready func(context.Context) error
	// Dashboard, when set, is served under DashboardPath.
	Dashboard http.Handler
	// API, when set, is served under /v1/ and at /openapi.json and
	// /openapi.yaml (it brings its own authentication).
	API http.Handler
	// Logger receives errors from encoding metrics and failed readiness
	// checks (at debug). Defaults to slog.Default().
	Logger *slog.Logger
}

// Handler returns the handler of the operations port described in the
// package comment.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Gatherer == nil {
		return nil, errors.New("httpserver: Gatherer: must be set")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog:            slogPrinter{log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
			defer cancel()
			if err := cfg.Ready(ctx); err != nil {
				log.Debug("not ready", "error", err)
				plain(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
				return
			}
		}
		plain(w, http.StatusOK, "ready")
	})
	if cfg.Dashboard != nil {
		mux.Handle(DashboardPath, cfg.Dashboard)
		mux.Handle(DashboardPath+"/", cfg.Dashboard)
	}
	if cfg.API != nil {
		for _, p := range []string{"/v1/", "/openapi.json", "/openapi.yaml"} {
			mux.Handle(p, cfg.API)
		}
	}
	return mux, nil
}

func plain(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

// slogPrinter adapts a slog.Logger to promhttp's Logger.
type slogPrinter struct{ l *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.l.Error("metrics: " + fmt.Sprint(v...)) }

// Serve serves h on ln until ctx ends, then stops accepting connections and
// waits up to ShutdownTimeout for requests in flight. It returns nil after
// a shutdown caused by ctx, or the error that stopped the server.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
