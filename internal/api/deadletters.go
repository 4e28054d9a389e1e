package api

import (
	"context"
	"errors"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/jobs"
)

type listDeadInput struct {
	Code   int    `query:"code" minimum:"0" doc:"Only entries with this last ErrorCode."`
	Job    string `query:"job" maxLength:"64" doc:"Only entries of this job's operations."`
	Limit  int    `query:"limit" minimum:"1" maximum:"1000" default:"100"`
	Offset int    `query:"offset" minimum:"0" doc:"Skip this many entries, oldest first."`
}

// DeadLetterList is a page of dead letters, oldest first.
type DeadLetterList struct {
	Total   int64       `json:"total" doc:"Entries in the store, all codes."`
	Entries []dlq.Entry `json:"entries"`
}

type listDeadOutput struct{ Body DeadLetterList }

func (s *Server) listDeadLetters(ctx context.Context, in *listDeadInput) (*listDeadOutput, error) {
	total, err := s.dlq.Count(ctx)
	if err != nil {
		return nil, storeError("dead letters", err)
	}
	out := DeadLetterList{Total: total, Entries: []dlq.Entry{}}
	if in.Job == "" {
		es, err := s.dlq.List(ctx, dlq.ListOptions{Offset: in.Offset, Limit: in.Limit, Code: in.Code})
		if err != nil {
			return nil, storeError("dead letters", err)
		}
		out.Entries = append(out.Entries, es...)
		return &listDeadOutput{Body: out}, nil
	}
	if err := jobs.CheckID(in.Job); err != nil {
		return nil, storeError("", &validationFailure{location: "query.job", reason: err.Error(), value: in.Job})
	}
	// A job's entries are those of its lane tasks (job:ID:...): filtered
	// from the store a page at a time.
	prefix := "job:" + in.Job + ":"
	skipped := 0
	for from := 0; len(out.Entries) < in.Limit; from += 1000 {
		es, err := s.dlq.List(ctx, dlq.ListOptions{Offset: from, Limit: 1000, Code: in.Code})
		if err != nil {
			return nil, storeError("dead letters", err)
		}
		for _, e := range es {
			if !strings.HasPrefix(e.TaskID, prefix) {
				continue
			}
			if skipped < in.Offset {
				skipped++
				continue
			}
			if len(out.Entries) < in.Limit {
				out.Entries = append(out.Entries, e)
			}
		}
		if len(es) < 1000 {
			break
		}
	}
	return &listDeadOutput{Body: out}, nil
}

type deadInput struct {
	ID string `path:"id" maxLength:"300"`
}

type deadOutput struct{ Body dlq.Entry }

func (s *Server) getDeadLetter(ctx context.Context, in *deadInput) (*deadOutput, error) {
	e, err := s.dlq.Get(ctx, in.ID)
	if err != nil {
		return nil, storeError("dead letter "+in.ID, err)
	}
	return &deadOutput{Body: e}, nil
}

// Requeued answers a requeue: the new task's ID.
type Requeued struct {
	ID     string `json:"id" doc:"The dead letter, now removed."`
	TaskID string `json:"task_id" doc:"The task it became."`
}

type requeueOutput struct{ Body Requeued }

func (s *Server) requeueDeadLetter(ctx context.Context, in *deadInput) (*requeueOutput, error) {
	res, err := s.dlq.Requeue(ctx, dlq.Through(s.enq), in.ID)
	if len(res.Requeued) == 1 {
		return &requeueOutput{Body: Requeued{ID: in.ID, TaskID: res.Requeued[0].TaskID}}, nil
	}
	if len(res.Failed) == 1 {
		err = res.Failed[0].Err
	}
	switch {
	case err == nil:
		return nil, huma.Error500InternalServerError("the requeue reported nothing")
	case errors.Is(err, dlq.ErrBusy), errors.Is(err, dlq.ErrInvalidPayload):
		return nil, huma.Error409Conflict(err.Error())
	}
	return nil, storeError("dead letter "+in.ID, err)
}

type purgeOutput struct{}

func (s *Server) purgeDeadLetter(ctx context.Context, in *deadInput) (*purgeOutput, error) {
	n, err := s.dlq.Delete(ctx, in.ID)
	if err != nil {
		return nil, storeError("dead letter "+in.ID, err)
	}
	if n == 0 {
		return nil, huma.Error404NotFound("dead letter " + in.ID + " not found")
	}
	return &purgeOutput{}, nil
}
