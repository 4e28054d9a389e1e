// Package prefetch lets asynq's processor take several tasks per Redis round
// trip instead of one.
//
// asynq's processor dequeues one task per round trip, each time a
// concurrency slot frees. A Hook installed on the go-redis client of asynq's
// servers recognises that dequeue script (by its SHA1: it is asynq v0.26's
// script, copied here, so a different asynq script is never intercepted) and
// answers it from a small per-queue buffer. When the buffer is empty it runs
// one script that does what asynq's dequeue does for up to Options.Batch
// tasks at once — skip a paused queue; move each task from pending to
// active; mark it active; lease it until the expiry asynq asked for — keeps
// the rest and answers the caller with the first.
//
// Buffered tasks are active and leased in Redis, as asynq's own are while
// it processes them; only this worker's processor can be handed them. A
// buffered task older than Options.MaxAge, and every buffered task when
// HandBack runs (the worker stopping), goes back to the head of its queue,
// oldest first, as asynq's requeue does it, so its lease never runs out
// unseen. Each fetch marks its tasks with a token, and a task goes back
// only while it still carries that token and that lease: a hand-back
// retried after a lost reply never takes back a task someone else has
// taken since.
//
// A worker that is killed, or whose hand-back fails until the lease runs
// out, leaves its buffered tasks to asynq's lease recovery, as it leaves
// the tasks it was running: asynq then counts a failed attempt for each
// (and archives one that was on its last attempt) although it never ran.
// A queue paused after a fetch still hands out what was buffered: at most
// Batch tasks per worker.
package prefetch

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/redishook"
)

// asynqDequeue is asynq v0.26.0's dequeue script (internal/rdb/rdb.go,
// dequeueCmd), byte for byte. Only calls of this script are answered.
const asynqDequeue = `
if redis.call("EXISTS", KEYS[2]) == 0 then
	local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
	if id then
		local key = ARGV[2] .. id
		redis.call("HSET", key, "state", "active")
		redis.call("HDEL", key, "pending_since")
		redis.call("ZADD", KEYS[4], ARGV[1], id)
		return redis.call("HGET", key, "msg")
	end
end
return nil`

var asynqDequeueSHA = func() string { s := sha1.Sum([]byte(asynqDequeue)); return hex.EncodeToString(s[:]) }()

// dequeueMany is asynqDequeue for up to ARGV[3] tasks; it returns
// {id1, msg1, id2, msg2, ...}. Keys and the first two arguments are
// asynq's. Each task taken also gets ARGV[4], the fetch's token, in its
// hash's tokenField, so that only this fetch can hand it back. A task
// without a message (which asynq's script would lease and answer as no
// task) is leased and left out, as asynq leaves it.
const dequeueManySource = `
local out = {}
if redis.call("EXISTS", KEYS[2]) == 1 then
	return out
end
for i = 1, tonumber(ARGV[3]) do
	local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
	if not id then
		break
	end
	local key = ARGV[2] .. id
	redis.call("HSET", key, "state", "active")
	redis.call("HDEL", key, "pending_since")
	redis.call("ZADD", KEYS[4], ARGV[1], id)
	redis.call("HSET", key, "timq_prefetch", ARGV[4])
	local msg = redis.call("HGET", key, "msg")
	if msg then
		table.insert(out, id)
		table.insert(out, msg)
	end
end
return out`

var dequeueMany = redis.NewScript(dequeueManySource)

// handBack is asynq's requeue for tasks of one queue that a fetch took and
// nobody has run. KEYS: pending, active, lease. ARGV[1]: the task key
// prefix; then per task, oldest first: ID, the fetch's token, the lease
// expiry the fetch set. A task goes back only if it still carries that
// token and that lease, so a retried hand-back (its first reply lost)
// never takes a task back from whoever took it since. It goes to the head
// of pending, oldest at the very head, loses its lease and token, and is
// marked pending. It returns how many went back.
var handBack = redis.NewScript(`
local n = 0
for i = #ARGV - 2, 2, -3 do
	local id, token, expiry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
	local key = ARGV[1] .. id
	if redis.call("HGET", key, "timq_prefetch") == token and redis.call("ZSCORE", KEYS[3], id) == expiry then
		redis.call("LREM", KEYS[2], 0, id)
		redis.call("ZREM", KEYS[3], id)
		redis.call("RPUSH", KEYS[1], id)
		redis.call("HSET", key, "state", "pending")
		redis.call("HDEL", key, "timq_prefetch")
		n = n + 1
	end
end
return n`)

// DefaultBatch is how many tasks one fetch takes at most: at a queue's
// 200 tasks a second, one fetch every 80 ms.
const DefaultBatch = 16

// DefaultMaxAge is how long a task waits in the buffer at most before it
// is handed back: far inside asynq's 30 s lease.
const DefaultMaxAge = 5 * time.Second

// Options tune a Hook.
type Options struct {
	// Batch is the most tasks one fetch takes. <= 0 means DefaultBatch; 1
	// fetches as asynq does.
	Batch int
	// MaxAge is how long a task may wait in the buffer. <= 0 means
	// DefaultMaxAge.
	MaxAge time.Duration
}

// Stats counts what a Hook did.
type Stats struct {
	// Fetches is the number of scripts run to fill a buffer.
	Fetches uint64
	// Served is the number of dequeues answered, from a fetch or the
	// buffer.
	Served uint64
	// HandedBack is the number of buffered tasks returned to their queue
	// (not counting any found taken by someone else meanwhile).
	HandedBack uint64
}

// Hook answers asynq's dequeues from per-queue buffers. Install it with
// Install; call HandBack when the servers have stopped and Close to stop its
// sweeper.
type Hook struct {
	redishook.ProcessOnly
	rdb    redis.UniversalClient
	batch  int
	maxAge time.Duration

	id string // random, for fetch tokens

	mu       sync.Mutex
	bufs     map[string]*buffer // by pending key
	fetchSeq uint64
	stats    Stats

	stop     chan struct{}
	stopOnce sync.Once
	swept    chan struct{}
}

// buffer holds one queue's fetched tasks, oldest first, and the IDs of
// those too old to serve, waiting to be handed back.
type buffer struct {
	keys   []string // asynq's dequeue keys: pending, paused, active, lease
	prefix string   // the queue's task key prefix
	tasks  []task
	stale  []claim // set aside, to be handed back
}

// claim is what a hand-back needs to know of a fetched task.
type claim struct {
	id     string
	token  string // the fetch's
	expiry string // the lease expiry the fetch set, Unix seconds
}

type task struct {
	claim
	msg string
	at  time.Time // when it was fetched
}

// Install adds a Hook to rdb, starts its sweeper and returns it. Install it
// before any hook that should see its fetches (such as package ackbatch's).
func Install(rdb redis.UniversalClient, opts Options) *Hook {
	if opts.Batch <= 0 {
		opts.Batch = DefaultBatch
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	h := &Hook{rdb: rdb, batch: opts.Batch, maxAge: opts.MaxAge, id: hex.EncodeToString(id[:]),
		bufs: map[string]*buffer{}, stop: make(chan struct{}), swept: make(chan struct{})}
	rdb.AddHook(h)
	go h.sweep()
	return h
}

// Stats returns what the hook has done so far.
func (h *Hook) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}

// ProcessHook implements redis.Hook: it answers asynq's dequeue script
// from the buffer, fetching a batch when the buffer is empty.
func (h *Hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c, ok := cmd.(*redis.Cmd)
		if !ok || h.batch <= 1 || !isAsynqDequeue(cmd) {
			return next(ctx, cmd)
		}
		args := cmd.Args() // evalsha sha 4 pending paused active lease expiry prefix
		keys := []string{args[3].(string), args[4].(string), args[5].(string), args[6].(string)}
		if t, ok := h.pop(keys[0]); ok {
			c.SetVal(t.msg)
			return nil
		}
		fetched, err := h.fetch(ctx, next, keys, args[7], args[8])
		if err != nil {
			c.SetErr(err)
			return err
		}
		if len(fetched) == 0 {
			c.SetErr(redis.Nil)
			return redis.Nil
		}
		prefix, _ := args[8].(string)
		h.mu.Lock()
		h.stats.Fetches++
		h.stats.Served++
		b := h.bufs[keys[0]]
		if b == nil {
			b = &buffer{keys: keys, prefix: prefix}
			h.bufs[keys[0]] = b
		}
		b.tasks = append(b.tasks, fetched[1:]...)
		h.mu.Unlock()
		c.SetVal(fetched[0].msg)
		return nil
	}
}

// pop takes the oldest buffered task of the queue whose pending list is
// pendingKey that is young enough to serve; older ones are set aside for
// the sweeper to hand back.
func (h *Hook) pop(pendingKey string) (task, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.bufs[pendingKey]
	if b == nil {
		return task{}, false
	}
	now := time.Now()
	for len(b.tasks) > 0 {
		t := b.tasks[0]
		b.tasks = b.tasks[1:]
		if now.Sub(t.at) > h.maxAge {
			b.stale = append(b.stale, t.claim)
			continue
		}
		h.stats.Served++
		return t, true
	}
	return task{}, false
}

// fetch runs dequeueMany through next (so the hooks after this one see it).
func (h *Hook) fetch(ctx context.Context, next redis.ProcessHook, keys []string, expiry, prefix any) ([]task, error) {
	h.mu.Lock()
	h.fetchSeq++
	token := fmt.Sprintf("%s-%d", h.id, h.fetchSeq)
	h.mu.Unlock()
	run := func(name, script string) *redis.Cmd {
		args := []any{name, script, len(keys)}
		for _, k := range keys {
			args = append(args, k)
		}
		args = append(args, expiry, prefix, h.batch, token)
		c := redis.NewCmd(ctx, args...)
		// A hook's next returns the command's error without always
		// setting it on the command.
		if err := next(ctx, c); err != nil {
			c.SetErr(err)
		}
		return c
	}
	c := run("evalsha", dequeueMany.Hash())
	if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		c = run("eval", dequeueManySource)
	}
	vals, err := c.Slice()
	if err != nil {
		return nil, err
	}
	if len(vals)%2 != 0 {
		return nil, fmt.Errorf("prefetch: odd reply of %d values", len(vals))
	}
	now := time.Now()
	out := make([]task, 0, len(vals)/2)
	for i := 0; i < len(vals); i += 2 {
		id, ok1 := vals[i].(string)
		msg, ok2 := vals[i+1].(string)
		if !ok1 || !ok2 {
			return nil, errors.New("prefetch: reply is not ID and message strings")
		}
		out = append(out, task{claim: claim{id: id, token: token, expiry: fmt.Sprint(expiry)}, msg: msg, at: now})
	}
	return out, nil
}

// HandBack returns every buffered task to the head of its queue. Call it
// once asynq's servers have stopped, before the client closes.
func (h *Hook) HandBack(ctx context.Context) error {
	return h.handBackOlderThan(ctx, -1)
}

// Close stops the sweeper. It does not hand anything back.
func (h *Hook) Close() {
	h.stopOnce.Do(func() { close(h.stop) })
	<-h.swept
}

// sweep hands back stale tasks once a second until Close.
func (h *Hook) sweep() {
	defer close(h.swept)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = h.handBackOlderThan(ctx, h.maxAge)
			cancel()
		}
	}
}

// handBackOlderThan hands back the buffered tasks older than age (all of
// them when age < 0) and those set aside as stale. Tasks whose hand-back
// fails stay set aside, to try again, until their lease has run out: then
// asynq's lease recovery has them.
func (h *Hook) handBackOlderThan(ctx context.Context, age time.Duration) error {
	type group struct {
		b     *buffer
		tasks []claim
	}
	var groups []group
	h.mu.Lock()
	now := time.Now()
	for _, b := range h.bufs {
		n := 0
		for n < len(b.tasks) && (age < 0 || now.Sub(b.tasks[n].at) > age) {
			n++
		}
		var ts []claim
		for _, t := range b.stale {
			if exp, err := strconv.ParseInt(t.expiry, 10, 64); err == nil && now.Unix() < exp {
				ts = append(ts, t)
			}
		}
		for _, t := range b.tasks[:n] {
			ts = append(ts, t.claim)
		}
		b.tasks, b.stale = b.tasks[n:], nil
		if len(ts) > 0 {
			groups = append(groups, group{b: b, tasks: ts})
		}
	}
	h.mu.Unlock()
	var errs []error
	for _, g := range groups {
		args := []any{g.b.prefix}
		for _, t := range g.tasks {
			args = append(args, t.id, t.token, t.expiry)
		}
		// Keys: pending, active, lease (asynq's dequeue keys 1, 3, 4). With
		// the pending key first, package ackbatch does not hold it.
		moved, err := handBack.Run(ctx, h.rdb, []string{g.b.keys[0], g.b.keys[2], g.b.keys[3]}, args...).Int()
		h.mu.Lock()
		if err != nil {
			errs = append(errs, fmt.Errorf("prefetch: hand back %d tasks: %w", len(g.tasks), err))
			g.b.stale = append(g.b.stale, g.tasks...)
		} else {
			h.stats.HandedBack += uint64(moved)
		}
		h.mu.Unlock()
	}
	return errors.Join(errs...)
}

// isAsynqDequeue reports whether cmd runs asynq's dequeue script with its
// four keys and two arguments.
func isAsynqDequeue(cmd redis.Cmder) bool {
	args := cmd.Args()
	if len(args) != 9 {
		return false
	}
	switch cmd.Name() {
	case "evalsha":
		if s, _ := args[1].(string); s != asynqDequeueSHA {
			return false
		}
	case "eval":
		if s, _ := args[1].(string); s != asynqDequeue {
			return false
		}
	default:
		return false
	}
	if n, ok := args[2].(int); !ok || n != 4 {
		return false
	}
	for i, suffix := range []string{":pending", ":paused", ":active", ":lease"} {
		if k, ok := args[3+i].(string); !ok || !strings.HasSuffix(k, suffix) {
			return false
		}
	}
	return true
}
