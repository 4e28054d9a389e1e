package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/bulk"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/tasks"
)

// validationFailure is a bad field of a request: a 400 naming it.
type validationFailure struct {
	location string // "body.MsgSeqList[1].MsgSeq", "query.delay"
	reason   string
	value    any
}

func (v *validationFailure) Error() string { return v.location + ": " + v.reason }

func (v *validationFailure) problem() huma.StatusError {
	field := strings.TrimPrefix(strings.TrimPrefix(v.location, "body."), "query.")
	return huma.Error400BadRequest(field+": "+v.reason, &huma.ErrorDetail{Message: v.reason, Location: v.location, Value: v.value})
}

// bodyFailure is a *tasks.ValidationError of a body as a validationFailure.
func bodyFailure(err error) error {
	var ve *tasks.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	loc := "body"
	if ve.Field != "JSON" && ve.Field != "payload" {
		loc += "." + ve.Field
	}
	return &validationFailure{location: loc, reason: ve.Reason}
}

type enqueueInput struct {
	IdempotencyKey string `header:"Idempotency-Key" maxLength:"255" doc:"Makes the request safe to retry: the same key within 24 hours answers the first result and queues nothing."`
	Delay          string `query:"delay" doc:"Run no sooner than this long from now, a Go duration such as 30s or 5m."`
	ProcessAt      string `query:"process_at" format:"date-time" doc:"Run no sooner than this RFC 3339 time."`
	MaxRetry       string `query:"max_retry" pattern:"^[0-9]+$" doc:"Most retries before the operation is dead-lettered (0 to 1000; default 10)."`
	RawBody        []byte
}

// EnqueueResult answers an enqueue.
type EnqueueResult struct {
	TaskIDs   []string `json:"task_ids" doc:"The IDs of the tasks queued: one, or one per 10 messages of a recall."`
	Duplicate bool     `json:"duplicate" doc:"An identical clear or modify was already waiting, so nothing was queued."`
}

type enqueueOutput struct {
	Status   int
	Replayed string `header:"Idempotent-Replayed" doc:"true when the answer is the stored one of an earlier request with the same Idempotency-Key."`
	Body     EnqueueResult
}

// options reads the enqueue options of in.
func (in *enqueueInput) options() ([]enqueue.Option, error) {
	var opts []enqueue.Option
	if in.Delay != "" {
		d, err := time.ParseDuration(in.Delay)
		if err != nil || d < 0 {
			return nil, &validationFailure{location: "query.delay", reason: "must be a duration of at least 0 such as 30s", value: in.Delay}
		}
		opts = append(opts, enqueue.Delay(d))
	}
	if in.ProcessAt != "" {
		t, err := time.Parse(time.RFC3339, in.ProcessAt)
		if err != nil {
			return nil, &validationFailure{location: "query.process_at", reason: "must be an RFC 3339 time such as 2026-01-02T15:04:05Z", value: in.ProcessAt}
		}
		opts = append(opts, enqueue.ProcessAt(t))
	}
	if in.MaxRetry != "" {
		n, err := strconv.Atoi(in.MaxRetry)
		if err != nil || n < 0 || n > tasks.MaxRetryLimit {
			return nil, &validationFailure{location: "query.max_retry", reason: fmt.Sprintf("must be from 0 to %d", tasks.MaxRetryLimit), value: in.MaxRetry}
		}
		opts = append(opts, enqueue.MaxRetry(n))
	}
	return opts, nil
}

// enqueueHandler returns the handler of POST /v1/{op}.
func (s *Server) enqueueHandler(op string) func(context.Context, *enqueueInput) (*enqueueOutput, error) {
	return func(ctx context.Context, in *enqueueInput) (*enqueueOutput, error) {
		opts, err := in.options()
		if err != nil {
			return nil, storeError("", err)
		}
		parts, err := bulk.ParseBody(op, in.RawBody)
		if err != nil {
			return nil, storeError("", bodyFailure(err))
		}
		run := func() (int, EnqueueResult, error) {
			res := EnqueueResult{TaskIDs: []string{}}
			for _, p := range parts {
				ids, err := s.enq.Enqueue(ctx, p, opts...)
				res.TaskIDs = append(res.TaskIDs, ids...)
				if errors.Is(err, enqueue.ErrDuplicate) {
					res.Duplicate = true
					continue
				}
				if err != nil {
					return 0, res, err
				}
			}
			if len(res.TaskIDs) == 0 {
				return http.StatusOK, res, nil
			}
			return http.StatusAccepted, res, nil
		}
		if in.IdempotencyKey == "" {
			status, res, err := run()
			if err != nil {
				return nil, storeError("enqueue", err)
			}
			return &enqueueOutput{Status: status, Body: res}, nil
		}
		return s.idempotent(ctx, in.IdempotencyKey, op, in, run)
	}
}

// stored is an answer kept for its Idempotency-Key.
type stored struct {
	Fingerprint string        `json:"fp"`
	Status      int           `json:"status"`
	Result      EnqueueResult `json:"result"`
}

const idemPending = "pending:"

// idempotent runs run at most once per key: it claims the key (SET NX),
// runs, and stores the answer under the key for IdempotencyTTL; a request
// with the key finds the answer and gets it again, marked replayed. The
// key is stored hashed, and with a fingerprint of the request, so that a
// key reused for another request is refused rather than answered wrongly.
func (s *Server) idempotent(ctx context.Context, key, op string, in *enqueueInput, run func() (int, EnqueueResult, error)) (*enqueueOutput, error) {
	h := sha256.Sum256([]byte(key))
	rkey := "timq:api:idempotency:" + hex.EncodeToString(h[:])
	fpSum := sha256.Sum256([]byte(op + "\x00" + in.Delay + "\x00" + in.ProcessAt + "\x00" + in.MaxRetry + "\x00" + string(in.RawBody)))
	fp := hex.EncodeToString(fpSum[:])
	claimed, err := s.rdb.SetNX(ctx, rkey, idemPending+fp, s.cfg.IdempotencyTTL).Result()
	if err != nil {
		return nil, storeError("idempotency key", err)
	}
	if !claimed {
		v, err := s.rdb.Get(ctx, rkey).Result()
		if errors.Is(err, redis.Nil) {
			return nil, huma.Error409Conflict("the request with this Idempotency-Key has just failed; send it again")
		}
		if err != nil {
			return nil, storeError("idempotency key", err)
		}
		if strings.HasPrefix(v, idemPending) {
			return nil, huma.Error409Conflict("a request with this Idempotency-Key is in progress; try again shortly")
		}
		var st stored
		if err := json.Unmarshal([]byte(v), &st); err != nil {
			return nil, huma.Error500InternalServerError("the stored answer of this Idempotency-Key is unreadable")
		}
		if st.Fingerprint != fp {
			return nil, huma.Error409Conflict("this Idempotency-Key was used for another request")
		}
		return &enqueueOutput{Status: st.Status, Replayed: "true", Body: st.Result}, nil
	}
	status, res, err := run()
	if err != nil {
		// Nothing or part of it was queued: free the key so that a retry
		// runs again (the operations are idempotent in Tencent's API).
		_ = s.rdb.Del(context.WithoutCancel(ctx), rkey).Err()
		return nil, storeError("enqueue", err)
	}
	b, _ := json.Marshal(stored{Fingerprint: fp, Status: status, Result: res})
	if err := s.rdb.SetArgs(context.WithoutCancel(ctx), rkey, b, redis.SetArgs{KeepTTL: true, Mode: "XX"}).Err(); err != nil && !errors.Is(err, redis.Nil) {
		s.log.Warn("cannot store an idempotent answer", "error", err)
	}
	return &enqueueOutput{Status: status, Body: res}, nil
}

// errTaskNotFound is GET /v1/tasks/{id} of an unknown task.
var errTaskNotFound = errors.New("task not found")

// TaskStatus is a task's state as asynq holds it.
type TaskStatus struct {
	ID            string          `json:"id"`
	Type          string          `json:"type"`
	Queue         string          `json:"queue"`
	State         string          `json:"state" enum:"pending,active,scheduled,retry,archived,completed,aggregating,dead_lettered" doc:"asynq's state; dead_lettered once the task left asynq for the dead-letter store."`
	Retried       int             `json:"retried" doc:"Attempts made before the current one."`
	MaxRetry      int             `json:"max_retry"`
	LastError     string          `json:"last_error,omitempty"`
	LastCode      int             `json:"last_code,omitempty" doc:"The last ErrorCode (or RetCode) of the API, when the task was dead-lettered."`
	LastFailedAt  *time.Time      `json:"last_failed_at,omitempty"`
	NextProcessAt *time.Time      `json:"next_process_at,omitempty"`
	CompletedAt   *time.Time      `json:"completed_at,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty" doc:"The operation, Tencent's request body."`
	Result        json.RawMessage `json:"result,omitempty" doc:"What the worker wrote: for a recall, each message's status."`
}

type taskInput struct {
	ID string `path:"id" maxLength:"200"`
}

type taskOutput struct{ Body TaskStatus }

func (s *Server) getTask(ctx context.Context, in *taskInput) (*taskOutput, error) {
	for _, q := range s.queues {
		info, err := s.insp.GetTaskInfo(q, in.ID)
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			continue
		}
		if err != nil {
			return nil, storeError("task", err)
		}
		return &taskOutput{Body: taskStatus(info)}, nil
	}
	if e, err := s.dlq.Get(ctx, in.ID); err == nil {
		failed := e.FailedAt
		return &taskOutput{Body: TaskStatus{ID: in.ID, Type: e.Type, Queue: e.Queue, State: "dead_lettered", Retried: max(e.Attempts-1, 0),
			LastError: e.Info, LastCode: e.Code, LastFailedAt: &failed, Payload: e.Payload}}, nil
	}
	return nil, storeError("task "+in.ID, errTaskNotFound)
}

func taskStatus(info *asynq.TaskInfo) TaskStatus {
	t := TaskStatus{ID: info.ID, Type: info.Type, Queue: info.Queue, State: info.State.String(), Retried: info.Retried,
		MaxRetry: info.MaxRetry, LastError: info.LastErr}
	at := func(v time.Time) *time.Time {
		if v.IsZero() {
			return nil
		}
		v = v.UTC()
		return &v
	}
	t.LastFailedAt, t.NextProcessAt, t.CompletedAt = at(info.LastFailedAt), at(info.NextProcessAt), at(info.CompletedAt)
	if json.Valid(info.Payload) {
		t.Payload = info.Payload
	}
	if len(info.Result) > 0 && json.Valid(info.Result) {
		t.Result = info.Result
	}
	return t
}

// taskQueues lists the queues a task of timq can be in.
func taskQueues() []string {
	qs := tasks.Queues()
	for _, typ := range tasks.Types() {
		qs = append(qs, jobs.LaneQueue(typ))
	}
	return qs
}
