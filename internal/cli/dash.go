package cli

import (
	"context"
	"fmt"
	"net"

	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/dashboard"
	"github.com/timq/timq/internal/httpserver"
)

// DefaultDashAddr is where timq dash listens without --addr.
const DefaultDashAddr = "127.0.0.1:8080"

// runDash serves the dashboard (asynqmon plus the dead-letter view, see
// package dashboard) for the Redis in TIMQ_REDIS_URL until ctx ends. It
// refuses, with one line, to listen on a non-loopback address without
// credentials, and a --root-path that dashboard.CheckRootPath refuses (such
// as "//", "/x/../y" or "/a b/").
func runDash(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "dash", "[--addr HOST:PORT] [--read-only] [--root-path PATH]\n\nServes the asynqmon dashboard for timq's queues, timq's jobs at /jobs/ and its dead letters at /dlq/.\nSettings: TIMQ_REDIS_URL (or TIMQ_REDIS_CLUSTER_ADDRS); credentials TIMQ_DASH_USER and\nTIMQ_DASH_PASSWORD (basic auth) and/or TIMQ_DASH_TOKEN (bearer token), required unless\n--addr is a loopback address.")
	addr := fs.String("addr", DefaultDashAddr, "listen on HOST:PORT")
	readOnly := fs.Bool("read-only", false, "look but do not touch: refuse every request that would delete, run, archive or pause")
	root := fs.String("root-path", "/", "URL path to serve the dashboard under, e.g. /timq behind a proxy: a clean absolute path of letters, digits and - . _ ~")
	var lf logFlags
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected argument %q", fs.Arg(0))
	}
	if err := dashboard.CheckRootPath(*root); err != nil {
		return UsageError("--root-path %q: %v", *root, err)
	}
	log, err := lf.logger(env)
	if err != nil {
		return err
	}
	get := getenvOr(env)
	auth, err := dashboard.AuthFromEnv(get)
	if err != nil {
		return UsageError("%v", err)
	}
	if err := dashboard.CheckAddr(*addr, auth); err != nil {
		return UsageError("--addr: %v", err)
	}
	r, err := config.LoadRedis(get)
	if err != nil {
		return settingError(err)
	}
	dash, err := dashboard.New(dashboard.Config{Redis: r.Conn, RootPath: *root, ReadOnly: *readOnly, Auth: auth, Logger: log})
	if err != nil {
		return UsageError("%v", err)
	}
	defer dash.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	if !auth.Configured() {
		log.Warn("dashboard without credentials: anyone on this host can use it", "addr", ln.Addr().String())
	}
	log.Info("serving the dashboard", "url", "http://"+ln.Addr().String()+dash.RootPath()+"/", "redis", r.Display,
		"auth", auth, "read_only", *readOnly)
	return httpserver.Serve(ctx, ln, dash)
}
