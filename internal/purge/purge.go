// Package purge recalls a sender's messages found in the message index,
// as a job: the CLI's timq purge, the HTTP API's POST /v1/purges and the
// dev playground share it.
package purge

import (
	"context"
	"fmt"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/recallbatch"
	"github.com/timq/timq/tasks"
)

// Plan is what a purge would recall.
type Plan struct {
	Sender   string
	Messages []msgindex.Message
	// PerGroup counts the messages by group.
	PerGroup map[string]int
}

// Find plans the purge of q's messages.
func Find(ctx context.Context, ix *msgindex.Index, q msgindex.Query) (Plan, error) {
	ms, err := ix.Find(ctx, q)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Sender: q.Sender, Messages: ms, PerGroup: map[string]int{}}
	for _, m := range ms {
		p.PerGroup[m.GroupID]++
	}
	return p, nil
}

// Start stores the plan's recalls as one job, named "purge SENDER", of
// recalls of up to 10 messages of one group each so that every call is
// full, with reason as each recall's Reason. A plan with no message is an
// error.
func Start(ctx context.Context, c *enqueue.Client, p Plan, reason string) (enqueue.Job, error) {
	if len(p.Messages) == 0 {
		return enqueue.Job{}, fmt.Errorf("purge: no indexed message of %s to recall", p.Sender)
	}
	if len(reason) > tasks.MaxReasonBytes {
		return enqueue.Job{}, fmt.Errorf("purge: the reason is longer than %d bytes", tasks.MaxReasonBytes)
	}
	w, err := c.NewJob(enqueue.JobName("purge " + p.Sender))
	if err != nil {
		return enqueue.Job{}, err
	}
	defer w.Abort(context.WithoutCancel(ctx)) // a no-op once closed
	for _, r := range msgindex.Recalls(p.Messages, recallbatch.MaxPerCall) {
		r.Reason = reason
		if err := w.Add(ctx, r); err != nil {
			return enqueue.Job{}, err
		}
	}
	return w.Close(ctx)
}
