package api

import (
	"context"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/purge"
)

// PurgeRequest selects a sender's indexed messages to recall.
type PurgeRequest struct {
	Sender string    `json:"sender" minLength:"1" maxLength:"128" doc:"The From_Account whose messages to recall."`
	Groups []string  `json:"groups,omitempty" maxItems:"1000" doc:"Only these groups."`
	Topic  string    `json:"topic,omitempty" maxLength:"128" doc:"Only this topic."`
	Since  time.Time `json:"since,omitzero" doc:"Only messages sent at or after this time."`
	Until  time.Time `json:"until,omitzero" doc:"Only messages sent at or before this time."`
	Reason string    `json:"reason,omitempty" maxLength:"200" doc:"The recall reason sent to Tencent."`
	DryRun bool      `json:"dry_run,omitempty" doc:"Count only: recall nothing."`
}

// PurgeResult is a purge's plan and, unless a dry run, its job.
type PurgeResult struct {
	Sender   string         `json:"sender"`
	Messages int            `json:"messages" doc:"The sender's indexed messages selected."`
	PerGroup map[string]int `json:"per_group" doc:"Those messages by group."`
	Job      *jobs.Job      `json:"job,omitempty" doc:"The job recalling them."`
}

type purgeInput struct{ Body PurgeRequest }

type purgeResultOutput struct {
	Status int
	Body   PurgeResult
}

func (s *Server) purge(ctx context.Context, in *purgeInput) (*purgeResultOutput, error) {
	q := msgindex.Query{Sender: in.Body.Sender, Groups: in.Body.Groups, TopicID: in.Body.Topic, Since: in.Body.Since, Until: in.Body.Until}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return nil, huma.Error400BadRequest("until is before since", &huma.ErrorDetail{Location: "body.until", Message: "is before since"})
	}
	plan, err := purge.Find(ctx, s.index, q)
	if err != nil {
		return nil, storeError("message index", err)
	}
	res := PurgeResult{Sender: plan.Sender, Messages: len(plan.Messages), PerGroup: plan.PerGroup}
	if in.Body.DryRun || len(plan.Messages) == 0 {
		return &purgeResultOutput{Status: 200, Body: res}, nil
	}
	j, err := purge.Start(ctx, s.enq, plan, in.Body.Reason)
	if err != nil {
		return nil, storeError("job", err)
	}
	res.Job = &j
	return &purgeResultOutput{Status: 201, Body: res}, nil
}
