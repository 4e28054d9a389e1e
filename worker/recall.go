package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/recallbatch"
	"github.com/timq/timq/tasks"
)

// Message statuses in a recall task's result.
const (
	msgRecalled     = "recalled"
	msgRetrying     = "retrying"
	msgDeadLettered = "dead_lettered"
)

// recallMsgResult is one message's line in a recall task's result.
type recallMsgResult struct {
	MsgSeq  uint64 `json:"MsgSeq"`
	RetCode int    `json:"RetCode"`
	Status  string `json:"status"`
	Info    string `json:"info,omitempty"`
}

// recallResult is a recall task's result: one line per message, in the
// task's order.
type recallResult struct {
	Attempt  int               `json:"attempt"`
	Messages []recallMsgResult `json:"messages"`
}

func (w *Worker) handleRecall(ctx context.Context, t *asynq.Task) error {
	p, err := tasks.ParseRecall(t.Payload())
	if err != nil {
		return w.rejectPayload(ctx, t, err)
	}
	a := w.attemptOf(ctx, t)
	start := time.Now()
	// Made only when something is logged (With formats its attributes at
	// once); duration_ms is added after the call.
	var durationMS []any
	taskLog := func() *slog.Logger {
		return w.log.With(append([]any{"task_id", a.taskID, "task_type", t.Type(), "queue", a.queue, "group_id", p.GroupId,
			"endpoint", chatapi.EndpointRecall.Short(), "attempt", a.retried + 1}, durationMS...)...)
	}

	// Messages settled by earlier attempts (recalled or dead-lettered) are
	// not sent again. The first attempt has none and reads nothing.
	settled := map[uint64]recallMsgResult{}
	if a.retried > 0 {
		if settled, err = w.progress.load(ctx, a.taskID); err != nil {
			taskLog().Warn("cannot read recall progress, will retry", "error", err)
			return err
		}
	}
	var pending []uint64
	for _, seq := range p.Seqs() {
		if _, ok := settled[seq]; !ok {
			pending = append(pending, seq)
		}
	}

	// The call is shared with other recalls of the group waiting for a
	// token (package recallbatch); the answer is this task's messages only.
	w.startRecalls.Do(w.recalls.Start)
	codes, sent, callErr := w.recalls.RecallSent(ctx, recallbatch.Key{GroupID: p.GroupId, TopicID: p.TopicId, Reason: p.Reason}, pending, !jobs.IsLane(a.queue))
	if !sent.IsZero() {
		w.observeDue(a, sent)
	}
	if chatapi.Classify(callErr) == chatapi.ClassCanceled || errors.Is(callErr, context.Canceled) {
		return callErr
	}

	// Sort this attempt's messages into recalled, dead-lettered and retrying.
	var retry []uint64
	var dead []dlq.Entry
	fresh := map[uint64]recallMsgResult{}
	for _, seq := range pending {
		r := recallMsgResult{MsgSeq: seq}
		var msgErr error
		if callErr != nil {
			msgErr, r.RetCode, r.Info = callErr, codeOf(callErr), infoOf(callErr)
		} else if code, ok := codes[seq]; !ok {
			msgErr = &chatapi.Error{Endpoint: chatapi.EndpointRecall, Info: "message missing from RecallRetList"}
			r.Info = "message missing from RecallRetList"
		} else if code != 0 {
			r.RetCode = code
			msgErr = &chatapi.Error{Endpoint: chatapi.EndpointRecall, Code: code, Info: "RetCode " + strconv.Itoa(code)}
			r.Info = "RetCode " + strconv.Itoa(code)
		}
		switch decide(msgErr, a.last) {
		case outcomeDone:
			r.Status = msgRecalled
			fresh[seq] = r
		case outcomeRetry:
			r.Status = msgRetrying
			retry = append(retry, seq)
		default:
			r.Status = msgDeadLettered
			fresh[seq] = r
			reason := dlq.ReasonPermanent
			if chatapi.Classify(msgErr) != chatapi.ClassPermanent {
				reason = dlq.ReasonRetriesExhausted
			}
			one := p
			one.MsgSeqList = []tasks.MsgSeqItem{{MsgSeq: seq}}
			payload, _ := json.Marshal(one)
			dead = append(dead, dlq.Entry{
				ID: dlq.RecallEntryID(a.taskID, seq), Type: tasks.TypeRecall, Queue: a.queue, TaskID: a.taskID,
				Payload: payload, Code: r.RetCode, Info: r.Info, Reason: reason, Attempts: a.retried + 1, GroupId: p.GroupId,
			})
		}
	}

	// The result lists every message of the task, settled earlier or now.
	res := recallResult{Attempt: a.retried + 1}
	for _, seq := range p.Seqs() {
		r, ok := settled[seq]
		if !ok {
			if r, ok = fresh[seq]; !ok {
				r = recallMsgResult{MsgSeq: seq, Status: msgRetrying}
			}
		}
		res.Messages = append(res.Messages, r)
	}
	// A recall whose every message is recalled completes, which says as
	// much; the result is written when it tells more (or when asked).
	if w.cfg.AppliedResults || countStatus(res, msgRecalled) != len(res.Messages) {
		w.writeResult(t, res)
	}
	durationMS = []any{"duration_ms", time.Since(start).Milliseconds()}

	if len(dead) > 0 {
		log := taskLog()
		// Dead letters first: if the store is down, the task is retried
		// before its progress says these messages are settled.
		if err := w.addEntries(ctx, dead); err != nil {
			log.Error("cannot write the dead-letter store", "error", err)
			return fmt.Errorf("dead-letter store unavailable: %w", err)
		}
		for _, e := range dead {
			log.Error("dead-lettered", "dlq_id", e.ID, "code", e.Code, "reason", e.Reason, "info", e.Info)
		}
	}
	if len(retry) > 0 {
		log := taskLog()
		if err := w.progress.save(ctx, a.taskID, fresh); err != nil {
			log.Warn("cannot save recall progress", "error", err)
		}
		log.Warn("messages failed, will retry", "msg_seqs", retry, "error", firstErr(callErr, res))
		return fmt.Errorf("recall: %d of %d messages will be retried (%s)", len(retry), len(p.MsgSeqList), describe(res, msgRetrying))
	}
	if a.retried > 0 { // only an earlier attempt can have saved progress
		w.progress.clear(ctx, a.taskID)
	}
	if n := countStatus(res, msgDeadLettered); n > 0 {
		var deadSeqs []uint64
		code := 0
		for _, m := range res.Messages {
			if m.Status == msgDeadLettered {
				deadSeqs = append(deadSeqs, m.MsgSeq)
				code = cmp.Or(code, m.RetCode)
			}
		}
		tallyRecall(ctx, p, deadSeqs, code)
		return fmt.Errorf("%srecall: %d of %d messages failed (%s): %w",
			archivedErrPrefix, n, len(p.MsgSeqList), describe(res, msgDeadLettered), asynq.SkipRetry)
	}
	if w.log.Enabled(ctx, slog.LevelDebug) {
		taskLog().Debug("task applied")
	}
	return nil
}

// sendRecall makes one group_msg_recall call for a batch of messages
// (package recallbatch has already taken the call's token) and returns each
// message's RetCode, or the error of the whole call.
func (w *Worker) sendRecall(ctx context.Context, key recallbatch.Key, seqs []uint64) (map[uint64]int, error) {
	req := &chatapi.GroupMsgRecallRequest{GroupId: key.GroupID, TopicId: key.TopicID, Reason: key.Reason}
	for _, s := range seqs {
		req.MsgSeqList = append(req.MsgSeqList, tasks.MsgSeqItem{MsgSeq: s})
	}
	start := time.Now()
	resp, err := w.api.GroupMsgRecall(ctx, req)
	if w.log.Enabled(ctx, slog.LevelDebug) {
		w.log.Debug("api call", "endpoint", chatapi.EndpointRecall.Short(), "group_id", key.GroupID, "batch_size", len(seqs),
			"code", codeOf(err), "duration_ms", time.Since(start).Milliseconds(), "error", errText(err))
	}
	if err != nil {
		if chatapi.Classify(err) == chatapi.ClassThrottle {
			w.metrics.RateLimited(chatapi.EndpointRecall, codeOf(err))
			w.log.Warn("rate-limited by the API", "endpoint", chatapi.EndpointRecall.Short(), "code", codeOf(err))
		}
		return nil, err
	}
	codes := make(map[uint64]int, len(resp.RecallRetList))
	for _, r := range resp.RecallRetList {
		codes[r.MsgSeq] = r.RetCode
	}
	return codes, nil
}

func countStatus(res recallResult, status string) int {
	n := 0
	for _, m := range res.Messages {
		if m.Status == status {
			n++
		}
	}
	return n
}

// describe lists "seq 5: RetCode 10030" for the messages of one status.
func describe(res recallResult, status string) string {
	var parts []string
	for _, m := range res.Messages {
		if m.Status == status {
			parts = append(parts, fmt.Sprintf("MsgSeq %d: %s", m.MsgSeq, m.Info))
		}
	}
	return strings.Join(parts, "; ")
}

func firstErr(err error, res recallResult) string {
	if err != nil {
		return err.Error()
	}
	return describe(res, msgRetrying)
}

// recallProgress keeps, between the attempts of one recall task, the
// messages already settled, so a retry sends only the rest. It is one Redis
// hash per task with a TTL, written only when a retry follows.
type recallProgress struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

func progressKey(taskID string) string { return "timq:recall-progress:{" + taskID + "}" }

func (rp *recallProgress) load(ctx context.Context, taskID string) (map[uint64]recallMsgResult, error) {
	vals, err := rp.rdb.HGetAll(ctx, progressKey(taskID)).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]recallMsgResult, len(vals))
	for k, v := range vals {
		seq, err := strconv.ParseUint(k, 10, 64)
		if err != nil {
			continue
		}
		var r recallMsgResult
		if json.Unmarshal([]byte(v), &r) == nil {
			out[seq] = r
		}
	}
	return out, nil
}

func (rp *recallProgress) save(ctx context.Context, taskID string, settled map[uint64]recallMsgResult) error {
	if len(settled) == 0 {
		return nil
	}
	key := progressKey(taskID)
	seqs := make([]uint64, 0, len(settled))
	for s := range settled {
		seqs = append(seqs, s)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	args := make([]any, 0, 2*len(seqs))
	for _, s := range seqs {
		b, _ := json.Marshal(settled[s])
		args = append(args, strconv.FormatUint(s, 10), string(b))
	}
	_, err := rp.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, key, args...)
		pipe.Expire(ctx, key, rp.ttl)
		return nil
	})
	return err
}

func (rp *recallProgress) clear(ctx context.Context, taskID string) {
	_ = rp.rdb.Del(context.WithoutCancel(ctx), progressKey(taskID)).Err()
}
