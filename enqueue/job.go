package enqueue

import (
	"context"
	"errors"
	"time"

	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/tasks"
)

// Job is a bulk job's summary: its ID, state and exact counts.
type Job = jobs.Job

// JobCounts are a job's operation counts (see Job).
type JobCounts = jobs.Counts

// JobFailure is one dead-lettered operation of a job.
type JobFailure = jobs.Failure

// Job states.
const (
	JobQueued    = jobs.StateQueued
	JobRunning   = jobs.StateRunning
	JobPaused    = jobs.StatePaused
	JobCancelled = jobs.StateCancelled
	JobDone      = jobs.StateDone
)

// JobWriter streams a new job's operations into Redis. Nothing runs until
// Close; a JobWriter abandoned without Close should be Aborted, which
// deletes what it stored.
type JobWriter struct {
	w *jobs.Writer
}

// JobOption configures a new job.
type JobOption func(*jobConfig)

type jobConfig = jobs.Spec

// JobName gives the job a name to tell it by in `timq jobs ls`.
func JobName(name string) JobOption { return func(c *jobConfig) { c.Name = name } }

// JobWeight sets the job's share of the job lane against other running
// jobs (default 1): a job of weight 2 gets twice the calls of one of weight 1.
func JobWeight(w int) JobOption { return func(c *jobConfig) { c.Weight = w } }

// JobRetention sets how long the job's summary and failures stay in Redis
// after it ends (default 30 days; at least a second).
func JobRetention(d time.Duration) JobOption { return func(c *jobConfig) { c.Retention = d } }

// JobNotify makes the workers POST the job's summary to url (http or
// https) when it ends, signed with their notice secret in the
// Timq-Signature header and retried with backoff while the receiver fails
// (see VerifyNotice). The URL is stored with the job, so it must not carry
// user information.
func JobNotify(url string) JobOption { return func(c *jobConfig) { c.Notify = url } }

// JobNotice is the state of a job's completion notice (Job.Notice).
type JobNotice = jobs.Notice

// JobNoticeBody is the JSON a completion notice POSTs.
type JobNoticeBody = jobs.NoticeBody

// NewJob starts a job. Its operations run in the job lane: after every
// operation enqueued one by one, sharing what those leave with the other
// running jobs by weight. The job is visible to workers once Close returns.
func (c *Client) NewJob(opts ...JobOption) (*JobWriter, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.rdb == nil {
		return nil, errors.New("enqueue: jobs need a Client made by New")
	}
	cfg := jobConfig{Weight: 1, Replicas: c.cfg.replicas, ConfirmTimeout: c.cfg.timeout}
	for _, o := range opts {
		o(&cfg)
	}
	w, err := jobs.NewStore(c.rdb, 0).Create(cfg)
	if err != nil {
		return nil, err
	}
	return &JobWriter{w: w}, nil
}

// ID returns the job's ID.
func (j *JobWriter) ID() string { return j.w.ID() }

// Add validates p and appends it to the job; a recall of more than
// tasks.MaxRecallPerTask messages becomes several operations, as Enqueue
// makes several tasks.
func (j *JobWriter) Add(ctx context.Context, p tasks.Payload) error {
	parts, err := Split(p)
	if err != nil {
		return err
	}
	for _, part := range parts {
		if err := j.w.Add(ctx, part); err != nil {
			return err
		}
	}
	return nil
}

// Close stores the job and returns it, queued for the workers.
func (j *JobWriter) Close(ctx context.Context) (Job, error) { return j.w.Close(ctx) }

// Abort deletes the operations stored so far; the job never runs.
func (j *JobWriter) Abort(ctx context.Context) { j.w.Abort(ctx) }

// Jobs returns the store of jobs on the Client's Redis, to read, pause,
// resume and cancel them.
func (c *Client) Jobs() (*JobStore, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.rdb == nil {
		return nil, errors.New("enqueue: jobs need a Client made by New")
	}
	return jobs.NewStore(c.rdb, 0), nil
}

// JobStore reads and controls jobs: Get, List, Failures, Pause, Resume,
// Cancel.
type JobStore = jobs.Store

// ErrJobNotFound is returned for an unknown job ID; ErrJobEnded by Pause,
// Resume and Cancel of a job that has ended.
var (
	ErrJobNotFound = jobs.ErrNotFound
	ErrJobEnded    = jobs.ErrEnded
)

// Completion notice headers: the signature, the job's ID (the notice's
// idempotency key: it can arrive twice) and the delivery attempt.
const (
	NoticeSignatureHeader = jobs.SignatureHeader
	NoticeJobIDHeader     = jobs.JobIDHeader
	NoticeAttemptHeader   = jobs.AttemptHeader
)

// VerifyNotice checks a completion notice: header is its Timq-Signature
// header, body the request body as received, secret the workers' notice
// secret. It refuses a notice signed more than tolerance away from now (a
// replay); five minutes suits receivers whose clock is synchronised.
func VerifyNotice(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	return jobs.Verify([]byte(secret), header, body, now, tolerance)
}
