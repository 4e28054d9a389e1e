package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/tasks"
)

// Feeder moves running jobs' operations into the job lane, a window at a
// time. Every worker process runs one; a lease in Redis lets one of them
// feed at a time, and another takes over within LeaseTTL when it stops.
//
// Per endpoint, the lane holds at most Window operations that were fed and
// not yet counted. Running jobs share the window by weight: a job's share is
// Window*weight/(sum of the weights of the running jobs with operations for
// that endpoint). Since the lane is first in, first out and the window is a
// few seconds of work, each job's share of the endpoint's calls follows its
// share of the window, and pausing or cancelling a job takes effect on the
// tasks in the lane as the worker reaches them (Store.Begin).
type Feeder struct {
	store  *Store
	client *asynq.Client
	opts   FeederOptions
	token  string
	// sampled is when the feeder last sampled each running job's progress.
	sampled map[string]time.Time
}

// FeederOptions configure a Feeder.
type FeederOptions struct {
	// Window is how many operations per endpoint may be in the lane.
	// Defaults to DefaultWindow.
	Window int
	// Interval is how often the feeder looks. Defaults to 100ms.
	Interval time.Duration
	// LeaseTTL is how long a feeder's lease lasts without renewal.
	// Defaults to 3s.
	LeaseTTL time.Duration
	// MaxRetry and Timeout are the tasks' asynq options. Default to
	// tasks.DefaultMaxRetry and tasks.DefaultTimeout.
	MaxRetry int
	Timeout  time.Duration
	// Logger receives feeding errors. Defaults to slog.Default().
	Logger *slog.Logger
}

// DefaultWindow is two seconds of work at the API's 200 calls a second.
const DefaultWindow = 400

const feederLeaseKey = "timq:jobs:feeder"

// NewFeeder returns a Feeder that enqueues through client.
func NewFeeder(store *Store, client *asynq.Client, opts FeederOptions) *Feeder {
	if opts.Window <= 0 {
		opts.Window = DefaultWindow
	}
	if opts.Interval <= 0 {
		opts.Interval = 100 * time.Millisecond
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 3 * time.Second
	}
	if opts.MaxRetry <= 0 {
		opts.MaxRetry = tasks.DefaultMaxRetry
	}
	if opts.Timeout <= 0 {
		opts.Timeout = tasks.DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Feeder{store: store, client: client, opts: opts, token: NewID(time.Now()), sampled: map[string]time.Time{}}
}

// Run feeds until ctx ends.
func (f *Feeder) Run(ctx context.Context) {
	t := time.NewTicker(f.opts.Interval)
	defer t.Stop()
	defer func() {
		_ = releaseScript.Run(context.WithoutCancel(ctx), f.store.rdb, []string{feederLeaseKey}, f.token).Err()
	}()
	for {
		if _, err := f.Step(ctx); err != nil && ctx.Err() == nil {
			f.opts.Logger.Warn("job feeder", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Step feeds once if this feeder holds the lease, and returns how many
// operations it put into the lane.
func (f *Feeder) Step(ctx context.Context) (int, error) {
	ok, err := leaseScript.Run(ctx, f.store.rdb, []string{feederLeaseKey}, f.token, f.opts.LeaseTTL.Milliseconds()).Int()
	if err != nil {
		return 0, fmt.Errorf("lease: %w", err)
	}
	if ok == 0 {
		return 0, nil
	}
	ids, err := f.store.rdb.SMembers(ctx, activeJobsKey).Result()
	if err != nil {
		return 0, err
	}
	slices.Sort(ids) // oldest first: IDs are time-ordered
	type live struct {
		id     string
		weight int
		h      map[string]int64
	}
	var running []live
	for _, id := range ids {
		j, err := f.store.rdb.HGetAll(ctx, jobKey(id)).Result()
		if err != nil {
			return 0, err
		}
		if len(j) == 0 || j["ended_ms"] != "" {
			// An ended job leaves the active set once its notice, if any,
			// is queued: a crash in between queues it again, and asynq
			// refuses the second by its task ID.
			if len(j) > 0 && j["notify"] != "" && j["notice"] == NoticePending {
				if _, err := f.client.EnqueueContext(ctx, noticeTask(id)); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					return 0, fmt.Errorf("enqueue the notice of job %s: %w", id, err)
				}
			}
			f.store.rdb.SRem(ctx, activeJobsKey, id)
			continue
		}
		if j["state"] != StateRunning && j["state"] != StateQueued {
			continue
		}
		h := map[string]int64{}
		for k, v := range j {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				h[k] = n
			}
		}
		running = append(running, live{id: id, weight: max(1, int(h["weight"])), h: h})
		if now := f.store.now(); now.Sub(f.sampled[id]) >= progressEvery {
			if err := f.store.sampleProgress(ctx, id, h["applied"]+h["dead"]); err != nil {
				return 0, err
			}
			f.sampled[id] = now
		}
	}
	for id := range f.sampled {
		if !slices.ContainsFunc(running, func(l live) bool { return l.id == id }) {
			delete(f.sampled, id)
		}
	}
	fed := 0
	for _, ep := range Endpoints {
		var inLane int64
		var wanting []live
		var weights int
		for _, j := range running {
			inLane += j.h["fed:"+ep] - j.h["fin:"+ep]
			if j.h["fed:"+ep] < j.h["total:"+ep] {
				wanting = append(wanting, j)
				weights += j.weight
			}
		}
		var batches []feedBatch
		for _, j := range wanting {
			share := max(1, int64(f.opts.Window)*int64(j.weight)/int64(weights))
			room := int64(f.opts.Window) - inLane
			n := min(share-(j.h["fed:"+ep]-j.h["fin:"+ep]), j.h["total:"+ep]-j.h["fed:"+ep], room)
			if n <= 0 {
				continue
			}
			ops, err := f.store.rdb.LRange(ctx, opsKey(j.id, ep), j.h["fed:"+ep], j.h["fed:"+ep]+n-1).Result()
			if err != nil {
				return fed, err
			}
			batches = append(batches, feedBatch{id: j.id, from: j.h["fed:"+ep], ops: ops})
			inLane += int64(len(ops))
		}
		k, err := f.feed(ctx, ep, batches)
		fed += k
		if err != nil {
			return fed, err
		}
	}
	return fed, nil
}

// feedBatch is the operations of one job fed in one step.
type feedBatch struct {
	id   string
	from int64
	ops  []string
}

// feed enqueues the batches' operations, one of each batch in turn so that
// the lane interleaves the jobs, and then advances each job's cursor if the
// job still runs. A crash between the two feeds the same operations again:
// asynq refuses the tasks it still holds (same ID), and Store.Begin skips
// those already counted.
func (f *Feeder) feed(ctx context.Context, ep string, batches []feedBatch) (int, error) {
	typ, queue := TypeOf(ep), LaneQueue(TypeOf(ep))
	longest := 0
	for _, b := range batches {
		longest = max(longest, len(b.ops))
	}
	for i := range longest {
		for _, b := range batches {
			if i >= len(b.ops) {
				continue
			}
			idx := b.from + int64(i)
			t := asynq.NewTask(typ, []byte(b.ops[i]), asynq.Queue(queue), asynq.TaskID(taskID(b.id, ep, idx)),
				asynq.MaxRetry(f.opts.MaxRetry), asynq.Timeout(f.opts.Timeout), asynq.Retention(0))
			if _, err := f.client.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
				return 0, fmt.Errorf("enqueue job %s %s #%d: %w", b.id, ep, idx, err)
			}
		}
	}
	fed := 0
	for _, b := range batches {
		r, err := advanceScript.Run(ctx, f.store.rdb, []string{jobKey(b.id)}, ep, b.from, len(b.ops), recallMessages(ep, b.ops)).Int()
		if err != nil {
			return fed, err
		}
		if r == 1 { // else paused or cancelled meanwhile: Begin decides for those tasks
			fed += len(b.ops)
		}
	}
	return fed, nil
}

var advanceScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'running' and st ~= 'queued' then return 0 end
if tonumber(redis.call('HGET', KEYS[1], 'fed:' .. ARGV[1]) or 0) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'fed:' .. ARGV[1], ARGV[2] + ARGV[3], 'state', 'running')
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], 'msgs:fed', ARGV[4]) end
return 1`)

// recallMessages returns how many messages the recall operations ops
// carry; 0 for another endpoint.
func recallMessages(ep string, ops []string) int {
	if ep != "recall" {
		return 0
	}
	n := 0
	for _, op := range ops {
		var r struct {
			MsgSeqList []json.RawMessage
		}
		if json.Unmarshal([]byte(op), &r) == nil {
			n += len(r.MsgSeqList)
		}
	}
	return n
}

var leaseScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`)

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0`)
