package enqueue

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/jobs"
)

// DefaultConfirmTimeout is how long a call of a Client made with
// ConfirmReplicas(n, 0) tries to confirm its tasks before it fails.
const DefaultConfirmTimeout = 30 * time.Second

// ErrNotConfirmed is matched (with errors.Is) by the error of a call of a
// Client made with ConfirmReplicas when its tasks (or a job, at
// JobWriter.Close) were not confirmed on enough replicas in time. The tasks may be queued, or may be lost by a
// failover: call again with the same TaskID to find out without queuing
// twice.
var ErrNotConfirmed = jobs.ErrNotConfirmed

// ClientOption changes how a Client made by New enqueues.
type ClientOption func(*clientConfig)

type clientConfig struct {
	replicas int
	timeout  time.Duration
}

// ConfirmReplicas makes every call (Enqueue, Clear, Recall, Modify) return
// only once each of its tasks is on at least n replicas of the Redis
// primary that holds it, so that a failover (Sentinel, or Cluster with
// replicas) cannot lose a task the call reported as queued. n ≤ 0 turns it
// off (the default): a call returns once the primary has the task, and
// Redis replicates asynchronously.
//
// Redis replicates asynchronously: during a failover the old primary
// acknowledges writes until it is demoted, then drops them when it resyncs
// from the new one. So after enqueuing, the Client checks on one connection
// to the current primary that the task's key (asynq:{QUEUE}:t:ID) exists,
// writes a fence key in the same hash slot (timq:fence:{QUEUE}), and runs
// WAIT n. The replication stream is ordered, so once n replicas have the
// fence they have the task. The existence check is what makes this hold
// across a failover: an enqueue acknowledged by the old primary and lost
// is found missing on the new one instead of being covered by its fence.
// A task found missing is enqueued again with the same ID; one whose fence
// is not acknowledged in time is checked again; Redis errors are retried
// with backoff. This goes on until timeout (DefaultConfirmTimeout when
// timeout ≤ 0) or the context's deadline, whichever is sooner; then the
// call fails with an error matching ErrNotConfirmed, returning the IDs of
// the tasks that may be queued.
//
// Cost: two more Redis round trips per call, so per task for Clear and
// Modify (the tasks of a split Recall share them): a pipeline of the
// existence checks and the fence, then WAIT, which lasts until the
// replicas acknowledge (at most a second per round). Concurrent calls
// share them: while one round runs, the checks of the other calls of the
// same queue wait and then go in one pipeline with one fence and one WAIT,
// so bulk enqueuing from several goroutines pays far less than two round
// trips per task. The fence key is one small key per queue, incremented
// once per round.
//
// What it guarantees is what WAIT does: n replicas had the task when the
// call returned. A failover keeps it when the promoted replica is one of
// them; Sentinel promotes the reachable replica with the most data (unless
// replica-priority says otherwise), so with n = 1 a task survives the loss
// of the primary, not of the primary and that replica together.
//
// Semantics the caller should know:
//   - Every task gets an ID before the first attempt (a random UUID unless
//     TaskID gives one), so a retry never queues it twice while asynq
//     keeps its ID (until its retention ends after it completes). A task
//     that has run and been deleted before it was confirmed would be
//     queued again: delivery is at least once, as it always is with asynq.
//   - De-duplication still works: a duplicate refused on the first attempt
//     is reported as ErrDuplicate. On later attempts (or with TaskID) a
//     refusal is this task's own lock when its key exists, and the task is
//     confirmed like any other.
//   - With no replica (a single Redis) WAIT answers 0 and every call fails
//     after timeout. Use it only where the primary has replicas.
//   - A call gives up a little (at most 100ms) before ctx's deadline, to
//     return its own ErrNotConfirmed error; when ctx is cancelled it
//     returns at once, with an error matching ErrNotConfirmed and ctx's.
//
// A job (NewJob) is confirmed at JobWriter.Close, in two steps: its
// operations, while the job is still invisible (unconfirmed, they are
// deleted and Close fails: nothing was queued), then its hash and listings
// (unconfirmed, Close fails with the job's ID: it may be queued).
//
// It needs the Redis clients asynq makes for RedisClientOpt,
// RedisFailoverClientOpt and RedisClusterClientOpt.
func ConfirmReplicas(n int, timeout time.Duration) ClientOption {
	return func(c *clientConfig) {
		c.replicas = max(n, 0)
		c.timeout = timeout
		if c.timeout <= 0 {
			c.timeout = DefaultConfirmTimeout
		}
	}
}

// Tuning of the confirmation rounds.
const (
	// waitStep is the longest WAIT of one round: a round that times out is
	// followed by a new existence check, which notices a failover.
	waitStep = time.Second
	// roundSlack bounds the Redis commands of a round beyond its WAIT.
	roundSlack = 10 * time.Second
	// maxRoundKeys is the most task keys one round checks.
	maxRoundKeys = 1000
	// firstBackoff and maxBackoff bound the pause after a Redis error.
	firstBackoff = 50 * time.Millisecond
	maxBackoff   = time.Second
	// ctxMargin is how long before the context's deadline (at most a tenth
	// of the time left) a call gives up, to return its own error.
	ctxMargin = 100 * time.Millisecond
)

// FenceKey returns the key a Client made with ConfirmReplicas writes
// before WAIT for tasks of queue. It is in the queue's hash slot.
func FenceKey(queue string) string { return "timq:fence:{" + queue + "}" }

// taskKey is where asynq v0.26 stores a task (base.TaskKey).
func taskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// newID returns a random (version 4) UUID, the form asynq gives IDs.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// taskIDs returns the IDs of a call's n tasks: id, or id-1 ... id-n when
// there are several; random UUIDs when id is "".
func taskIDs(id string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		switch {
		case id == "":
			ids[i] = newID()
		case n == 1:
			ids[i] = id
		default:
			ids[i] = fmt.Sprintf("%s-%d", id, i+1)
		}
	}
	return ids
}

// The states of a task being confirmed.
const (
	stEnqueue   = iota // to enqueue (again)
	stCheck            // to check and fence
	stConfirmed        // on enough replicas
	stDuplicate        // refused: an identical task holds the lock
)

type durableTask struct {
	task  *asynq.Task
	id    string
	state int
	dup   bool // the last enqueue was refused as a duplicate
}

// enqueueConfirmed enqueues the tasks of one call (all in queue) and
// confirms them on c.cfg.replicas replicas; see ConfirmReplicas.
func (c *Client) enqueueConfirmed(ctx context.Context, what, queue string, built []*asynq.Task, ids []string, givenID bool) ([]string, error) {
	n := c.cfg.replicas
	start := time.Now()
	deadline := start.Add(c.cfg.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		// Give up a little before ctx ends, to say why.
		deadline = d.Add(-min(ctxMargin, d.Sub(start)/10))
	}
	ts := make([]*durableTask, len(built))
	for i, t := range built {
		ts[i] = &durableTask{task: t, id: ids[i]}
	}
	var last error // why the last attempt did not confirm everything
	fail := func() ([]string, error) {
		var maybe []string
		for _, t := range ts {
			if t.state != stDuplicate {
				maybe = append(maybe, t.id)
			}
		}
		return maybe, notConfirmed(what, ts, n, time.Since(start), last, ctx.Err())
	}
	backoff := firstBackoff
	for attempt := 1; ; attempt++ {
		failed := false
		for _, t := range ts {
			if t.state != stEnqueue {
				continue
			}
			_, err := c.ac.EnqueueContext(ctx, t.task)
			t.state, t.dup = stCheck, false
			switch {
			case err == nil, errors.Is(err, asynq.ErrTaskIDConflict):
			case errors.Is(err, asynq.ErrDuplicateTask):
				if attempt == 1 && !givenID {
					t.state = stDuplicate // a fresh ID cannot hold the lock
				}
				t.dup = true
			case ctx.Err() != nil:
				return fail()
			default:
				// The outcome is unknown: the check decides.
				last, failed = err, true
			}
		}
		var keys []string
		var checked []*durableTask
		for _, t := range ts {
			if t.state == stCheck {
				keys = append(keys, taskKey(queue, t.id))
				checked = append(checked, t)
			}
		}
		if len(keys) == 0 {
			break
		}
		if !time.Now().Before(deadline) {
			return fail()
		}
		res := c.fence(ctx, queue, keys, deadline)
		switch {
		case ctx.Err() != nil:
			return fail()
		case res.err != nil:
			last, failed = res.err, true
		default:
			for i, t := range checked {
				switch {
				case res.exists[i] && res.acked >= int64(n):
					t.state = stConfirmed
				case res.exists[i]:
					last = fmt.Errorf("WAIT %d: %d replicas acknowledged within %v", n, res.acked, res.wait.Round(time.Millisecond))
				case t.dup:
					t.state = stDuplicate // the lock is another task's
				default:
					t.state = stEnqueue // lost (or never written): again
					last = fmt.Errorf("task %s was not on the primary; enqueuing it again", t.id)
				}
			}
		}
		if failed {
			pause := max(min(backoff, time.Until(deadline)), 0)
			backoff = min(2*backoff, maxBackoff)
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return fail()
			}
		}
	}
	var out []string
	dups := 0
	for _, t := range ts {
		if t.state == stDuplicate {
			dups++
		} else {
			out = append(out, t.id)
		}
	}
	if dups > 0 {
		if len(ts) > 1 {
			what += fmt.Sprintf(": %d of %d tasks", dups, len(ts))
		}
		return out, &duplicateError{what: what}
	}
	return out, nil
}

// notConfirmed is the error of a call that gave up confirming its tasks
// after waited: last says why the last attempt failed, ctxErr is ctx's
// error if it has ended.
func notConfirmed(what string, ts []*durableTask, n int, waited time.Duration, last, ctxErr error) error {
	var open []string
	for _, t := range ts {
		if t.state == stEnqueue || t.state == stCheck {
			open = append(open, t.id)
		}
	}
	which := "task " + strings.Join(open, ", ")
	if len(open) > 3 {
		which = fmt.Sprintf("%d of %d tasks (%s, ...)", len(open), len(ts), strings.Join(open[:3], ", "))
	}
	var why []error
	for _, err := range []error{last, ctxErr} {
		if err != nil {
			why = append(why, err)
		}
	}
	if len(why) == 0 {
		why = append(why, errors.New("no attempt finished in time"))
	}
	return fmt.Errorf("%s: %s: %w (ConfirmReplicas: %d replica(s); gave up after %v): %w",
		what, which, ErrNotConfirmed, n, waited.Round(time.Millisecond), joined(why))
}

// joined is errors.Join on one line.
type joinedErr []error

func joined(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return joinedErr(errs)
}

func (e joinedErr) Error() string {
	s := make([]string, len(e))
	for i, err := range e {
		s[i] = err.Error()
	}
	return strings.Join(s, "; ")
}

func (e joinedErr) Unwrap() []error { return e }

// fenceResult is what one round found for the keys of one request.
type fenceResult struct {
	exists []bool        // per key: on the primary when the fence was written
	acked  int64         // replicas that acknowledged the fence
	wait   time.Duration // the WAIT timeout of the round
	err    error
}

type fenceReq struct {
	keys     []string
	deadline time.Time
	done     chan fenceResult // buffered: the round never blocks on it
}

// fencer runs the confirmation rounds of one queue, one at a time: the
// requests that arrive while a round runs go together in the next one.
type fencer struct {
	c       *Client
	queue   string
	mu      sync.Mutex
	pending []*fenceReq
	running bool
}

// fence checks that keys (task keys of queue) exist on the primary, writes
// the queue's fence key and waits for the replicas, in a round shared with
// the other calls of the moment. It returns when the round is over or ctx
// is done.
func (c *Client) fence(ctx context.Context, queue string, keys []string, deadline time.Time) fenceResult {
	c.fmu.Lock()
	f := c.fencers[queue]
	if f == nil {
		f = &fencer{c: c, queue: queue}
		c.fencers[queue] = f
	}
	c.fmu.Unlock()
	req := &fenceReq{keys: keys, deadline: deadline, done: make(chan fenceResult, 1)}
	f.mu.Lock()
	f.pending = append(f.pending, req)
	if !f.running {
		f.running = true
		c.rounds.Add(1)
		go f.run()
	}
	f.mu.Unlock()
	select {
	case r := <-req.done:
		return r
	case <-ctx.Done():
		return fenceResult{err: ctx.Err()}
	}
}

// run runs rounds until no request waits.
func (f *fencer) run() {
	defer f.c.rounds.Done()
	for {
		f.mu.Lock()
		var batch []*fenceReq
		nkeys := 0
		for len(f.pending) > 0 && (len(batch) == 0 || nkeys+len(f.pending[0].keys) <= maxRoundKeys) {
			batch = append(batch, f.pending[0])
			nkeys += len(f.pending[0].keys)
			f.pending = f.pending[1:]
		}
		if len(batch) == 0 {
			f.pending = nil
			f.running = false
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		f.round(batch)
	}
}

// round checks the keys of batch and fences them on one connection.
func (f *fencer) round(batch []*fenceReq) {
	wait := waitStep
	for _, r := range batch {
		wait = min(wait, time.Until(r.deadline))
	}
	wait = max(wait, time.Millisecond) // WAIT 0 would block for ever
	ctx, cancel := context.WithTimeout(context.Background(), wait+roundSlack)
	defer cancel()
	exists, acked, err := f.check(ctx, batch, wait)
	if err != nil {
		if cc, ok := f.c.rdb.(*redis.ClusterClient); ok {
			cc.ReloadState(ctx) // the slot may have moved
		}
	}
	i := 0
	for _, r := range batch {
		res := fenceResult{acked: acked, wait: wait, err: err}
		if err == nil {
			res.exists = exists[i : i+len(r.keys)]
		}
		i += len(r.keys)
		r.done <- res
	}
}

// check runs, on one connection to the primary of the queue's slot:
// EXISTS of each key and INCR of the fence key in one pipeline, then,
// when any key exists, WAIT.
func (f *fencer) check(ctx context.Context, batch []*fenceReq, wait time.Duration) ([]bool, int64, error) {
	fence := FenceKey(f.queue)
	var node *redis.Client
	switch r := f.c.rdb.(type) {
	case *redis.Client: // single Redis, or Sentinel's current primary
		node = r
	case *redis.ClusterClient:
		var err error
		if node, err = r.MasterForKey(ctx, fence); err != nil {
			return nil, 0, fmt.Errorf("find the primary of %s: %w", fence, err)
		}
	default:
		return nil, 0, fmt.Errorf("ConfirmReplicas: unsupported Redis client %T", f.c.rdb)
	}
	conn := node.Conn()
	defer conn.Close()
	var cmds []*redis.IntCmd
	_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, r := range batch {
			for _, k := range r.keys {
				cmds = append(cmds, p.Exists(ctx, k))
			}
		}
		p.Incr(ctx, fence)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("check the tasks and write %s: %w", fence, err)
	}
	exists := make([]bool, len(cmds))
	found := false
	for i, cmd := range cmds {
		exists[i] = cmd.Val() == 1
		found = found || exists[i]
	}
	if !found {
		return exists, 0, nil
	}
	acked, err := conn.Wait(ctx, f.c.cfg.replicas, wait).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("WAIT %d: %w", f.c.cfg.replicas, err)
	}
	return exists, acked, nil
}
