// Package bulk validates and enqueues timq operations read from a
// JSON-lines file, the work behind `timq bulk`.
//
// # File format
//
// One operation per line: a JSON object holding "op" ("clear", "recall" or
// "modify") and the JSON body of the Tencent request (see ParseLine). Blank
// lines and lines whose first non-blank character is '#' are skipped. A
// recall may list any number of messages: it becomes tasks of at most ten.
//
// # Two passes
//
// Run reads its input twice. The first pass validates every line and keeps
// only counts and the first errors, so memory does not grow with the file.
// When any line is bad, nothing is enqueued unless Options.SkipInvalid is
// set. The second pass parses the lines again and enqueues their tasks with
// Options.Concurrency goroutines: tasks of different lines are enqueued in no
// particular order (so they may run in a different order than the file's),
// while the parts of one long recall are enqueued in list order by one
// goroutine. The input must not change between the passes.
package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/tasks"
)

// Defaults of Options.
const (
	// DefaultConcurrency is how many goroutines enqueue at once.
	DefaultConcurrency = 8
	// DefaultMaxErrors is how many line errors are reported one by one.
	DefaultMaxErrors = 100
	// DefaultRate is the API's limit: calls per second to each endpoint.
	DefaultRate = 200
)

// Enqueuer enqueues one task; *enqueue.Client is one.
type Enqueuer interface {
	Enqueue(ctx context.Context, p tasks.Payload, opts ...enqueue.Option) ([]string, error)
}

// Options control Run.
type Options struct {
	// Queue sends every task to this queue. Defaults to each task type's
	// own queue.
	Queue string
	// NoDedup turns de-duplication off for clear and modify (see package
	// enqueue). Defaults to false: an identical clear or modify already
	// waiting is counted as a duplicate and not enqueued again.
	NoDedup bool
	// Retention, when set, keeps each completed task that long (see
	// enqueue.Retention). Defaults to nil: tasks.DefaultRetention.
	Retention *time.Duration
	// SkipInvalid enqueues the good lines of a file that has bad ones.
	// Defaults to false: a file with a bad line enqueues nothing.
	SkipInvalid bool
	// DryRun validates and counts without enqueuing anything. Defaults to false.
	DryRun bool
	// Concurrency is how many goroutines enqueue at once. Defaults to
	// DefaultConcurrency.
	Concurrency int
	// MaxErrors is how many line errors are written to Errors and kept in
	// Summary.Errors; the rest are only counted. Defaults to DefaultMaxErrors.
	MaxErrors int
	// Errors receives each reported line error on a line of its own as the
	// first pass finds it, then "... and N more rejected lines". Defaults to
	// nil: not written.
	Errors io.Writer
	// Progress receives a progress line, rewritten in place with "\r" a few
	// times a second, and a final newline. Defaults to nil: no progress.
	Progress io.Writer
	// Rate is the calls per second each endpoint runs at, for the estimate.
	// Defaults to DefaultRate.
	Rate float64
}

// Summary is the outcome of Run. Its JSON form is `timq bulk --json`'s output.
type Summary struct {
	// Lines is how many lines were read, skipped ones included.
	Lines int64 `json:"lines"`
	// Skipped is how many lines were blank or comments.
	Skipped int64 `json:"skipped"`
	// Rejected is how many lines were invalid.
	Rejected int64 `json:"rejected"`
	// Tasks is how many tasks the valid lines make, by task type.
	Tasks map[string]int64 `json:"tasks"`
	// Enqueued is how many tasks were enqueued, by task type.
	Enqueued map[string]int64 `json:"enqueued"`
	// Duplicates is how many tasks were not enqueued because an identical
	// one was already waiting.
	Duplicates int64 `json:"duplicates"`
	// Estimate is how long the workers will take to run the enqueued tasks
	// (the valid ones in a dry run) at Rate calls per second per endpoint,
	// the endpoints in parallel, without retries or an existing backlog,
	// rounded up to a whole second.
	Estimate time.Duration `json:"-"`
	// EstimateSeconds is Estimate in seconds.
	EstimateSeconds float64 `json:"estimate_seconds"`
	// Rate is the rate the estimate assumes.
	Rate float64 `json:"rate"`
	// DryRun is set when nothing was meant to be enqueued.
	DryRun bool `json:"dry_run"`
	// Errors are the first Options.MaxErrors rejected lines.
	Errors []ErrorLine `json:"errors"`
}

// ErrorLine is a rejected line in a Summary.
type ErrorLine struct {
	Line   int64  `json:"line"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Total returns the sum of counts by task type.
func Total(byType map[string]int64) int64 {
	var n int64
	for _, v := range byType {
		n += v
	}
	return n
}

// ErrRejected is matched (errors.Is) by Run's error when lines were
// rejected and Options.SkipInvalid was not set.
var ErrRejected = errors.New("rejected")

// Run validates every line of in, then, unless Options.DryRun is set or a
// line was rejected without Options.SkipInvalid, seeks back to its start and
// enqueues the tasks of the valid lines through q. It returns the summary so
// far with any error: ErrRejected for rejected lines, or the first error of
// reading, Redis, or ctx (after which it stops enqueuing; the tasks already
// enqueued stay queued).
func Run(ctx context.Context, in io.ReadSeeker, q Enqueuer, opts Options) (*Summary, error) {
	opts = withDefaults(opts)
	s := &Summary{
		Tasks:    map[string]int64{},
		Enqueued: map[string]int64{},
		Rate:     opts.Rate,
		DryRun:   opts.DryRun,
		Errors:   []ErrorLine{},
	}
	if err := validate(ctx, in, opts, s, nil); err != nil {
		return s, err
	}
	if s.Rejected > 0 && !opts.SkipInvalid {
		s.estimate(s.Tasks)
		return s, fmt.Errorf("%d %s %w", s.Rejected, plural(s.Rejected, "line", "lines"), ErrRejected)
	}
	if opts.DryRun {
		s.estimate(s.Tasks)
		return s, nil
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return s, fmt.Errorf("rewind for the second pass: %w", err)
	}
	err := enqueueAll(ctx, in, q, opts, s)
	s.estimate(s.Enqueued)
	return s, err
}

func withDefaults(o Options) Options {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.MaxErrors <= 0 {
		o.MaxErrors = DefaultMaxErrors
	}
	if o.Rate <= 0 {
		o.Rate = DefaultRate
	}
	return o
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// estimate sets the time the tasks take at the rate, endpoints in parallel,
// rounded up to a whole second.
func (s *Summary) estimate(byType map[string]int64) {
	var most int64
	for _, n := range byType {
		most = max(most, n)
	}
	secs := math.Ceil(float64(most) / s.Rate)
	s.Estimate = time.Duration(secs) * time.Second
	s.EstimateSeconds = s.Estimate.Seconds()
}

// Stream validates every line of in in one pass and hands the tasks of
// each valid line to add as it goes (unless Options.DryRun), until a line
// is rejected without Options.SkipInvalid: then it only validates the rest,
// and returns ErrRejected at the end. For producers whose adds stay
// invisible until they commit, such as a job's writer, this gives Run's
// all-or-nothing rule without reading the input twice. The summary's
// Enqueued counts what add accepted.
func Stream(ctx context.Context, in io.Reader, add func(context.Context, tasks.Payload) error, opts Options) (*Summary, error) {
	opts = withDefaults(opts)
	s := &Summary{Tasks: map[string]int64{}, Enqueued: map[string]int64{}, Rate: opts.Rate, DryRun: opts.DryRun, Errors: []ErrorLine{}}
	err := validate(ctx, in, opts, s, func(parts []tasks.Payload) error {
		if opts.DryRun || (s.Rejected > 0 && !opts.SkipInvalid) {
			return nil
		}
		for _, p := range parts {
			if err := add(ctx, p); err != nil {
				return err
			}
			s.Enqueued[p.TaskType()]++
		}
		return nil
	})
	s.estimate(s.Tasks)
	if err == nil && s.Rejected > 0 && !opts.SkipInvalid {
		err = fmt.Errorf("%d %s %w", s.Rejected, plural(s.Rejected, "line", "lines"), ErrRejected)
	}
	return s, err
}

// validate is the first pass; each, when set, gets every valid line's tasks.
func validate(ctx context.Context, in io.Reader, opts Options, s *Summary, each func([]tasks.Payload) error) error {
	var lines atomic.Int64
	stop := startProgress(opts.Progress, func(elapsed time.Duration) string {
		return fmt.Sprintf("validating: %d lines", lines.Load())
	})
	defer stop()
	lr := newLineReader(in)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		line, num, size, err := lr.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read line %d: %w", lr.line+1, err)
		}
		s.Lines = num
		lines.Store(num)
		if size > MaxLineBytes {
			s.reject(opts, num, lineTooLong(size))
			continue
		}
		if Skipped(line) {
			s.Skipped++
			continue
		}
		parts, err := ParseLine(line)
		if err != nil {
			var ve *tasks.ValidationError
			if !errors.As(err, &ve) {
				ve = &tasks.ValidationError{Field: "JSON", Reason: err.Error()}
			}
			s.reject(opts, num, ve)
			continue
		}
		s.Tasks[parts[0].TaskType()] += int64(len(parts))
		if each != nil {
			if err := each(parts); err != nil {
				return err
			}
		}
	}
	if more := s.Rejected - int64(len(s.Errors)); more > 0 && opts.Errors != nil {
		fmt.Fprintf(opts.Errors, "... and %d more rejected %s\n", more, plural(more, "line", "lines"))
	}
	return nil
}

func (s *Summary) reject(opts Options, num int64, ve *tasks.ValidationError) {
	s.Rejected++
	if len(s.Errors) >= opts.MaxErrors {
		return
	}
	s.Errors = append(s.Errors, ErrorLine{Line: num, Field: ve.Field, Reason: ve.Reason})
	if opts.Errors != nil {
		fmt.Fprintln(opts.Errors, (&LineError{Line: num, Err: ve}).Error())
	}
}

// job is the tasks of one line, enqueued by one goroutine in order.
type job struct {
	line  int64
	parts []tasks.Payload
}

// enqueueAll is the second pass: one goroutine reads and parses, the
// others enqueue.
func enqueueAll(ctx context.Context, in io.Reader, q Enqueuer, opts Options, s *Summary) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	var eopts []enqueue.Option
	if opts.Queue != "" {
		eopts = append(eopts, enqueue.Queue(opts.Queue))
	}
	if opts.NoDedup {
		eopts = append(eopts, enqueue.NoDedup())
	}
	if opts.Retention != nil {
		eopts = append(eopts, enqueue.Retention(*opts.Retention))
	}

	types := tasks.Types()
	enqueued := make([]atomic.Int64, len(types))
	var done, dups atomic.Int64
	total := Total(s.Tasks)
	stop := startProgress(opts.Progress, func(elapsed time.Duration) string {
		n := done.Load()
		rate := 0.0
		if elapsed > 0 {
			rate = float64(n) / elapsed.Seconds()
		}
		return fmt.Sprintf("enqueued %d/%d tasks  %.0f/s", n, total, rate)
	})
	defer stop()

	jobs := make(chan job, opts.Concurrency*64)
	var wg sync.WaitGroup
	for range opts.Concurrency {
		wg.Go(func() {
			for j := range jobs {
				if ctx.Err() != nil {
					continue // drain after a failure
				}
				for _, p := range j.parts {
					ids, err := q.Enqueue(ctx, p, eopts...)
					switch {
					case errors.Is(err, enqueue.ErrDuplicate):
						dups.Add(1)
					case err != nil:
						cancel(fmt.Errorf("line %d: %w", j.line, err))
					}
					if len(ids) > 0 {
						enqueued[slices.Index(types, p.TaskType())].Add(int64(len(ids)))
					}
					done.Add(1)
				}
			}
		})
	}

	readErr := func() error {
		defer close(jobs)
		lr := newLineReader(in)
		var rejected int64
		for {
			line, num, size, err := lr.next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read line %d: %w", lr.line+1, err)
			}
			if size > MaxLineBytes || Skipped(line) {
				rejected += boolInt(size > MaxLineBytes)
				continue
			}
			parts, err := ParseLine(line)
			if err != nil {
				rejected++
				continue
			}
			select {
			case jobs <- job{line: num, parts: parts}:
			case <-ctx.Done():
				return nil
			}
		}
		if lr.line != s.Lines || rejected != s.Rejected {
			return fmt.Errorf("the input changed between the passes: %d lines (%d rejected), then %d (%d rejected)",
				s.Lines, s.Rejected, lr.line, rejected)
		}
		return nil
	}()
	wg.Wait()
	for i, t := range types {
		if n := enqueued[i].Load(); n > 0 {
			s.Enqueued[t] = n
		}
	}
	s.Duplicates = dups.Load()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return readErr
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// startProgress writes the line status returns to w every 200ms,
// rewriting it in place, until the returned stop is called.
func startProgress(w io.Writer, status func(elapsed time.Duration) string) (stop func()) {
	if w == nil {
		return func() {}
	}
	start := time.Now()
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				fmt.Fprintf(w, "\r%s\x1b[K", status(time.Since(start)))
			case <-quit:
				fmt.Fprintf(w, "\r%s\x1b[K\n", status(time.Since(start)))
				return
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			wg.Wait()
		})
	}
}
