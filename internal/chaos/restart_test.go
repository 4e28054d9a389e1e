package chaos

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
)

// TestRedisRestartLosesNothing runs a redis-server of its own with
// append-only persistence fsynced on every write, and kills it with SIGKILL
// and starts it again on the same port while a producer is enqueuing and a
// `timq worker` process is working. Both must reconnect on their own, and
// every operation must end as planned: an enqueue whose answer was lost is
// retried with the same task ID, so it is neither lost nor queued twice.
func TestRedisRestartLosesNothing(t *testing.T) {
	t.Parallel()
	rs := testenv.StartRedisServer(t)
	conn := asynq.RedisClientOpt{Addr: rs.Addr}
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	g := newRigOn(t, conn, rs.URL(0), rdb, sim.Config{Faults: slowAPI()}, nil)

	k := testenv.Scale(1, 10)
	plan := NewPlan(Mix{Prefix: "restart", Modify: 1200 * k, Recall: 300 * k, RecallSize: 2, Clear: 300 * k, Permanent: 3})
	plan.Seed(t, g.emu.Seed)
	g.startWorkerProc("worker", g.workerEnv("TIMQ_MAX_RETRY=25"))

	// The producer enqueues in batches over a few seconds, so the restart
	// falls in the middle of it.
	var (
		wg       sync.WaitGroup
		prodErr  error
		produced ProducerStats
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		const batch = 100
		for i := 0; i < len(plan.Ops); i += batch {
			st, err := plan.Produce(context.Background(), g.client, plan.Ops[i:min(i+batch, len(plan.Ops))], 4, time.Minute)
			produced.Enqueued += st.Enqueued
			produced.Retries += st.Retries
			produced.Conflict += st.Conflict
			if err != nil {
				prodErr = err
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	testenv.Eventually(t, time.Minute, "the worker completed 300 tasks", func() (bool, string) {
		c, err := testenv.QueueCounts(g.insp)
		if err != nil {
			return false, err.Error()
		}
		return c.Completed >= 300, c.String()
	})
	before := g.counts()
	rs.Kill()
	down := time.Now()
	// Down for 3 s: longer than go-redis's own retries (3 tries, backoff up
	// to 512 ms), which absorbed a 1.5 s outage without the producer ever
	// seeing an error.
	time.Sleep(3 * time.Second)
	rs.Start()
	t.Logf("redis-server killed with %v and back after %s", before, elapsed(down))

	// The worker reconnects by itself: it completes tasks again.
	testenv.Eventually(t, time.Minute, "the worker completed 200 more tasks after the restart", func() (bool, string) {
		c, err := testenv.QueueCounts(g.insp)
		if err != nil {
			return false, err.Error()
		}
		return c.Completed >= before.Completed+200, c.String()
	})
	t.Logf("the worker reconnected and completed 200 more tasks %s after the restart", elapsed(down))
	// Tasks in flight when Redis died cannot be acknowledged: asynq v0.26
	// retries the acknowledgement with a context its own defer already
	// canceled (processor.markAsComplete), so they stay "active" until
	// their lease runs out and a recoverer hands them back, then run again.
	// A second worker's recoverer (it runs when a server starts, then
	// every minute) picks them up a minute from now instead of up to two.
	g.startWorkerProc("worker-2", g.workerEnv("TIMQ_MAX_RETRY=25"))

	wg.Wait()
	if prodErr != nil {
		t.Fatalf("producer: %v", prodErr)
	}
	t.Logf("producer: %d tasks enqueued, %d enqueue calls retried across the restart, %d retries found their task already queued",
		produced.Enqueued, produced.Retries, produced.Conflict)
	if produced.Enqueued != int64(len(plan.Ops)) {
		t.Fatalf("producer enqueued %d tasks, want %d", produced.Enqueued, len(plan.Ops))
	}
	if produced.Retries == 0 {
		t.Errorf("no enqueue failed while Redis was down; the restart did not hit the producer")
	}
	testenv.WaitSettled(t, g.insp, len(plan.Ops), 2*time.Minute)
	t.Logf("all settled %s after the restart", elapsed(down))
	acc := plan.Verify(t, g.emu, g.store, g.insp)
	t.Logf("%d duplicate applications: tasks whose acknowledgement the restart cut ran again after lease recovery", acc.Duplicates())
}
