package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/bulk"
	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/tasks"
)

const bulkUsage = `[flags] FILE

Validates every line of FILE ('-' for stdin), then stores the operations as
a job and prints its ID. Each line is the JSON body of the Tencent request
plus "op":
  {"op":"recall","GroupId":"@TGS#2J4SZEAEL","MsgSeqList":[{"MsgSeq":100},{"MsgSeq":101}]}
  {"op":"clear","GroupId":"@TGS#2J4SZEAEL","MsgSeq":120}
  {"op":"modify","GroupId":"@TGS#2J4SZEAEL","MsgSeq":7,"CloudCustomData":"x"}
Blank lines and lines starting with # are skipped. Unknown fields are errors.
A recall may list any number of messages; it is split into operations of 10.

Bad lines are reported on stderr by number and field (the first 100, then a
count), and then NOTHING is queued unless --skip-invalid is given. A job is
stored whole or not at all: workers see it only once every line is in.

The job's operations run in the job lane: after every operation queued one
by one (timq enqueue, the Go API), sharing the rest with other running jobs
by --priority. timq jobs shows, pauses, resumes and cancels it; --wait stays
attached with a progress bar until it ends.

--tasks queues each operation as a task of its own in the interactive
queues instead (no job): then an identical clear or modify already waiting
is counted as a duplicate, and --queue and --no-dedup apply.

--notify URL POSTs the job's summary as JSON when it ends, signed with the
workers' TIMQ_NOTIFY_SECRET: Timq-Signature is t=UNIX,v1=HEX, the
HMAC-SHA256 of "UNIX." and the body. A failing receiver is retried with
backoff for about ten hours; the job never waits for it.

A summary goes to stdout: lines read, operations queued, lines rejected, and
the time the work takes at TIMQ_RATE (default 200) calls/s per endpoint.
Exit status 1 when lines were rejected without --skip-invalid. Redis comes
from TIMQ_REDIS_URL.

` + replicasHelp + `
The run then stops: lines not yet queued are not tried.`

// runBulk validates and queues the operations of a JSON-lines file.
func runBulk(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bulk", bulkUsage)
	var (
		opts                  bulk.Options
		asJSON, asTasks, wait bool
		name, notify          string
		priority              int
	)
	fs.BoolVar(&asTasks, "tasks", false, "queue each operation as its own task in the interactive queues, not as a job")
	fs.StringVar(&name, "name", "", "the job's `name`, shown by timq jobs ls")
	fs.IntVar(&priority, "priority", 1, "the job's weight against other running jobs (1 to 100): a job of 2 gets twice the calls of a job of 1")
	fs.StringVar(&notify, "notify", "", "POST the job's summary to this http(s) `URL` when it ends, signed with the workers' TIMQ_NOTIFY_SECRET (header Timq-Signature) and retried with backoff")
	fs.BoolVar(&wait, "wait", false, "stay attached with a progress bar until the job ends; exit 1 if operations were dead-lettered")
	fs.BoolVar(&opts.SkipInvalid, "skip-invalid", false, "queue the valid lines of a file that has bad ones")
	fs.BoolVar(&opts.DryRun, "dry-run", false, "validate and count only; queue nothing")
	fs.StringVar(&opts.Queue, "queue", "", "queue every task to this `name` (default: each operation's own queue); a worker takes tasks from it only when started with --queues OP:NAME=PRIORITY for each operation in the file")
	fs.BoolVar(&opts.NoDedup, "no-dedup", false, "queue clears and modifies even when identical ones are waiting")
	fs.BoolVar(&asJSON, "json", false, "print the summary as one JSON object")
	retention := fs.Duration("retention", tasks.DefaultRetention, retentionUsage+"; for a job, how long its summary and failures stay after it ends (default 720h)")
	files, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	jobOpts := []enqueue.JobOption{enqueue.JobName(name), enqueue.JobWeight(priority)}
	if asTasks {
		if opts.Retention, err = retentionOption(flagGiven(fs, "retention"), *retention); err != nil {
			return err
		}
	} else if flagGiven(fs, "retention") {
		if *retention < time.Second {
			return UsageError("--retention: a job keeps its summary for at least 1s, got %v", *retention)
		}
		jobOpts = append(jobOpts, enqueue.JobRetention(*retention))
	}
	if notify != "" {
		if err := jobs.CheckNotifyURL(notify); err != nil {
			return UsageError("--notify: %v", strings.TrimPrefix(err.Error(), "notify URL: "))
		}
		jobOpts = append(jobOpts, enqueue.JobNotify(notify))
	}
	switch {
	case len(files) == 0:
		return UsageError("missing FILE (a path, or - for stdin)")
	case len(files) > 1:
		return UsageError("unexpected argument %q: give one FILE", files[1])
	}
	if !asTasks {
		for _, f := range []string{"queue", "no-dedup"} {
			if flagGiven(fs, f) {
				return UsageError("--%s applies to --tasks only: a job's operations go to the job lane", f)
			}
		}
	} else {
		for _, f := range []string{"name", "priority", "wait", "notify"} {
			if flagGiven(fs, f) {
				return UsageError("--%s applies to jobs only, not with --tasks", f)
			}
		}
	}
	if priority < 1 || priority > 100 {
		return UsageError("--priority must be from 1 to 100, got %d", priority)
	}
	if opts.Queue != "" {
		if err := tasks.CheckName(opts.Queue); err != nil {
			return UsageError("--queue: the queue name %v", err)
		}
	}
	rate, err := config.Float(env.Getenv, config.EnvRate, bulk.DefaultRate, 0.01, 1e6)
	if err != nil {
		return err
	}
	opts.Rate = rate
	opts.Errors = env.Stderr
	if env.IsTerminal {
		opts.Progress = env.Stderr
	}

	in, closeIn, err := openBulkInput(env, files[0])
	if err != nil {
		return err
	}
	defer closeIn()

	var q bulk.Enqueuer = noEnqueuer{}
	var (
		jw       *enqueue.JobWriter
		jobStore *enqueue.JobStore
	)
	display := ""
	replicas := 0
	if !opts.DryRun {
		rc, err := config.LoadRedis(env.Getenv)
		if err != nil {
			return err
		}
		c, n, err := newEnqueueClient(env, rc.Conn)
		if err != nil {
			return err
		}
		defer c.Close()
		q, display, replicas = c, rc.Display, n
		if !asTasks {
			w, err := c.NewJob(jobOpts...)
			if err != nil {
				return err
			}
			jw = w
			if jobStore, err = c.Jobs(); err != nil {
				return err
			}
			defer jw.Abort(context.WithoutCancel(ctx)) // a no-op once closed
			q = jobEnqueuer{jw}
		}
	}

	s, runErr := bulk.Run(ctx, in, q, opts)
	var job *enqueue.Job
	if jw != nil && runErr == nil {
		j, err := jw.Close(ctx)
		if err != nil {
			runErr = err
		} else {
			job = &j
		}
	}
	if asJSON {
		b, err := json.Marshal(struct {
			*bulk.Summary
			Job *enqueue.Job `json:"job,omitempty"`
		}{s, job})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else {
		printBulkSummary(env.Stdout, s, opts.SkipInvalid)
		if job != nil {
			fmt.Fprintf(env.Stdout, "job:            %s (timq jobs show %s)\n", job.ID, job.ID)
		}
	}
	if job != nil && wait {
		j, err := watchJob(ctx, env, jobStore, job.ID)
		if err != nil {
			return err
		}
		printJob(env.Stdout, j)
		if j.Counts.DeadLettered > 0 {
			return fmt.Errorf("job %s: %d operations dead-lettered (timq jobs failures %s)", j.ID, j.Counts.DeadLettered, j.ID)
		}
	}
	switch {
	case errors.Is(runErr, bulk.ErrRejected):
		return fmt.Errorf("%v; nothing queued (fix them, or pass --skip-invalid to queue the rest)", runErr)
	case runErr != nil && display != "":
		return fmt.Errorf("%w (Redis %s)", withReplicas(runErr, replicas), display)
	}
	return runErr
}

// openBulkInput opens FILE for the two passes. Stdin cannot be read twice,
// so it is first copied to a temporary file, removed when done.
func openBulkInput(env *Env, name string) (io.ReadSeeker, func(), error) {
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, nil, err
		}
		return f, func() { _ = f.Close() }, nil
	}
	f, err := os.CreateTemp("", "timq-bulk-*.jsonl")
	if err != nil {
		return nil, nil, fmt.Errorf("spool stdin: %w", err)
	}
	done := func() {
		_ = f.Close()
		_ = os.Remove(f.Name())
	}
	if _, err := io.Copy(f, env.Stdin); err != nil {
		done()
		return nil, nil, fmt.Errorf("spool stdin to %s: %w", f.Name(), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		done()
		return nil, nil, fmt.Errorf("spool stdin: %w", err)
	}
	return f, done, nil
}

// jobEnqueuer adds bulk's operations to a job instead of queueing tasks.
type jobEnqueuer struct{ w *enqueue.JobWriter }

func (j jobEnqueuer) Enqueue(ctx context.Context, p tasks.Payload, _ ...enqueue.Option) ([]string, error) {
	parts, err := enqueue.Split(p)
	if err != nil {
		return nil, err
	}
	for _, part := range parts {
		if err := j.w.Add(ctx, part); err != nil {
			return nil, err
		}
	}
	return make([]string, len(parts)), nil
}

// noEnqueuer is used by --dry-run, which never enqueues.
type noEnqueuer struct{}

func (noEnqueuer) Enqueue(context.Context, tasks.Payload, ...enqueue.Option) ([]string, error) {
	return nil, errors.New("dry run: nothing is enqueued")
}

func printBulkSummary(w io.Writer, s *bulk.Summary, skipInvalid bool) {
	byType := func(m map[string]int64) string {
		var parts []string
		for _, t := range tasks.Types() {
			if m[t] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(t, "timq:"), m[t]))
			}
		}
		if len(parts) == 0 {
			return ""
		}
		return " (" + strings.Join(parts, ", ") + ")"
	}
	fmt.Fprintf(w, "lines read:     %d (%d blank or comment)\n", s.Lines, s.Skipped)
	rejected := ""
	if s.Rejected > 0 && skipInvalid {
		rejected = " (skipped)"
	}
	fmt.Fprintf(w, "rejected lines: %d%s\n", s.Rejected, rejected)
	switch {
	case s.DryRun:
		fmt.Fprintf(w, "valid tasks:    %d%s\n", bulk.Total(s.Tasks), byType(s.Tasks))
		fmt.Fprintf(w, "enqueued tasks: 0 (dry run)\n")
	case s.Rejected > 0 && !skipInvalid:
		fmt.Fprintf(w, "valid tasks:    %d%s\n", bulk.Total(s.Tasks), byType(s.Tasks))
		fmt.Fprintf(w, "enqueued tasks: 0 (bad lines)\n")
	default:
		fmt.Fprintf(w, "enqueued tasks: %d%s\n", bulk.Total(s.Enqueued), byType(s.Enqueued))
	}
	fmt.Fprintf(w, "duplicates:     %d\n", s.Duplicates)
	fmt.Fprintf(w, "estimated time: %v at %g calls/s per endpoint\n", s.Estimate, s.Rate)
}
