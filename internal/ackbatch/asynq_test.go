package ackbatch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/ackbatch"
	"github.com/timq/timq/internal/testenv"
)

// TestAsynqTasksEndThroughTheHook runs a real asynq server on a client with
// the hook: the scripts that end tasks well (done and mark-as-complete) are
// held and batched, failures are not, and asynq's view of every task is
// what it would be without the hook. It fails if asynq's scripts stop
// putting the active list and lease set first.
func TestAsynqTasksEndThroughTheHook(t *testing.T) {
	db := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: db.Addr, DB: db.DB})
	h := ackbatch.Install(rdb, ackbatch.Options{Delay: 20 * time.Millisecond, MaxBatch: 8})
	rt := &roundTrips{}
	rdb.AddHook(rt)
	t.Cleanup(func() { rdb.Close() })

	const queue, kept, dropped, failing = "ackbatch", 40, 40, 5
	cli := asynq.NewClient(db.ConnOpt())
	defer cli.Close()
	for i := range kept + dropped + failing {
		typ, opts := "ok", []asynq.Option{asynq.Queue(queue), asynq.MaxRetry(0)}
		switch {
		case i < kept:
			opts = append(opts, asynq.Retention(time.Hour)) // mark-as-complete
		case i >= kept+dropped:
			typ = "fail" // archive: not held
		}
		if _, err := cli.Enqueue(asynq.NewTask(typ, []byte(fmt.Sprint(i))), opts...); err != nil {
			t.Fatal(err)
		}
	}
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 32, Queues: map[string]int{queue: 1}, LogLevel: asynq.FatalLevel,
		TaskCheckInterval: 10 * time.Millisecond,
	})
	if err := srv.Start(asynq.HandlerFunc(func(_ context.Context, task *asynq.Task) error {
		if task.Type() == "fail" {
			return errors.New("fails on purpose")
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown) // before rdb closes, should the test fail early
	insp := asynq.NewInspector(db.ConnOpt())
	defer insp.Close()
	deadline := time.Now().Add(30 * time.Second)
	var info *asynq.QueueInfo
	for {
		var err error
		if info, err = insp.GetQueueInfo(queue); err != nil {
			t.Fatal(err)
		}
		if info.Pending == 0 && info.Active == 0 && info.Completed == kept && info.Archived == failing {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue never settled: %+v", info)
		}
		time.Sleep(20 * time.Millisecond)
	}
	srv.Shutdown()
	if info.Processed != kept+dropped+failing || info.Failed != failing {
		t.Errorf("processed %d, failed %d; want %d and %d", info.Processed, info.Failed, kept+dropped+failing, failing)
	}
	// One held script per task that ended well, none for failures, plus
	// one EVAL for each EVALSHA that Redis answered NOSCRIPT (when it had not
	// seen asynq's done or mark-as-complete script yet).
	st := h.Stats()
	if want := uint64(kept+dropped) + uint64(rt.leaseEvals.Load()); st.Held != want {
		t.Errorf("held %d scripts, want %d: one per task that ended well (+ %d NOSCRIPT fallbacks), none for failures", st.Held, want, rt.leaseEvals.Load())
	}
	// Batched: fewer round trips than scripts. A pipeline carries held
	// scripts, and perhaps the dequeue that took them along.
	if rt.pipelines.Load() == 0 || rt.pipedCmds.Load() <= rt.pipelines.Load() {
		t.Errorf("%d pipelines carried %d scripts: no round trip carried two", rt.pipelines.Load(), rt.pipedCmds.Load())
	}
	if rt.pipedCmds.Load() < int64(st.Held) {
		t.Errorf("pipelines carried %d commands, fewer than the %d held", rt.pipedCmds.Load(), st.Held)
	}
}
