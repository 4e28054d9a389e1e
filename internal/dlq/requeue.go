package dlq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/tasks"
)

// Enqueuer enqueues an operation again for Requeue.
type Enqueuer interface {
	// Requeue enqueues a fresh task (a new task ID, no de-duplication
	// against earlier tasks) of type taskType with the given payload in
	// queue, and returns the new task's ID. queue may be empty: the
	// enqueuer then uses the type's default queue.
	Requeue(ctx context.Context, taskType string, payload []byte, queue string) (taskID string, err error)
}

// EnqueuerFunc adapts a function to Enqueuer.
type EnqueuerFunc func(ctx context.Context, taskType string, payload []byte, queue string) (string, error)

// Requeue calls f.
func (f EnqueuerFunc) Requeue(ctx context.Context, taskType string, payload []byte, queue string) (string, error) {
	return f(ctx, taskType, payload, queue)
}

// ErrInvalidPayload is returned (wrapped, with the id) by Requeue for an
// entry whose payload is not a valid payload: sending it again would fail
// the same way.
var ErrInvalidPayload = errors.New("payload is invalid, so the entry cannot be requeued; purge it instead")

// ErrBusy is returned (wrapped, with the id) by Requeue for an entry that
// another caller is requeueing at the same moment.
var ErrBusy = errors.New("entry is being requeued by another process")

// Requeued is one entry requeued as a new task.
type Requeued struct {
	ID     string `json:"id"`
	TaskID string `json:"task_id"`
}

// RequeueFailure is one entry Requeue left in the store, and why.
type RequeueFailure struct {
	ID  string
	Err error
}

// RequeueResult says what Requeue did with each id, in the order given.
type RequeueResult struct {
	Requeued []Requeued
	Failed   []RequeueFailure
}

// lockTTL bounds how long a crashed requeue keeps others off an entry.
const lockTTL = time.Minute

// Requeue enqueues each entry again through enq, as a fresh task, and only
// after that succeeds removes the entry. An entry is left in the store, and
// listed in Failed, when it does not exist (ErrNotFound), has an invalid
// payload (ErrInvalidPayload), is being requeued by another caller at the
// same time (ErrBusy), or enq fails; the other ids are still processed.
//
// The error is nil when every id was requeued; otherwise it joins the
// failures, each naming its id. A crash between the enqueue and the removal
// leaves the entry in place although its task was queued: requeueing is
// at-least-once. Requeue stops early, with ctx's error, when ctx ends.
func (s *Store) Requeue(ctx context.Context, enq Enqueuer, ids ...string) (RequeueResult, error) {
	var res RequeueResult
	var errs []error
	fail := func(id string, err error) {
		res.Failed = append(res.Failed, RequeueFailure{ID: id, Err: err})
		errs = append(errs, err)
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		taskID, err := s.requeueOne(ctx, enq, id)
		if err != nil {
			fail(id, err)
			continue
		}
		res.Requeued = append(res.Requeued, Requeued{ID: id, TaskID: taskID})
	}
	return res, errors.Join(errs...)
}

func (s *Store) requeueOne(ctx context.Context, enq Enqueuer, id string) (string, error) {
	token := randomToken()
	ok, err := s.rdb.SetNX(ctx, s.keyLock(id), token, lockTTL).Result()
	if err != nil {
		return "", fmt.Errorf("dlq: requeue %q: %w", id, err)
	}
	if !ok {
		return "", fmt.Errorf("dlq: requeue %q: %w", id, ErrBusy)
	}
	defer func() {
		// Release only our own lock, even when ctx has ended.
		_ = unlockScript.Run(context.WithoutCancel(ctx), s.rdb, []string{s.keyLock(id)}, token).Err()
	}()
	e, err := s.Get(ctx, id)
	if err != nil {
		return "", err
	}
	if e.Invalid || e.Reason == ReasonInvalidPayload {
		return "", fmt.Errorf("dlq: requeue %q: %w", id, ErrInvalidPayload)
	}
	taskID, err := enq.Requeue(ctx, e.Type, e.Payload, e.Queue)
	if err != nil {
		return "", fmt.Errorf("dlq: requeue %q: %w", id, err)
	}
	// The task is queued: removing the entry must not be skipped because
	// the caller's ctx ended in between.
	if _, err := s.Delete(context.WithoutCancel(ctx), id); err != nil {
		return taskID, fmt.Errorf("dlq: requeued %q as task %s but could not remove the entry: %w", id, taskID, err)
	}
	return taskID, nil
}

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Through requeues an entry as a fresh task through package enqueue:
// the payload is parsed and validated by package tasks, then enqueued with
// the task defaults in the entry's queue (the type's default queue when the
// entry has none) and with NoDedup, because asynq keeps the unique lock of
// the dead-lettered task until its TTL ends.
func Through(client *enqueue.Client) Enqueuer {
	return EnqueuerFunc(func(ctx context.Context, taskType string, payload []byte, queue string) (string, error) {
		p, err := tasks.Parse(taskType, payload)
		if err != nil {
			return "", fmt.Errorf("payload: %w", err)
		}
		opts := []enqueue.Option{enqueue.NoDedup()}
		if queue != "" {
			opts = append(opts, enqueue.Queue(queue))
		}
		ids, err := client.Enqueue(ctx, p, opts...)
		if err != nil {
			return strings.Join(ids, ","), err
		}
		if len(ids) != 1 { // a stored payload is one task: Parse allows at most one call's worth
			return strings.Join(ids, ","), fmt.Errorf("payload became %d tasks, want 1", len(ids))
		}
		return ids[0], nil
	})
}
