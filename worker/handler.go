package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/tasks"
)

// maxThrottlesPerAttempt is how many rate-limit answers one attempt absorbs
// before it hands the task back to asynq as throttled (not a failure). On a
// task's last attempt the handler keeps waiting instead, because asynq
// archives a task on its last attempt whatever the error.
const maxThrottlesPerAttempt = 5

// attempt describes the current try of a task.
type attempt struct {
	taskID  string
	queue   string
	retried int  // retries before this one (0 on the first attempt)
	last    bool // no retry follows this attempt
	// due is when an interactive task was enqueued or scheduled for
	// (tasks.DueAt); zero for job operations and tasks without the header.
	due      time.Time
	taskType string
}

func (w *Worker) attemptOf(ctx context.Context, t *asynq.Task) attempt {
	a := attempt{}
	a.due, _ = tasks.DueAt(t)
	a.taskType = t.Type()
	a.taskID, _ = asynq.GetTaskID(ctx)
	a.queue, _ = asynq.GetQueueName(ctx)
	a.retried, _ = asynq.GetRetryCount(ctx)
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	if !ok || maxRetry > w.cfg.MaxRetry {
		maxRetry = w.cfg.MaxRetry
	}
	a.last = a.retried >= maxRetry
	return a
}

// call makes one paced API call, absorbing rate-limit answers: the endpoint
// pauses for ThrottleDelay and the call is repeated, up to
// maxThrottlesPerAttempt times (without limit on a last attempt), after which
// a *throttledError tells asynq to come back without using an attempt.
func (w *Worker) call(ctx context.Context, ep chatapi.Endpoint, a attempt, fn func(context.Context) error) error {
	pacer := w.pacers[ep]
	throttles := 0
	for {
		if err := w.waitTurn(ctx, pacer, ep, a); err != nil {
			return err
		}
		callStart := time.Now()
		if throttles == 0 {
			w.observeDue(a, callStart)
		}
		err := fn(ctx)
		if w.log.Enabled(ctx, slog.LevelDebug) {
			w.log.Debug("api call", "task_id", a.taskID, "queue", a.queue, "endpoint", ep.Short(), "code", codeOf(err),
				"attempt", a.retried+1, "duration_ms", time.Since(callStart).Milliseconds(), "error", errText(err))
		}
		if chatapi.Classify(err) != chatapi.ClassThrottle || err == nil {
			return err
		}
		w.metrics.RateLimited(ep, codeOf(err))
		pacer.Backoff(w.cfg.ThrottleDelay)
		w.log.Warn("rate-limited by the API", "endpoint", ep.Short(), "code", codeOf(err), "task_id", a.taskID)
		throttles++
		if throttles >= maxThrottlesPerAttempt && !a.last {
			return &throttledError{err: err}
		}
	}
}

// observeDue records an interactive task's enqueue-to-call latency on its
// first attempt's call.
func (w *Worker) observeDue(a attempt, sent time.Time) {
	if a.retried == 0 && !a.due.IsZero() {
		w.metrics.EnqueueToCall(a.taskType, sent.Sub(a.due))
	}
}

func (w *Worker) handleClear(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseClear(t.Payload())
	if err != nil {
		return w.rejectPayload(ctx, t, err)
	}
	a := w.attemptOf(ctx, t)
	start := time.Now()
	err = w.call(ctx, chatapi.EndpointClear, a, func(ctx context.Context) error {
		_, err := w.api.ClearGroupMsg(ctx, &chatapi.ClearGroupMsgRequest{GroupId: p.GroupId, MsgSeq: p.MsgSeq})
		return err
	})
	return w.finish(ctx, t, a, p.GroupId, chatapi.EndpointClear, start, err)
}

func (w *Worker) handleModify(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseModify(t.Payload())
	if err != nil {
		return w.rejectPayload(ctx, t, err)
	}
	a := w.attemptOf(ctx, t)
	start := time.Now()
	err = w.call(ctx, chatapi.EndpointModify, a, func(ctx context.Context) error {
		_, err := w.api.ModifyGroupMsg(ctx, &chatapi.ModifyGroupMsgRequest{
			GroupId: p.GroupId, MsgSeq: p.MsgSeq, MsgBody: p.MsgBody, CloudCustomData: p.CloudCustomData, TopicId: p.TopicId,
		})
		return err
	})
	return w.finish(ctx, t, a, p.GroupId, chatapi.EndpointModify, start, err)
}

// taskResult is what a clear or modify task's result holds.
type taskResult struct {
	Status   string `json:"status"` // "applied"
	Endpoint string `json:"endpoint"`
	Attempt  int    `json:"attempt"`
	At       string `json:"at"`
}

// finish turns the outcome of a clear or modify call into asynq's answer.
func (w *Worker) finish(ctx context.Context, t *asynq.Task, a attempt, groupID string, ep chatapi.Endpoint, start time.Time, err error) error {
	// Made only when something is logged: With formats its attributes at
	// once, which an applied task at info level does not need.
	taskLog := func() *slog.Logger {
		return w.log.With("task_id", a.taskID, "task_type", t.Type(), "queue", a.queue, "group_id", groupID,
			"endpoint", ep.Short(), "attempt", a.retried+1, "duration_ms", time.Since(start).Milliseconds())
	}
	switch decide(err, a.last) {
	case outcomeDone:
		if w.log.Enabled(ctx, slog.LevelDebug) {
			taskLog().Debug("task applied")
		}
		if w.cfg.AppliedResults {
			w.writeAppliedResult(t, ep, a.retried+1)
		}
		return nil
	case outcomeHandBack:
		return err
	case outcomeRetry:
		taskLog().Warn("call failed, will retry", "code", codeOf(err), "error", err)
		return err
	}
	reason := dlq.ReasonPermanent
	if chatapi.Classify(err) != chatapi.ClassPermanent {
		reason = dlq.ReasonRetriesExhausted
	}
	entry := dlq.Entry{
		ID: a.taskID, Type: t.Type(), Queue: a.queue, TaskID: a.taskID, Payload: t.Payload(),
		Code: codeOf(err), Info: infoOf(err), Reason: reason, Attempts: a.retried + 1, GroupId: groupID,
	}
	return w.deadLetter(ctx, taskLog(), err, entry)
}

// deadLetter writes entries to the dead-letter store and returns the error
// that makes asynq archive the task. If the store cannot be written and
// another attempt remains, the task is retried instead, so that no operation
// is archived without its durable record.
func (w *Worker) deadLetter(ctx context.Context, log *slog.Logger, cause error, entries ...dlq.Entry) error {
	var storeErr error
	for try := 0; try < 3; try++ {
		if storeErr = w.addEntries(ctx, entries); storeErr == nil {
			break
		}
		time.Sleep(time.Duration(try+1) * 100 * time.Millisecond)
	}
	for _, e := range entries {
		log.Error("dead-lettered", "dlq_id", e.ID, "code", e.Code, "reason", e.Reason, "info", e.Info)
	}
	if storeErr != nil {
		log.Error("cannot write the dead-letter store", "error", storeErr)
		return fmt.Errorf("dead-letter store unavailable: %w (cause: %v)", storeErr, cause)
	}
	return fmt.Errorf("%s%w: %w", archivedErrPrefix, cause, asynq.SkipRetry)
}

func (w *Worker) addEntries(ctx context.Context, entries []dlq.Entry) error {
	// Write even when ctx was canceled by shutdown: the decision is made.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	now := time.Now().UTC()
	for _, e := range entries {
		if e.FailedAt.IsZero() {
			e.FailedAt = now
		}
		if !json.Valid(e.Payload) || len(e.Payload) > tasks.MaxPayloadBytes {
			e.Payload, e.Invalid = invalidPayload(e.Payload), true
		}
		if err := w.dlq.Add(ctx, e); err != nil {
			return err
		}
		w.metrics.DeadLetterAdded(e.Type, e.Reason)
	}
	return nil
}

// maxInvalidPayloadKept is how much of a payload that cannot be requeued
// (not JSON, or too large) a dead letter keeps, for an operator to read.
const maxInvalidPayloadKept = 16 * 1024

// invalidPayload returns the first maxInvalidPayloadKept bytes of a payload
// as a JSON string.
func invalidPayload(raw []byte) json.RawMessage {
	if len(raw) > maxInvalidPayloadKept {
		raw = raw[:maxInvalidPayloadKept]
	}
	b, _ := json.Marshal(string(raw))
	return b
}

// archivedErrPrefix starts the error of every task the worker archives
// after writing its dead letters; the archive reconciler skips those.
const archivedErrPrefix = "dead-lettered: "

// rejectPayload dead-letters a task whose payload does not parse or validate:
// retrying cannot fix it.
func (w *Worker) rejectPayload(ctx context.Context, t *asynq.Task, perr error) error {
	a := w.attemptOf(ctx, t)
	log := w.log.With("task_id", a.taskID, "task_type", t.Type(), "queue", a.queue, "attempt", a.retried+1)
	entry := dlq.Entry{
		ID: a.taskID, Type: t.Type(), Queue: a.queue, TaskID: a.taskID, Payload: t.Payload(),
		Info: "invalid payload: " + perr.Error(), Reason: dlq.ReasonInvalidPayload, Attempts: a.retried + 1,
	}
	return w.deadLetter(ctx, log, fmt.Errorf("invalid payload: %w", perr), entry)
}

func (w *Worker) writeResult(t *asynq.Task, v any) {
	b, err := json.Marshal(v)
	if err != nil || t.ResultWriter() == nil {
		return
	}
	w.writeResultBytes(t, b)
}

func (w *Worker) writeResultBytes(t *asynq.Task, b []byte) {
	if _, err := t.ResultWriter().Write(b); err != nil {
		w.log.Warn("cannot write task result", "task_type", t.Type(), "error", err)
	}
}

// resultBufs holds the buffers applied results are encoded in; the result
// writer's Redis command has copied the bytes when Write returns.
var resultBufs = sync.Pool{New: func() any { b := make([]byte, 0, 128); return &b }}

// writeAppliedResult writes a clear or modify task's taskResult for
// "applied", encoded as json.Marshal would but without reflection.
func (w *Worker) writeAppliedResult(t *asynq.Task, ep chatapi.Endpoint, attempt int) {
	if t.ResultWriter() == nil {
		return
	}
	bp := resultBufs.Get().(*[]byte)
	b := appendAppliedResult((*bp)[:0], ep.Short(), attempt, time.Now())
	w.writeResultBytes(t, b)
	*bp = b
	resultBufs.Put(bp)
}

// appendAppliedResult appends the JSON of taskResult{Status: "applied",
// Endpoint: endpoint, Attempt: attempt, At: at in UTC, RFC 3339 with
// nanoseconds}. endpoint is one of chatapi's endpoint names, which JSON
// needs no escapes for.
func appendAppliedResult(b []byte, endpoint string, attempt int, at time.Time) []byte {
	b = append(b, `{"status":"applied","endpoint":"`...)
	b = append(b, endpoint...)
	b = append(b, `","attempt":`...)
	b = strconv.AppendInt(b, int64(attempt), 10)
	b = append(b, `,"at":"`...)
	b = at.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// codeOf returns the ErrorCode of an API error, or 0.
func codeOf(err error) int {
	var e *chatapi.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// errText is err's text, or "" for nil (chatapi has stripped secrets).
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// infoOf returns the ErrorInfo of an API error, or the error's text (which
// chatapi has already stripped of secrets).
func infoOf(err error) string {
	var e *chatapi.Error
	if errors.As(err, &e) && e.Code != 0 {
		return e.Info
	}
	if err == nil {
		return ""
	}
	return err.Error()
}
