// Package ackbatch sends the Redis scripts that end asynq tasks well in
// batches, so that a busy worker writes to Redis about once per task
// instead of twice.
//
// asynq's processor runs two Lua scripts per task, each in its own round
// trip: one takes the task (dequeue), one ends it. A Hook installed on the
// go-redis client of asynq's servers holds each script that ends a task
// well (done, mark-as-complete, or requeue when the worker stops) for at
// most Options.Delay, and sends the held scripts together in one
// pipeline: when Delay has passed, when Options.MaxBatch are held, or at
// once along with the next other script (a dequeue, a retry, an archive),
// whichever comes first. Every script still runs on its own in Redis,
// atomically, with the same keys and arguments, and each caller gets its
// own script's reply or error: what asynq writes is unchanged; only the
// number of round trips that carry it is.
//
// A held script keeps its task's concurrency slot until it is sent, so
// MaxBatch should be a small share of the server's concurrency.
//
// A script is held when its first two keys are one queue's active list
// and lease set ("asynq:{q}:active", "asynq:{q}:lease"); in asynq v0.26
// those are exactly done, mark-as-complete and requeue. Retry and archive
// (which start with the task's key) and dequeue are sent at once. Commands
// that are not scripts pass through untouched.
//
// One difference from sending each script alone remains: when a pipeline's
// connection fails after Redis ran some of its scripts, go-redis retries
// the whole pipeline (as it retries a lone command), so a script in it may
// run twice. asynq's done and mark-as-complete then answer "not found",
// which asynq logs; a requeue run twice during a stop can hand a task back
// that another worker has taken, which runs it twice. Delivery is at least
// once either way.
package ackbatch

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/redishook"
)

// DefaultDelay is how long a held script waits at most for others.
const DefaultDelay = 100 * time.Millisecond

// DefaultMaxBatch is how many held scripts one pipeline carries at most.
const DefaultMaxBatch = 25

// Options tune a Hook.
type Options struct {
	// Delay is the longest a script is held. <= 0 means DefaultDelay.
	Delay time.Duration
	// MaxBatch is the most scripts held at once; the one that makes it
	// full sends them all. <= 0 means DefaultMaxBatch; 1 holds nothing.
	MaxBatch int
}

// Hook holds and batches the scripts that end asynq tasks well; install it
// with Install, or with AddHook on the client of asynq's servers. Its zero
// value is not usable: call New.
type Hook struct {
	redishook.ProcessOnly
	pipe     func() redis.Pipeliner
	delay    time.Duration
	maxBatch int

	mu    sync.Mutex
	held  []*held
	timer *time.Timer // armed while held is not empty

	stats Stats
}

// Stats counts what a Hook did.
type Stats struct {
	// Held is the number of scripts the hook held back.
	Held uint64
	// Pipelines is the number of pipelines it sent; each carried one or
	// more held scripts, and perhaps one other script.
	Pipelines uint64
}

// held is one script waiting in the hook.
type held struct {
	ctx  context.Context
	cmd  redis.Cmder
	done chan struct{} // closed when cmd has its reply or error
}

// New returns a Hook that sends held scripts through pipelines made by
// pipe (the client's Pipeline method).
func New(pipe func() redis.Pipeliner, opts Options) *Hook {
	if opts.Delay <= 0 {
		opts.Delay = DefaultDelay
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	return &Hook{pipe: pipe, delay: opts.Delay, maxBatch: opts.MaxBatch}
}

// Install adds a new Hook to rdb and returns it.
func Install(rdb redis.UniversalClient, opts Options) *Hook {
	h := New(rdb.Pipeline, opts)
	rdb.AddHook(h)
	return h
}

// Stats returns what the hook has done so far.
func (h *Hook) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// ProcessHook implements redis.Hook: it holds the scripts that end a task
// well, and sends the held ones along with any other script.
func (h *Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isScript(cmd) {
			return next(ctx, cmd)
		}
		if endsLease(cmd) && h.maxBatch > 1 {
			return h.hold(ctx, cmd)
		}
		if ctx.Err() != nil {
			return next(ctx, cmd) // it fails as it would alone; the held keep waiting
		}
		batch := h.take()
		if len(batch) == 0 {
			return next(ctx, cmd)
		}
		// The held scripts must not fail because this caller gave up.
		h.send(context.WithoutCancel(ctx), batch, cmd)
		return cmd.Err()
	}
}

// hold queues cmd and waits for its reply or error. It returns only once
// cmd is done with, so the caller may read cmd safely.
func (h *Hook) hold(ctx context.Context, cmd redis.Cmder) error {
	c := &held{ctx: ctx, cmd: cmd, done: make(chan struct{})}
	h.mu.Lock()
	h.stats.Held++
	h.held = append(h.held, c)
	var full []*held
	switch {
	case len(h.held) >= h.maxBatch:
		full = h.takeLocked()
	case h.timer == nil:
		h.timer = time.AfterFunc(h.delay, h.flush)
	}
	h.mu.Unlock()
	if full != nil {
		h.send(context.Background(), full, nil)
	}
	<-c.done
	return cmd.Err()
}

// flush sends whatever is held; the timer calls it.
func (h *Hook) flush() {
	if batch := h.take(); len(batch) > 0 {
		h.send(context.Background(), batch, nil)
	}
}

// take removes and returns the held scripts.
func (h *Hook) take() []*held {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.takeLocked()
}

func (h *Hook) takeLocked() []*held {
	batch := h.held
	h.held = nil
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	if len(batch) > 0 {
		h.stats.Pipelines++
	}
	return batch
}

// send runs batch (and extra, when not nil) in one pipeline under ctx, then
// wakes every held caller. A held script whose own context has ended by
// then is not sent; it fails with that context's error.
func (h *Hook) send(ctx context.Context, batch []*held, extra redis.Cmder) {
	p := h.pipe()
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.cmd.SetErr(err)
			continue
		}
		_ = p.Process(ctx, c.cmd)
	}
	if extra != nil {
		_ = p.Process(ctx, extra)
	}
	// Each command carries its own reply or error; Exec's error is the
	// first of them.
	_, _ = p.Exec(ctx)
	for _, c := range batch {
		close(c.done)
	}
}

// isScript reports whether cmd runs a Lua script (EVAL or EVALSHA).
func isScript(cmd redis.Cmder) bool {
	switch strings.ToLower(cmd.Name()) {
	case "evalsha", "eval":
		return true
	}
	return false
}

// endsLease reports whether the script cmd runs has, as its first two keys,
// one queue's active list and lease set.
func endsLease(cmd redis.Cmder) bool {
	args := cmd.Args() // EVALSHA sha numkeys key1 key2 ...
	if len(args) < 5 {
		return false
	}
	if n, ok := args[2].(int); !ok || n < 2 {
		return false
	}
	k1, ok1 := args[3].(string)
	k2, ok2 := args[4].(string)
	return ok1 && ok2 && strings.HasSuffix(k1, ":active") && strings.HasSuffix(k2, ":lease") &&
		strings.TrimSuffix(k1, ":active") == strings.TrimSuffix(k2, ":lease")
}
