package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/tasks"
)

// DefaultReconcileInterval is how often the worker looks for tasks asynq
// archived without a dead letter.
const DefaultReconcileInterval = 30 * time.Second

// archiveReconciler copies into the dead-letter store every task that asynq
// archived without the worker having written its dead letter.
//
// The worker writes a dead letter before it lets asynq archive a task, but
// asynq also archives on its own: when a worker dies during a task's last
// attempt, asynq's recoverer archives the task ("asynq: task lease expired")
// without running any handler, and an operator can archive a task from the
// dashboard. Without this, those operations would sit only in asynq's
// archive, which asynq trims at 10,000 tasks per queue and 90 days.
//
// It reads asynq's archive sorted set ("asynq:{QUEUE}:archived", scored by
// archive time in Unix seconds) from a watermark kept in Redis, so each
// archived task is looked at about once, however many workers run and
// however often they restart. A task that already has its dead letter (the
// usual case) is left alone; writes are idempotent by task ID.
type archiveReconciler struct {
	rdb    redis.UniversalClient
	insp   *asynq.Inspector
	store  *dlq.Store
	queues []string
	onAdd  func(dlq.Entry)
	// onTask is told of each archived task whose dead letters were added,
	// with the first of them.
	onTask func(*asynq.TaskInfo, dlq.Entry)
}

// reconcileBatch is how many archived tasks one read takes. It must exceed
// the tasks a queue archives in one second, which are read again together.
const reconcileBatch = 5000

func archivedKey(queue string) string { return "asynq:{" + queue + "}:archived" }

func reconcileWatermarkKey(queue string) string { return "timq:archive-reconciled:{" + queue + "}" }

// reconcile looks at every queue once and returns how many dead letters it
// wrote.
func (r *archiveReconciler) reconcile(ctx context.Context) (int, error) {
	added := 0
	var errs []error
	for _, q := range r.queues {
		n, err := r.reconcileQueue(ctx, q)
		added += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return added, errors.Join(errs...)
}

// watermark is how far the reconciler has read a queue's archive: every
// task archived before Score, and the tasks IDs archived at Score itself
// (asynq scores in whole seconds, so more can arrive in the same second).
type watermark struct {
	Score float64  `json:"score"`
	IDs   []string `json:"ids"`
}

func (r *archiveReconciler) reconcileQueue(ctx context.Context, queue string) (int, error) {
	var wm watermark
	raw, err := r.rdb.Get(ctx, reconcileWatermarkKey(queue)).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &wm) // a damaged watermark means reading the archive again
	}
	added := 0
	for {
		seen := make(map[string]bool, len(wm.IDs))
		for _, id := range wm.IDs {
			seen[id] = true
		}
		zs, err := r.rdb.ZRangeByScoreWithScores(ctx, archivedKey(queue), &redis.ZRangeBy{
			Min: strconv.FormatFloat(wm.Score, 'f', -1, 64), Max: "+inf", Count: reconcileBatch,
		}).Result()
		if err != nil {
			return added, err
		}
		next := wm
		progressed := false
		for _, z := range zs {
			id, _ := z.Member.(string)
			if z.Score == wm.Score && seen[id] {
				continue
			}
			progressed = true
			n, err := r.reconcileTask(ctx, queue, id)
			if err != nil {
				return added, err
			}
			added += n
			if z.Score > next.Score {
				next = watermark{Score: z.Score}
			}
			if z.Score == next.Score {
				next.IDs = append(next.IDs, id)
			}
		}
		if progressed {
			b, _ := json.Marshal(next)
			if err := r.rdb.Set(ctx, reconcileWatermarkKey(queue), b, 0).Err(); err != nil {
				return added, err
			}
		}
		if len(zs) < reconcileBatch || !progressed {
			return added, nil
		}
		wm = next
	}
}

// reconcileTask writes the dead letters of one archived task unless the
// worker already wrote them.
func (r *archiveReconciler) reconcileTask(ctx context.Context, queue, id string) (int, error) {
	info, err := r.insp.GetTaskInfo(queue, id)
	if errors.Is(err, asynq.ErrTaskNotFound) {
		return 0, nil // deleted or trimmed since
	}
	if err != nil {
		return 0, err
	}
	if strings.HasPrefix(info.LastErr, archivedErrPrefix) {
		return 0, nil // archived by the worker after it wrote the dead letters
	}
	entries := archivedEntries(info)
	var missing []dlq.Entry
	for _, e := range entries {
		if _, err := r.store.Get(ctx, e.ID); errors.Is(err, dlq.ErrNotFound) {
			missing = append(missing, e)
		} else if err != nil {
			return 0, err
		} else {
			return 0, nil // the worker wrote this task's dead letters
		}
	}
	for _, e := range missing {
		if err := r.store.Add(ctx, e); err != nil {
			return 0, err
		}
		if r.onAdd != nil {
			r.onAdd(e)
		}
	}
	if r.onTask != nil && len(missing) > 0 {
		r.onTask(info, missing[0])
	}
	return len(missing), nil
}

// archivedEntries returns the dead letters an archived task stands for: one
// for a clear or modify (or a payload that does not parse), one per message
// for a recall, as the worker itself writes them.
func archivedEntries(info *asynq.TaskInfo) []dlq.Entry {
	failedAt := info.LastFailedAt
	if failedAt.IsZero() {
		failedAt = time.Now()
	}
	info2 := info.LastErr
	if info2 == "" {
		info2 = "archived without an error (by hand, from the dashboard or the inspector)"
	}
	base := dlq.Entry{
		ID: info.ID, Type: info.Type, Queue: info.Queue, TaskID: info.ID, Payload: info.Payload,
		Info: info2, Reason: dlq.ReasonArchived, Attempts: info.Retried + 1, FailedAt: failedAt.UTC(),
	}
	p, err := tasks.Parse(info.Type, info.Payload)
	if err != nil {
		base.Reason = dlq.ReasonInvalidPayload
		base.Info = "invalid payload: " + err.Error()
		if !json.Valid(base.Payload) || len(base.Payload) > tasks.MaxPayloadBytes {
			base.Payload, base.Invalid = invalidPayload(info.Payload), true
		}
		return []dlq.Entry{base}
	}
	switch p := p.(type) {
	case tasks.Clear:
		base.GroupId = p.GroupId
	case tasks.Modify:
		base.GroupId = p.GroupId
	case tasks.Recall:
		out := make([]dlq.Entry, 0, len(p.MsgSeqList))
		for _, m := range p.MsgSeqList {
			one := p
			one.MsgSeqList = []tasks.MsgSeqItem{m}
			e := base
			e.ID = dlq.RecallEntryID(info.ID, m.MsgSeq)
			e.GroupId = p.GroupId
			e.Payload, _ = json.Marshal(one)
			out = append(out, e)
		}
		return out
	}
	return []dlq.Entry{base}
}

// runReconciler reconciles every interval until ctx ends.
func (w *Worker) runReconciler(ctx context.Context, r *archiveReconciler, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if n, err := r.reconcile(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn("cannot reconcile asynq's archive with the dead-letter store", "error", err)
		} else if n > 0 {
			w.log.Warn("dead-lettered tasks asynq archived on its own", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
