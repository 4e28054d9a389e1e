package redislog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/redislog"
)

// While Redis is down, go-redis's pool messages reach the log as JSON lines
// of the command's logger, never as go-redis's plain text.
func TestLinesBecomeJSONWhileRedisIsDown(t *testing.T) {
	var sink redislog.Sink
	var buf bytes.Buffer
	sink.Use(slog.New(slog.NewJSONHandler(&buf, nil)))
	// The pool's dial errors are logged through internal.Logger; drive one
	// through the same interface go-redis calls.
	sink.Printf(context.Background(), "redis: %s:%d: connection pool: failed to dial after %d attempts: %v\n", "pool.go", 770, 5, "connection refused")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1: %q", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("line %q is not JSON: %v", lines[0], err)
	}
	if rec["level"] != "WARN" || rec["component"] != "go-redis" || !strings.Contains(rec["msg"].(string), "failed to dial") {
		t.Fatalf("record = %v", rec)
	}
}

func TestDropsLinesWithoutALogger(t *testing.T) {
	var sink redislog.Sink
	sink.Printf(context.Background(), "redis: lost") // must not panic
	var buf bytes.Buffer
	sink.Use(slog.New(slog.NewJSONHandler(&buf, nil)))
	sink.Use(nil)
	sink.Printf(context.Background(), "redis: lost")
	if buf.Len() != 0 {
		t.Fatalf("wrote %q after Use(nil)", buf.String())
	}
}

// Installed as go-redis's logger, the Sink receives the pool's own messages
// about a Redis that does not answer. This test sets the process-wide
// logger, so it is not parallel and restores nothing else.
func TestReceivesGoRedisPoolMessages(t *testing.T) {
	var sink redislog.Sink
	var buf syncBuffer
	sink.Use(slog.New(slog.NewJSONHandler(&buf, nil)))
	redis.SetLogger(&sink)
	// An address nobody listens on: go-redis logs its failed dials.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1, PoolSize: 1})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := 0; i < 10 && ctx.Err() == nil; i++ {
		_ = rdb.Ping(ctx).Err()
	}
	out := strings.TrimSpace(buf.String())
	if out == "" {
		t.Fatal("go-redis logged nothing through the sink for a Redis that does not answer")
	}
	for _, line := range strings.Split(out, "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("log line %q is not JSON", line)
		}
	}
}
