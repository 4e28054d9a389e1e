// Package enqueue is the Go API application backends use to queue timq
// operations: clear a group's history, recall messages, modify a message.
// Workers (timq worker) run the queued tasks against the Tencent Cloud Chat
// REST API at its rate limit, retrying and dead-lettering as needed.
//
// Every call validates the whole request first and enqueues nothing from an
// invalid one; its error wraps a *tasks.ValidationError naming the field in
// the caller's terms (for example MsgSeqList[13].MsgSeq), found with
// errors.As. A call returns the IDs of the tasks it enqueued.
//
// # Recalls longer than ten messages
//
// The API recalls at most tasks.MaxRecallPerTask (10) messages per call, so
// a longer recall becomes several tasks of at most ten messages each, in the
// order of the caller's list (tasks.SplitRecall). They run independently.
//
// # De-duplication
//
// By default an identical clear or modify (same queue, type and payload)
// is not enqueued twice while the first one has not completed: the call
// returns an error satisfying errors.Is(err, ErrDuplicate). This uses
// asynq's unique lock (asynq.Unique), whose rules are:
//
//   - the lock is taken when the task is enqueued and released when the
//     task completes successfully (or is deleted);
//   - it is kept while the task waits, runs and is retried;
//   - it is kept after the task is dead-lettered (archived), until its TTL
//     ends (tasks.DefaultUniqueTTL unless Dedup says otherwise). That is why
//     dead-letter requeue enqueues with NoDedup.
//
// Recalls are not de-duplicated by default: recalling a message twice does
// no harm, and a caller's recall lists rarely repeat exactly.
//
// # Durability across a failover
//
// Redis replicates asynchronously, so by default a task the call reported
// as queued can be lost when a Sentinel or Cluster failover promotes a
// replica that had not received it yet. A Client made with
// New(conn, ConfirmReplicas(n, timeout)) returns only once n replicas hold
// each task, at the cost of two more round trips per call; see
// ConfirmReplicas. With TaskID, a call that failed can be repeated without
// queuing the operation twice.
package enqueue

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/tasks"
)

// ErrDuplicate is matched (with errors.Is) by the error returned when an
// identical task is already queued and de-duplication is on. The error also
// matches asynq.ErrDuplicateTask.
var ErrDuplicate = errors.New("an identical task is already queued")

// Client enqueues timq operations. It is safe for concurrent use.
type Client struct {
	err error // a bad conn given to New: every call returns it
	ac  *asynq.Client
	rdb redis.UniversalClient // asynq's connection, when New made it
	// insp reads tasks back on rdb, when New made it (see ownWrite).
	insp *asynq.Inspector
	cfg  clientConfig
	now  func() time.Time

	fmu     sync.Mutex
	fencers map[string]*fencer // by queue; see ConfirmReplicas
	rounds  sync.WaitGroup     // running fencer goroutines
}

// New returns a Client with a Redis connection of its own on conn; Close
// closes it. With no options a call returns once the Redis primary has
// its tasks; ConfirmReplicas makes it wait for replicas too.
func New(conn asynq.RedisConnOpt, opts ...ClientOption) *Client {
	var cfg clientConfig
	for _, o := range opts {
		if o != nil {
			o(&cfg)
		}
	}
	if conn == nil || isNilPointer(conn) {
		return &Client{err: errors.New("enqueue: New: no Redis connection option (nil)")}
	}
	rdb, ok := conn.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return &Client{err: fmt.Errorf("enqueue: New: unsupported Redis connection option %T", conn)}
	}
	return &Client{
		ac:      asynq.NewClientFromRedisClient(rdb),
		rdb:     rdb,
		insp:    asynq.NewInspectorFromRedisClient(rdb),
		cfg:     cfg,
		now:     time.Now,
		fencers: map[string]*fencer{},
	}
}

// NewFromAsynq returns a Client that enqueues through c. Close does not
// close c: its owner does. It cannot confirm replicas (ConfirmReplicas
// needs New).
func NewFromAsynq(c *asynq.Client) *Client {
	return &Client{ac: c, now: time.Now}
}

// Close releases the Redis connection of a Client made by New, after any
// confirmation round still running (for a call whose context ended) is
// over; it does nothing for one made by NewFromAsynq. Calls must not be
// made during or after Close.
func (c *Client) Close() error {
	if c.err != nil || c.rdb == nil {
		return nil
	}
	c.rounds.Wait()
	return c.rdb.Close()
}

// Clear queues one clear_group_msg. It returns the task ID, or an error
// wrapping a *tasks.ValidationError, ErrDuplicate, ErrNotConfirmed (with
// ConfirmReplicas), or Redis's error.
func (c *Client) Clear(ctx context.Context, p tasks.Clear, opts ...Option) (string, error) {
	return one(c.Enqueue(ctx, p, opts...))
}

// Modify queues one modify_group_msg. It returns the task ID, or an error
// wrapping a *tasks.ValidationError, ErrDuplicate, ErrNotConfirmed (with
// ConfirmReplicas), or Redis's error.
func (c *Client) Modify(ctx context.Context, p tasks.Modify, opts ...Option) (string, error) {
	return one(c.Enqueue(ctx, p, opts...))
}

// Recall queues the recall of any number of messages (at least one) as
// tasks of at most tasks.MaxRecallPerTask messages, in list order, and
// returns their IDs in that order. The whole list is validated first.
func (c *Client) Recall(ctx context.Context, p tasks.Recall, opts ...Option) ([]string, error) {
	return c.Enqueue(ctx, p, opts...)
}

func one(ids []string, err error) (string, error) {
	if len(ids) == 0 {
		return "", err
	}
	return ids[0], err
}

// Enqueue queues any payload (tasks.Clear, tasks.Recall, tasks.Modify or a
// pointer to one) as the tasks Split makes of it and returns their IDs in
// order.
//
// Nothing is enqueued when the payload or an option is invalid. When
// de-duplication refuses some of the tasks, the others are still enqueued
// and the error matches ErrDuplicate. A task whose ID (TaskID) is already
// queued is not enqueued again and counts as queued. When Redis fails part
// way, the IDs of the tasks already enqueued are returned with the error.
//
// On a Client made with ConfirmReplicas, Redis errors are retried until the
// task is confirmed on the replicas or the confirmation timeout ends; then
// the error matches ErrNotConfirmed and the IDs returned are those of the
// tasks that may be queued (all but the duplicates).
func (c *Client) Enqueue(ctx context.Context, p tasks.Payload, opts ...Option) ([]string, error) {
	if c.err != nil {
		return nil, c.err
	}
	s, err := newSettings(opts)
	if err != nil {
		return nil, err
	}
	parts, err := Split(p)
	if err != nil {
		return nil, fmt.Errorf("enqueue %s: %w", kind(p), err)
	}
	taskType := parts[0].TaskType()
	now := c.now()
	aopts := s.asynqOptions(taskType, now)
	headers := map[string]string{tasks.EnqueuedHeader: strconv.FormatInt(s.due(now).UnixMilli(), 10)}
	queue := s.queue
	if queue == "" {
		queue = parts[0].DefaultQueue()
	}
	ids := taskIDs(s.taskID, len(parts))
	built := make([]*asynq.Task, len(parts))
	for i, part := range parts {
		t, err := tasks.NewTaskWithHeaders(part, headers, append(slices.Clip(aopts), asynq.TaskID(ids[i]))...)
		if err != nil {
			return nil, fmt.Errorf("enqueue %s: %w", kind(p), err)
		}
		if n := len(t.Payload()); n > tasks.MaxPayloadBytes {
			return nil, fmt.Errorf("enqueue %s: %w", kind(p), &tasks.ValidationError{
				Field:  "payload",
				Reason: fmt.Sprintf("encodes to %d bytes, more than the %d a worker accepts", n, tasks.MaxPayloadBytes),
			})
		}
		built[i] = t
	}
	if c.cfg.replicas > 0 && c.rdb != nil {
		return c.enqueueConfirmed(ctx, "enqueue "+kind(p), queue, built, ids, s.taskID != "")
	}
	queued := make([]string, 0, len(built))
	dups := 0
	for i, t := range built {
		_, err := c.ac.EnqueueContext(ctx, t)
		switch {
		case errors.Is(err, asynq.ErrDuplicateTask) && c.ownWrite(ctx, queue, ids[i]):
			queued = append(queued, ids[i]) // a retry of our own write
		case errors.Is(err, asynq.ErrDuplicateTask):
			dups++
		case errors.Is(err, asynq.ErrTaskIDConflict):
			queued = append(queued, ids[i]) // queued before (TaskID)
		case err != nil:
			return queued, fmt.Errorf("enqueue %s: task %d of %d: %w", kind(p), i+1, len(built), err)
		default:
			queued = append(queued, ids[i])
		}
	}
	ids = queued
	if dups > 0 {
		what := "enqueue " + kind(p)
		if len(built) > 1 {
			what += fmt.Sprintf(": %d of %d tasks", dups, len(built))
		}
		return ids, &duplicateError{what: what}
	}
	return ids, nil
}

// ownWrite reports whether the task refused as a duplicate is in fact the
// one this call wrote. go-redis retries a command whose answer was lost (a
// Redis stall past the read timeout); when the first try went through, the
// retry finds the unique lock that the first try took and is refused as a
// duplicate of itself. The task's ID is fresh for this call, so finding it
// in the queue proves the write was ours. It costs one read, on a duplicate
// only.
func (c *Client) ownWrite(ctx context.Context, queue, id string) bool {
	if c.insp == nil || ctx.Err() != nil {
		return false
	}
	_, err := c.insp.GetTaskInfo(queue, id)
	return err == nil
}

// duplicateError matches both ErrDuplicate and asynq.ErrDuplicateTask.
type duplicateError struct{ what string }

func (e *duplicateError) Error() string   { return e.what + ": " + ErrDuplicate.Error() }
func (e *duplicateError) Unwrap() []error { return []error{ErrDuplicate, asynq.ErrDuplicateTask} }

// kind returns "clear", "recall" or "modify" for error messages.
// It never calls a method of p, which may be a nil pointer.
func kind(p tasks.Payload) string {
	switch p.(type) {
	case tasks.Clear, *tasks.Clear:
		return "clear"
	case tasks.Recall, *tasks.Recall:
		return "recall"
	case tasks.Modify, *tasks.Modify:
		return "modify"
	}
	return "operation"
}

// Split validates p and returns the payloads of the tasks it becomes, as
// values: p itself, or for a recall of more than tasks.MaxRecallPerTask
// messages, recalls of at most that many in list order. Validation covers
// the whole payload, so a recall's errors name the index in the caller's
// list and a message repeated in two parts is refused. The error is a
// *tasks.ValidationError.
func Split(p tasks.Payload) ([]tasks.Payload, error) {
	switch v := p.(type) {
	case tasks.Clear:
		return single(v)
	case *tasks.Clear:
		if v != nil {
			return single(*v)
		}
	case tasks.Modify:
		return single(v)
	case *tasks.Modify:
		if v != nil {
			return single(*v)
		}
	case tasks.Recall:
		return splitRecall(v)
	case *tasks.Recall:
		if v != nil {
			return splitRecall(*v)
		}
	default:
		if p != nil {
			return nil, &tasks.ValidationError{Field: "payload", Reason: fmt.Sprintf("has unknown type %T", p)}
		}
	}
	return nil, &tasks.ValidationError{Field: "payload", Reason: "is nil"}
}

func single(p tasks.Payload) ([]tasks.Payload, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return []tasks.Payload{p}, nil
}

// listIndex matches an index into MsgSeqList in a field name or reason.
var listIndex = regexp.MustCompile(`MsgSeqList\[(\d+)\]`)

// splitRecall validates each part as tasks does, with indexes moved from the
// part's list to the caller's, and refuses a message repeated across parts.
func splitRecall(r tasks.Recall) ([]tasks.Payload, error) {
	if len(r.MsgSeqList) <= tasks.MaxRecallPerTask {
		return single(r)
	}
	parts := tasks.SplitRecall(r)
	out := make([]tasks.Payload, len(parts))
	seen := make(map[uint64]int, len(r.MsgSeqList))
	offset := 0
	for i, part := range parts {
		if err := part.Validate(); err != nil {
			return nil, shiftIndexes(err, offset)
		}
		for j, m := range part.MsgSeqList {
			if k, dup := seen[m.MsgSeq]; dup {
				return nil, &tasks.ValidationError{
					Field:  fmt.Sprintf("MsgSeqList[%d].MsgSeq", offset+j),
					Reason: fmt.Sprintf("repeats MsgSeqList[%d] (%d)", k, m.MsgSeq),
				}
			}
			seen[m.MsgSeq] = offset + j
		}
		out[i] = part
		offset += len(part.MsgSeqList)
	}
	return out, nil
}

// shiftIndexes rewrites the MsgSeqList indexes of a part's validation error
// so they count from the start of the caller's list.
func shiftIndexes(err error, offset int) error {
	var ve *tasks.ValidationError
	if !errors.As(err, &ve) || offset == 0 {
		return err
	}
	shift := func(s string) string {
		return listIndex.ReplaceAllStringFunc(s, func(m string) string {
			n, convErr := strconv.Atoi(listIndex.FindStringSubmatch(m)[1])
			if convErr != nil {
				return m
			}
			return "MsgSeqList[" + strconv.Itoa(n+offset) + "]"
		})
	}
	return &tasks.ValidationError{Field: shift(ve.Field), Reason: shift(ve.Reason)}
}

// isNilPointer reports whether conn holds a nil pointer, which asynq would
// dereference.
func isNilPointer(conn asynq.RedisConnOpt) bool {
	v := reflect.ValueOf(conn)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
