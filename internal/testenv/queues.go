package testenv

import (
	"testing"

	"github.com/hibiken/asynq"
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
