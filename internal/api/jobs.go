package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/timq/timq/internal/bulk"
	"github.com/timq/timq/internal/jobs"
)

type createJobInput struct {
	Name        string `query:"name" maxLength:"200" doc:"The job's name, shown in listings."`
	Priority    int    `query:"priority" minimum:"1" maximum:"100" default:"1" doc:"The job's weight against other running jobs."`
	SkipInvalid bool   `query:"skip_invalid" doc:"Queue the valid lines of a body that has bad ones."`
	DryRun      bool   `query:"dry_run" doc:"Validate and count only; store nothing."`
	Notify      string `query:"notify" maxLength:"2048" doc:"POST the job's summary to this URL when it ends, signed with the workers' notice secret."`
	Retention   string `query:"retention" doc:"How long the summary and failures stay after the end, a Go duration (default 720h)."`
	body        io.Reader
}

// Resolve keeps the request body as a stream: huma does not read it.
func (in *createJobInput) Resolve(ctx huma.Context) []error {
	in.body = ctx.BodyReader()
	return nil
}

// CreatedJob answers a job's creation: the summary of its lines and the
// job (absent for a dry run).
type CreatedJob struct {
	Summary *bulk.Summary `json:"summary"`
	Job     *jobs.Job     `json:"job,omitempty"`
}

type createJobOutput struct {
	Status int
	Body   CreatedJob
}

// tooLarge is the error of a body past its limit.
type tooLarge struct{ limit int64 }

func (e *tooLarge) Error() string { return fmt.Sprintf("the body is larger than %d bytes", e.limit) }

// limitReader fails with *tooLarge past n bytes.
type limitReader struct {
	r    io.Reader
	left int64
	max  int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, &tooLarge{l.max}
	}
	if int64(len(p)) > l.left {
		p = p[:l.left+1] // one more byte tells a body of exactly max from a longer one
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left < 0 {
		return n, &tooLarge{l.max}
	}
	return n, err
}

func (s *Server) createJob(ctx context.Context, in *createJobInput) (*createJobOutput, error) {
	spec := jobs.Spec{Name: in.Name, Weight: max(in.Priority, 1), Notify: in.Notify}
	if in.Notify != "" {
		if err := jobs.CheckNotifyURL(in.Notify); err != nil {
			return nil, storeError("", &validationFailure{location: "query.notify", reason: err.Error()})
		}
	}
	if in.Retention != "" {
		d, err := time.ParseDuration(in.Retention)
		if err != nil || d < time.Second {
			return nil, storeError("", &validationFailure{location: "query.retention", reason: "must be a duration of at least 1s such as 720h", value: in.Retention})
		}
		spec.Retention = d
	}
	body := &limitReader{r: in.body, left: s.cfg.MaxJobBody, max: s.cfg.MaxJobBody}
	opts := bulk.Options{SkipInvalid: in.SkipInvalid, DryRun: in.DryRun}
	if in.DryRun {
		sum, err := bulk.Stream(ctx, body, nil, opts)
		if err = jobBodyError(sum, err); err != nil {
			return nil, err
		}
		return &createJobOutput{Status: 200, Body: CreatedJob{Summary: sum}}, nil
	}
	w, err := s.jobs.Create(spec)
	if err != nil {
		return nil, storeError("job", err)
	}
	defer w.Abort(context.WithoutCancel(ctx)) // a no-op once closed
	sum, err := bulk.Stream(ctx, body, w.Add, opts)
	if err = jobBodyError(sum, err); err != nil {
		return nil, err
	}
	if bulk.Total(sum.Enqueued) == 0 {
		return nil, huma.Error400BadRequest("the body holds no operation", &huma.ErrorDetail{Location: "body", Message: "no operation"})
	}
	j, err := w.Close(ctx)
	if err != nil {
		return nil, storeError("job", err)
	}
	return &createJobOutput{Status: 201, Body: CreatedJob{Summary: sum, Job: &j}}, nil
}

// jobBodyError is the answer to a job body that Stream refused: 400 with
// every rejected line (up to bulk's limit), 413 past the size limit.
func jobBodyError(sum *bulk.Summary, err error) error {
	var tl *tooLarge
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tl):
		return huma.Error413RequestEntityTooLarge(tl.Error())
	case errors.Is(err, bulk.ErrRejected):
		details := make([]error, 0, len(sum.Errors))
		for _, e := range sum.Errors {
			details = append(details, &huma.ErrorDetail{Location: "body[" + strconv.FormatInt(e.Line, 10) + "]." + e.Field, Message: e.Reason})
		}
		return huma.Error400BadRequest(fmt.Sprintf("%d of %d lines rejected; nothing was stored (skip_invalid=true stores the rest)", sum.Rejected, sum.Lines), details...)
	}
	return storeError("job", err)
}

type listJobsInput struct {
	Limit int `query:"limit" minimum:"0" maximum:"1000" default:"100" doc:"The most jobs returned, newest first (0: all)."`
}

// JobList is a page of jobs.
type JobList struct {
	Jobs []jobs.Job `json:"jobs"`
}

type listJobsOutput struct{ Body JobList }

func (s *Server) listJobs(ctx context.Context, in *listJobsInput) (*listJobsOutput, error) {
	js, err := s.jobs.List(ctx, in.Limit)
	if err != nil {
		return nil, storeError("jobs", err)
	}
	return &listJobsOutput{Body: JobList{Jobs: js}}, nil
}

type jobInput struct {
	ID string `path:"id" maxLength:"64"`
}

type jobOutput struct{ Body jobs.Job }

func (s *Server) getJob(ctx context.Context, in *jobInput) (*jobOutput, error) {
	j, err := s.jobs.Get(ctx, in.ID)
	if err != nil {
		return nil, storeError("job "+in.ID, err)
	}
	return &jobOutput{Body: j}, nil
}

// control returns the handler of POST /v1/jobs/{id}/ACTION.
func (s *Server) control(action func(*jobs.Store, context.Context, string) (jobs.Job, error)) func(context.Context, *jobInput) (*jobOutput, error) {
	return func(ctx context.Context, in *jobInput) (*jobOutput, error) {
		j, err := action(s.jobs, ctx, in.ID)
		if err != nil {
			return nil, storeError("job "+in.ID, err)
		}
		return &jobOutput{Body: j}, nil
	}
}

// FailureList is a job's dead-lettered operations.
type FailureList struct {
	Failures []jobs.Failure `json:"failures"`
}

type failuresOutput struct{ Body FailureList }

func (s *Server) jobFailures(ctx context.Context, in *jobInput) (*failuresOutput, error) {
	fs, err := s.jobs.Failures(ctx, in.ID)
	if err != nil {
		return nil, storeError("job "+in.ID, err)
	}
	return &failuresOutput{Body: FailureList{Failures: fs}}, nil
}
