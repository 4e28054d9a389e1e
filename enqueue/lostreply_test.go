package enqueue_test

import (
	"errors"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// When Redis's answer to an enqueue is lost (a stall past the read timeout)
// and go-redis retries the write that went through, the task is queued once
// and reported as queued by this call, not as a duplicate of itself.
func TestLostReplyIsNotADuplicate(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	proxy := testenv.NewLostReplyProxy(t, rdb.Addr)
	c := enqueue.New(asynq.RedisClientOpt{Addr: proxy.Addr, DB: rdb.DB})
	t.Cleanup(func() { _ = c.Close() })
	insp := asynq.NewInspector(rdb.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })

	// The first enqueue loads the script, so the next one is one EVALSHA.
	if _, err := c.Enqueue(t.Context(), tasks.Clear{GroupId: "warm-up"}); err != nil {
		t.Fatal(err)
	}
	proxy.LoseReplyTo("EVALSHA")
	ids, err := c.Enqueue(t.Context(), tasks.Clear{GroupId: "stalled"})
	if proxy.Lost() != 1 {
		t.Fatalf("proxy lost %d replies, want 1 (the test did not stage the fault)", proxy.Lost())
	}
	if err != nil || len(ids) != 1 {
		t.Fatalf("Enqueue after a lost reply = %v, %v; want one ID and no error", ids, err)
	}
	if _, err := insp.GetTaskInfo(tasks.QueueClear, ids[0]); err != nil {
		t.Fatalf("task %s not queued: %v", ids[0], err)
	}
	info, err := insp.GetQueueInfo(tasks.QueueClear)
	if err != nil || info.Pending != 2 {
		t.Fatalf("queue %s: %+v, %v; want exactly 2 pending (warm-up and stalled)", tasks.QueueClear, info, err)
	}

	// A real duplicate is still one.
	if _, err := c.Enqueue(t.Context(), tasks.Clear{GroupId: "stalled"}); !errors.Is(err, enqueue.ErrDuplicate) {
		t.Fatalf("second identical clear: %v, want ErrDuplicate", err)
	}
}
