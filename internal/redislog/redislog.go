// Package redislog routes go-redis's own log lines (pool and reconnect
// messages) into log/slog, so that a process logging JSON keeps logging
// JSON while Redis is down, and a short-lived command prints nothing but its
// own error.
//
// go-redis has one logger per process (redis.SetLogger). A Sink is what the
// binary installs there once, at start; each command then points the Sink
// at its own logger, or leaves it pointing nowhere.
package redislog

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
)

// Sink is a go-redis logger that forwards each line to the slog.Logger last
// given to Use, at level Warn with component=go-redis. Until Use is called,
// and after Use(nil), lines are dropped: a producer that cannot reach Redis
// reports that in its own error, once. A Sink is safe for concurrent use.
type Sink struct {
	log atomic.Pointer[slog.Logger]
}

// Use makes the Sink forward to log; nil drops lines.
func (s *Sink) Use(log *slog.Logger) { s.log.Store(log) }

// Printf implements go-redis's internal.Logging.
func (s *Sink) Printf(ctx context.Context, format string, v ...any) {
	log := s.log.Load()
	if log == nil {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	log.WarnContext(ctx, msg, "component", "go-redis")
}
