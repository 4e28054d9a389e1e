package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/ratelimit"
	"github.com/timq/timq/tasks"
)

// Jobs' operations run in a lane of their own per endpoint (jobs.LaneQueue),
// which the endpoint's server serves after every interactive queue (asynq's
// strict priority): an operation enqueued one by one never waits behind a
// job's backlog, only behind the few job tasks already running. The feeder
// keeps the lane a few seconds of work deep, so a paused or cancelled job
// stops within that and the lane's order gives running jobs their shares.

// serveQueues returns the queues the server of a task type consumes, with
// asynq priorities: the configured queues above the job lane, in their
// configured order.
func (w *Worker) serveQueues(typ string) map[string]int {
	out := map[string]int{jobs.LaneQueue(typ): 1}
	for q, prio := range w.cfg.Queues[typ] {
		out[q] = prio + 1
	}
	return out
}

// pausedError hands a task of a paused job back to asynq without using an
// attempt (see isFailure); it comes back after jobPausedRecheck.
type pausedError struct{ job string }

func (e *pausedError) Error() string { return "job " + e.job + " is paused" }

// jobPausedRecheck is how long a paused job's task waits before it looks
// again: resume takes effect within about that.
const jobPausedRecheck = 500 * time.Millisecond

// jobLane runs a job lane task: it asks the job store whether the
// operation still runs, and counts its outcome once when it ends.
func (w *Worker) jobLane(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		op, ok := jobs.ParseTaskID(id)
		if !ok {
			return next.ProcessTask(ctx, t)
		}
		d, err := w.jobs.Begin(ctx, op)
		if err != nil {
			return err // Redis trouble: retried
		}
		n := recallSize(t)
		switch d {
		case jobs.Skip:
			return nil
		case jobs.Wait:
			return &pausedError{job: op.Job}
		case jobs.Drop:
			return w.countJobOp(ctx, op, t.Type(), jobs.Cancelled, nil, jobs.Messages{Cancelled: n})
		}
		tally := &recallTally{}
		err = next.ProcessTask(context.WithValue(ctx, recallTallyKey{}, tally), t)
		switch {
		case err == nil:
			// An outcome that cannot be counted is retried, so that the
			// job still ends: the operation is idempotent and the count
			// is taken once.
			if ferr := w.countJobOp(ctx, op, t.Type(), jobs.Applied, nil, jobs.Messages{Recalled: n}); ferr != nil {
				w.log.Error("cannot count a job's operation; it will run again", "task_id", id, "error", ferr)
				return ferr
			}
		case errors.Is(err, asynq.SkipRetry):
			f := &jobs.Failure{Op: op.Endpoint, Payload: t.Payload(), Code: codeOf(err), TaskID: id,
				Info: strings.TrimPrefix(err.Error(), archivedErrPrefix)}
			// The task is archived whatever happens here, so the count is
			// tried a few times, as the dead-letter store is.
			msgs := jobs.Messages{DeadLettered: n}
			if tally.set {
				msgs = jobs.Messages{Recalled: n - len(tally.dead), DeadLettered: len(tally.dead)}
				f.Payload = tally.payload // only the messages that failed: retry-failed redoes no recalled one
				if f.Code == 0 {
					f.Code = tally.code
				}
			}
			var ferr error
			for try := range 3 {
				if ferr = w.countJobOp(ctx, op, t.Type(), jobs.DeadLettered, f, msgs); ferr == nil {
					break
				}
				time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
			}
			if ferr != nil {
				w.log.Error("cannot count a job's dead-lettered operation; the job will not end by itself", "task_id", id, "error", ferr)
			}
		}
		return err
	})
}

// jobArchived counts a job's operation that the archive reconciler
// dead-lettered (asynq archived it on its own), every message of a recall
// with it, as the dead-letter store holds them.
func (w *Worker) jobArchived(info *asynq.TaskInfo, first dlq.Entry) {
	op, ok := jobs.ParseTaskID(info.ID)
	if !ok {
		return
	}
	f := &jobs.Failure{Op: op.Endpoint, Payload: info.Payload, Code: first.Code, Info: first.Info, TaskID: info.ID}
	msgs := jobs.Messages{DeadLettered: recallSize(asynq.NewTask(info.Type, info.Payload))}
	if err := w.countJobOp(context.Background(), op, info.Type, jobs.DeadLettered, f, msgs); err != nil {
		w.log.Error("cannot count a job's operation", "task_id", info.ID, "error", err)
	}
}

// recallTally is where handleRecall tells the job lane which of a
// recall's messages were dead-lettered, when some were.
type recallTally struct {
	set     bool
	dead    []uint64
	code    int    // the first dead message's RetCode or ErrorCode
	payload []byte // the recall of the dead messages only
}

type recallTallyKey struct{}

// tallyRecall records the dead-lettered messages of a job's recall p
// (no-op outside the job lane).
func tallyRecall(ctx context.Context, p tasks.Recall, dead []uint64, code int) {
	t, ok := ctx.Value(recallTallyKey{}).(*recallTally)
	if !ok {
		return
	}
	p.MsgSeqList = nil
	for _, s := range dead {
		p.MsgSeqList = append(p.MsgSeqList, tasks.MsgSeqItem{MsgSeq: s})
	}
	t.set, t.dead, t.code = true, dead, code
	t.payload, _ = json.Marshal(p)
}

// recallSize returns how many messages a recall task carries; 0 for
// another task or a payload that does not parse.
func recallSize(t *asynq.Task) int {
	if t.Type() != tasks.TypeRecall {
		return 0
	}
	p, err := tasks.ParseRecall(t.Payload())
	if err != nil {
		return 0
	}
	return len(p.MsgSeqList)
}

// countJobOp counts op's outcome into its job and, when this call counted
// it, into timq_job_operations_total.
func (w *Worker) countJobOp(ctx context.Context, op jobs.Op, taskType string, outcome jobs.Outcome, f *jobs.Failure, msgs jobs.Messages) error {
	counted, err := w.jobs.Finish(ctx, op, outcome, f, msgs)
	if counted {
		w.metrics.JobOperation(taskType, string(outcome))
	}
	return err
}

// maxJobWaiters is how many job operations of an endpoint may wait for the
// endpoint's token at once in one worker. The rest wait before that, in
// waitTurn. The rate limiters hand out tokens in the order they were asked
// (a reservation each), so an interactive call asks behind at most this
// many job calls, a few milliseconds at the API's rate, rather than behind
// every job task the worker's concurrency lets run. Four keep a token
// taken at every slot: a waiter that gets one is replaced at once.
const maxJobWaiters = 4

// waitTurn waits for the endpoint's token; a job operation first waits for
// one of the endpoint's maxJobWaiters places.
func (w *Worker) waitTurn(ctx context.Context, l ratelimit.Limiter, ep chatapi.Endpoint, a attempt) error {
	places, ok := w.jobWaiters[ep]
	if !ok || !jobs.IsLane(a.queue) {
		return l.Wait(ctx)
	}
	select {
	case places <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-places }()
	return l.Wait(ctx)
}

func pausedDelay() time.Duration {
	return jobPausedRecheck + time.Duration(rand.Int64N(int64(jobPausedRecheck)))
}

// noticeConcurrency is how many job notices a worker sends at once: they
// are rare, and a slow receiver holds one for at most its timeout.
const noticeConcurrency = 2

// startNoticeServer starts the server of job completion notices: a queue
// of its own, so that a failing receiver never holds an endpoint's work,
// and a backoff of its own (NotifyRetryBase doubling to an hour).
func (w *Worker) startNoticeServer(rdb redis.UniversalClient) error {
	n := jobs.NewNotifier(w.jobs, w.cfg.NotifySecret, w.cfg.NotifyClient)
	mux := asynq.NewServeMux()
	mux.HandleFunc(jobs.NoticeType, func(ctx context.Context, t *asynq.Task) error {
		err := n.Handle(ctx, t)
		if err != nil {
			id, _ := asynq.GetTaskID(ctx)
			w.log.Warn("job notice not delivered", "task_id", id, "error", err)
		}
		return err
	})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: noticeConcurrency,
		Queues:      map[string]int{jobs.NoticeQueue: 1},
		RetryDelayFunc: func(n int, _ error, _ *asynq.Task) time.Duration {
			return equalJitter(w.cfg.NotifyRetryBase, time.Hour, n, rand.Int64N)
		},
		ShutdownTimeout:          w.cfg.ShutdownTimeout,
		DelayedTaskCheckInterval: w.cfg.PollInterval,
		TaskCheckInterval:        w.cfg.IdlePollInterval,
		Logger:                   asynqLogger{w.log.With("component", "asynq", "task_type", jobs.NoticeType)},
		LogLevel:                 asynq.WarnLevel,
	})
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("worker: start the job notice server: %w", err)
	}
	w.servers = append(w.servers, srv)
	return nil
}
