package testenv

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/timq/timq/tasks"
)

// QueueSizes returns how many tasks wait (asynq's Size: pending, active,
// scheduled, retry, archived) in each queue that has any.
func QueueSizes(t testing.TB, insp *asynq.Inspector) map[string]int {
	t.Helper()
	qs, err := insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, q := range qs {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size > 0 {
			out[q] = info.Size
		}
	}
	return out
}

// Counts sums asynq's queue sizes over timq's queues.
type Counts struct{ Pending, Active, Scheduled, Retry, Archived, Completed int }

func (c Counts) String() string {
	return fmt.Sprintf("pending=%d active=%d scheduled=%d retry=%d archived=%d completed=%d",
		c.Pending, c.Active, c.Scheduled, c.Retry, c.Archived, c.Completed)
}

// QueueCounts reads the counts of timq's three queues.
func QueueCounts(insp *asynq.Inspector) (Counts, error) {
	var c Counts
	known, err := insp.Queues()
	if err != nil {
		return c, err
	}
	for _, q := range tasks.Queues() {
		if !slices.Contains(known, q) {
			continue // asynq knows a queue once a task went in
		}
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			return c, err
		}
		c.Pending += info.Pending
		c.Active += info.Active
		c.Scheduled += info.Scheduled
		c.Retry += info.Retry
		c.Archived += info.Archived
		c.Completed += info.Completed
	}
	return c, nil
}

// WaitSettled waits until all n tasks are completed or archived and no task
// is pending, active, scheduled or retrying, and returns the counts.
func WaitSettled(t testing.TB, insp *asynq.Inspector, n int, within time.Duration) Counts {
	t.Helper()
	var c Counts
	var err error
	Eventually(t, within, fmt.Sprintf("all %d tasks completed or archived", n), func() (bool, string) {
		c, err = QueueCounts(insp)
		if err != nil {
			return false, err.Error()
		}
		return c.Completed+c.Archived >= n && c.Pending+c.Active+c.Scheduled+c.Retry == 0, c.String()
	})
	return c
}
