package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/tasks"
)

const jobsUsage = `Usage:
  timq jobs ls [--json] [--limit N]
  timq jobs show ID [--json]
  timq jobs watch ID
  timq jobs pause ID
  timq jobs resume ID
  timq jobs cancel ID
  timq jobs failures ID [--json]
  timq jobs retry-failed ID [--name NAME]

A job is what timq bulk queues: its operations run in the job lane, after
every operation queued one by one, sharing the rest with the other running
jobs by --priority. States: queued, running, paused, cancelled, done.
Counts are exact: total = waiting + in flight + applied + dead-lettered +
cancelled.

pause stops the job within about a second on every worker (operations
already sent finish); resume goes on. cancel stops it for good: no further
operation reaches the API. failures prints the dead-lettered operations as
lines timq bulk takes again; retry-failed makes a new job of them. An ended
job's summary and failures are kept for 30 days.`

// runJobs lists, shows and controls jobs in the Redis named by
// TIMQ_REDIS_URL / TIMQ_REDIS_CLUSTER_ADDRS.
func runJobs(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return UsageError("missing subcommand: ls, show, watch, pause, resume, cancel, failures or retry-failed (timq jobs --help)")
	}
	sub, rest := args[0], args[1:]
	var run func(context.Context, *Env, *jobs.Store, []string) error
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprintln(env.Stdout, jobsUsage)
		return nil
	case "ls":
		run = runJobsList
	case "show":
		run = runJobsShow
	case "watch":
		run = func(ctx context.Context, env *Env, s *jobs.Store, args []string) error {
			id, err := oneJobID(env, "watch", args, nil)
			if err != nil {
				return err
			}
			j, err := watchJob(ctx, env, s, id)
			if err == nil {
				printJob(env.Stdout, j)
			}
			return err
		}
	case "pause", "resume", "cancel":
		run = func(ctx context.Context, env *Env, s *jobs.Store, args []string) error {
			return runJobsControl(ctx, env, s, sub, args)
		}
	case "failures":
		run = runJobsFailures
	case "retry-failed":
		run = runJobsRetryFailed
	default:
		return UsageError("unknown subcommand %q: want ls, show, watch, pause, resume, cancel, failures or retry-failed", sub)
	}
	r, err := config.LoadRedis(getenvOr(env))
	if err != nil {
		return err
	}
	rdb := r.Client()
	defer rdb.Close()
	return namingRedis(env, run(ctx, env, jobs.NewStore(rdb, 0), rest), jobs.ErrNotFound, jobs.ErrEnded)
}

// oneJobID parses flags (fs may be nil) and the single ID argument.
func oneJobID(env *Env, sub string, args []string, fs *flag.FlagSet) (string, error) {
	if fs == nil {
		fs = newFlagSet(env, "jobs "+sub, "ID")
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return "", err
	}
	switch {
	case len(rest) == 0:
		return "", UsageError("missing job ID (timq jobs ls lists them)")
	case len(rest) > 1:
		return "", UsageError("unexpected argument %q: timq jobs %s takes one job ID", rest[1], sub)
	}
	if err := jobs.CheckID(rest[0]); err != nil {
		return "", UsageError("%v", err)
	}
	return rest[0], nil
}

func runJobsList(ctx context.Context, env *Env, s *jobs.Store, args []string) error {
	fs := newFlagSet(env, "jobs ls", "[--json] [--limit N]")
	asJSON := fs.Bool("json", false, "print a JSON array of jobs")
	limit := fs.Int("limit", 50, "at most this many jobs, newest first (0: all)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected argument %q (timq jobs show ID shows one job)", fs.Arg(0))
	}
	if *limit < 0 {
		return UsageError("--limit must be 0 or more, got %d", *limit)
	}
	js, err := s.List(ctx, *limit)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, js)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSTATE\tTOTAL\tAPPLIED\tDEAD\tCANCELLED\tWAITING\tCREATED")
	for _, j := range js {
		c := j.Counts
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", j.ID, j.Name, j.State, c.Total, c.Applied, c.DeadLettered, c.Cancelled, c.Waiting+c.InFlight, j.Created.Format(time.RFC3339))
	}
	return tw.Flush()
}

func runJobsShow(ctx context.Context, env *Env, s *jobs.Store, args []string) error {
	fs := newFlagSet(env, "jobs show", "ID [--json]")
	asJSON := fs.Bool("json", false, "print the job as JSON")
	id, err := oneJobID(env, "show", args, fs)
	if err != nil {
		return err
	}
	j, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, j)
	}
	printJob(env.Stdout, j)
	return nil
}

func runJobsControl(ctx context.Context, env *Env, s *jobs.Store, sub string, args []string) error {
	id, err := oneJobID(env, sub, args, nil)
	if err != nil {
		return err
	}
	var j jobs.Job
	switch sub {
	case "pause":
		j, err = s.Pause(ctx, id)
	case "resume":
		j, err = s.Resume(ctx, id)
	default:
		j, err = s.Cancel(ctx, id)
	}
	if errors.Is(err, jobs.ErrEnded) {
		return fmt.Errorf("job %s has ended (%s): nothing to %s", id, j.State, sub)
	}
	if err != nil {
		return err
	}
	printJob(env.Stdout, j)
	return nil
}

func runJobsFailures(ctx context.Context, env *Env, s *jobs.Store, args []string) error {
	fs := newFlagSet(env, "jobs failures", "ID [--json]")
	asJSON := fs.Bool("json", false, "print a JSON array with each failure's code and info; without it, one line per failure that timq bulk takes again")
	id, err := oneJobID(env, "failures", args, fs)
	if err != nil {
		return err
	}
	fs2, err := s.Failures(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, fs2)
	}
	for _, f := range fs2 {
		line, err := bulkLine(f)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "%s\n", line)
	}
	return nil
}

// bulkLine is f as a line of timq bulk's format: the payload with "op".
func bulkLine(f jobs.Failure) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(f.Payload, &fields); err != nil {
		return nil, fmt.Errorf("failure %s: payload is not a JSON object: %w", f.TaskID, err)
	}
	op, _ := json.Marshal(f.Op)
	fields["op"] = op
	return json.Marshal(fields)
}

func runJobsRetryFailed(ctx context.Context, env *Env, s *jobs.Store, args []string) error {
	fs := newFlagSet(env, "jobs retry-failed", "ID [--name NAME]")
	name := fs.String("name", "", "the new job's name (default: retry of ID)")
	id, err := oneJobID(env, "retry-failed", args, fs)
	if err != nil {
		return err
	}
	fails, err := s.Failures(ctx, id)
	if err != nil {
		return err
	}
	if len(fails) == 0 {
		return fmt.Errorf("job %s has no failures to retry", id)
	}
	if *name == "" {
		*name = "retry of " + id
	}
	w, err := s.Create(jobs.Spec{Name: *name, Weight: 1})
	if err != nil {
		return err
	}
	for _, f := range fails {
		p, err := tasks.Parse(jobs.TypeOf(f.Op), f.Payload)
		if err == nil {
			err = w.Add(ctx, p)
		}
		if err != nil {
			w.Abort(ctx)
			return fmt.Errorf("failure %s: %w", f.TaskID, err)
		}
	}
	j, err := w.Close(ctx)
	if err != nil {
		return err
	}
	printJob(env.Stdout, j)
	return nil
}

// printJob writes a job's summary, one field a line.
func printJob(w io.Writer, j jobs.Job) {
	c := j.Counts
	fmt.Fprintf(w, "job %s", j.ID)
	if j.Name != "" {
		fmt.Fprintf(w, " (%s)", j.Name)
	}
	fmt.Fprintf(w, ": %s\n", j.State)
	fmt.Fprintf(w, "  total %d: waiting %d, in flight %d, applied %d, dead-lettered %d, cancelled %d\n",
		c.Total, c.Waiting, c.InFlight, c.Applied, c.DeadLettered, c.Cancelled)
	for _, typ := range tasks.Types() {
		if tc := j.ByType[typ]; tc.Total > 0 {
			fmt.Fprintf(w, "  %s: total %d, applied %d, dead-lettered %d, cancelled %d\n", typ, tc.Total, tc.Applied, tc.DeadLettered, tc.Cancelled)
		}
	}
	if m := j.RecallMessages; m != nil {
		fmt.Fprintf(w, "  recalled messages: total %d, recalled %d, dead-lettered %d, cancelled %d, waiting %d, in flight %d\n",
			m.Total, m.Applied, m.DeadLettered, m.Cancelled, m.Waiting, m.InFlight)
	}
	if j.Rate > 0 {
		fmt.Fprintf(w, "  rate %.1f ops/s over the last minute", j.Rate)
		if j.ETA != nil {
			fmt.Fprintf(w, ", ends about %s (in %s)", j.ETA.Format(time.RFC3339), time.Until(*j.ETA).Round(time.Second))
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  created %s", j.Created.Format(time.RFC3339))
	if j.Ended != nil {
		fmt.Fprintf(w, ", ended %s after %s", j.Ended.Format(time.RFC3339), j.Ended.Sub(j.Created).Round(time.Second))
	}
	fmt.Fprintln(w)
	if j.Retention > 0 {
		fmt.Fprintf(w, "  kept %s after it ends\n", time.Duration(j.Retention))
	}
	if n := j.Notice; n != nil {
		fmt.Fprintf(w, "  notice: %s after %d attempts", n.State, n.Attempts)
		if n.Sent != nil {
			fmt.Fprintf(w, ", sent %s", n.Sent.Format(time.RFC3339))
		}
		if n.Error != "" && n.State != jobs.NoticeSent {
			fmt.Fprintf(w, " (last: %s)", n.Error)
		}
		fmt.Fprintln(w)
	}
	if c.DeadLettered > 0 {
		fmt.Fprintf(w, "  failures: timq jobs failures %s\n", j.ID)
	}
}

// watchPoll is how often watchJob reads the job.
const watchPoll = 250 * time.Millisecond

// watchJob draws a progress bar with rate and ETA on stderr until the job
// ends or ctx does, and returns the job as last read.
func watchJob(ctx context.Context, env *Env, s *jobs.Store, id string) (jobs.Job, error) {
	j, err := s.Get(ctx, id)
	if err != nil {
		return j, err
	}
	bar := progressbar.NewOptions64(j.Counts.Total,
		progressbar.OptionSetWriter(env.Stderr),
		progressbar.OptionSetDescription("job "+id),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("ops"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(watchPoll),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionClearOnFinish(),
	)
	t := time.NewTicker(watchPoll)
	defer t.Stop()
	for {
		c := j.Counts
		_ = bar.Set64(c.Applied + c.DeadLettered + c.Cancelled)
		if j.Finished {
			_ = bar.Finish()
			return j, nil
		}
		select {
		case <-ctx.Done():
			_ = bar.Exit()
			fmt.Fprintln(env.Stderr)
			return j, ctx.Err()
		case <-t.C:
		}
		if j, err = s.Get(ctx, id); err != nil {
			return j, err
		}
	}
}
