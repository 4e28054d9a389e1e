package cli

import (
	"context"
	"fmt"
	"slices"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/tasks"
)

// queueCounts is how many tasks of a queue are in each asynq state.
type queueCounts struct {
	Pending   int `json:"pending"`
	Active    int `json:"active"`
	Scheduled int `json:"scheduled"`
	Retry     int `json:"retry"`
	Archived  int `json:"archived"`
	Completed int `json:"completed"`
}

// statsReport is the output of timq stats --json.
type statsReport struct {
	Queues      map[string]queueCounts `json:"queues"`
	DeadLetters int64                  `json:"dead_letters"`
}

// runStats prints, for every queue asynq knows plus timq's three default
// queues (zeros until first used), the pending, active, scheduled, retry,
// archived and completed counts, and the number of entries in the
// dead-letter store. Archived is asynq's archive, which asynq trims; the
// dead-letter count is timq's own store, which it does not.
func runStats(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "stats", "[--json]")
	asJSON := fs.Bool("json", false, `print {"queues": {NAME: {"pending": n, ...}}, "dead_letters": n}`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected argument %q", fs.Arg(0))
	}
	r, err := config.LoadRedis(getenvOr(env))
	if err != nil {
		return err
	}
	rep, err := collectStats(ctx, r)
	if err != nil {
		return fmt.Errorf("%w (Redis %s)", err, r.Display)
	}
	if *asJSON {
		return writeJSON(env.Stdout, rep)
	}
	names := make([]string, 0, len(rep.Queues))
	width := len("QUEUE")
	for name := range rep.Queues {
		names = append(names, name)
		width = max(width, len(name))
	}
	slices.Sort(names)
	fmt.Fprintf(env.Stdout, "%-*s %9s %9s %9s %9s %9s %9s\n", width, "QUEUE", "PENDING", "ACTIVE", "SCHEDULED", "RETRY", "ARCHIVED", "COMPLETED")
	for _, name := range names {
		q := rep.Queues[name]
		fmt.Fprintf(env.Stdout, "%-*s %9d %9d %9d %9d %9d %9d\n", width, name, q.Pending, q.Active, q.Scheduled, q.Retry, q.Archived, q.Completed)
	}
	fmt.Fprintf(env.Stdout, "\ndead letters: %d\n", rep.DeadLetters)
	return nil
}

func collectStats(ctx context.Context, r config.Redis) (statsReport, error) {
	rep := statsReport{Queues: map[string]queueCounts{}}
	insp := asynq.NewInspector(r.Conn)
	defer insp.Close()
	known, err := insp.Queues()
	if err != nil {
		return rep, fmt.Errorf("list queues: %w", err)
	}
	for _, q := range tasks.Queues() {
		rep.Queues[q] = queueCounts{} // asynq knows a queue only once a task went in
	}
	for _, q := range known {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return rep, fmt.Errorf("queue %s: %w", q, err)
		}
		rep.Queues[q] = queueCounts{
			Pending:   info.Pending,
			Active:    info.Active,
			Scheduled: info.Scheduled,
			Retry:     info.Retry,
			Archived:  info.Archived,
			Completed: info.Completed,
		}
	}
	rdb := r.Client()
	defer rdb.Close()
	n, err := dlq.New(rdb).Count(ctx)
	if err != nil {
		return rep, err
	}
	rep.DeadLetters = n
	return rep, nil
}
