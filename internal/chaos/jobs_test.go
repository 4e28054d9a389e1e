package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// TestSIGKILLedWorkerMidJobCountsEveryOperationOnce kills a `timq worker`
// process in the middle of a job; a second one finishes it after asynq's
// lease recovery. The job's counts must be exact: applied + dead-lettered
// = total, applied equal to the messages the emulator saw modified, and
// the permanent failures in the job's report.
func TestSIGKILLedWorkerMidJobCountsEveryOperationOnce(t *testing.T) {
	t.Parallel()
	g := newRig(t, sim.Config{Faults: slowAPI()})
	n := testenv.Scale(1500, 10)
	const missing = 3
	if err := g.emu.CreateGroup("job-kill", sim.GroupPublic); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.emu.AddMessages("job-kill", "", n); err != nil {
		t.Fatal(err)
	}
	enq := enqueue.New(g.conn)
	t.Cleanup(func() { enq.Close() })
	ctx := context.Background()
	jw, err := enq.NewJob(enqueue.JobName("kill"))
	if err != nil {
		t.Fatal(err)
	}
	for s := 1; s <= n+missing; s++ { // the last three messages do not exist
		if err := jw.Add(ctx, tasks.Modify{GroupId: "job-kill", MsgSeq: uint64(s), CloudCustomData: ptr(fmt.Sprint("v", s))}); err != nil {
			t.Fatal(err)
		}
	}
	job, err := jw.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	store, err := enq.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	get := func() enqueue.Job {
		j, err := store.Get(ctx, job.ID)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	env := g.workerEnv("TIMQ_MAX_RETRY=25")
	a := g.startWorkerProc("worker-a", env)
	testenv.Eventually(t, time.Minute, "worker-a applied 300 of the job", func() (bool, string) {
		j := get()
		return j.Counts.Applied >= 300, fmt.Sprintf("%+v", j.Counts)
	})
	a.Kill()
	mid := get()
	t.Logf("SIGKILL worker-a with the job at %+v", mid.Counts)
	if mid.Finished {
		t.Fatal("the job ended before the kill; the test proves nothing")
	}
	g.startWorkerProc("worker-b", env)
	var end enqueue.Job
	testenv.Eventually(t, 3*time.Minute, "the job ended", func() (bool, string) {
		end = get()
		return end.Finished, fmt.Sprintf("%s %+v", end.State, end.Counts)
	})
	c := end.Counts
	if end.State != enqueue.JobDone || c.Total != int64(n+missing) || c.Applied != int64(n) || c.DeadLettered != missing || c.Cancelled != 0 {
		t.Fatalf("job ended %s %+v, want done with %d applied and %d dead-lettered", end.State, c, n, missing)
	}
	modified, twice := 0, 0
	for s := 1; s <= n; s++ {
		m, _ := g.emu.Message("job-kill", "", uint64(s))
		if m.Modified > 0 {
			modified++
		}
		if m.Modified > 1 {
			twice++
		}
	}
	if modified != n {
		t.Fatalf("the emulator modified %d of %d messages", modified, n)
	}
	fails, err := store.Failures(ctx, job.ID)
	if err != nil || len(fails) != missing {
		t.Fatalf("failures = %d (%v), want %d", len(fails), err, missing)
	}
	t.Logf("job done: %+v; %d messages modified twice (a call the killed worker made but could not count)", c, twice)
}

func ptr[T any](v T) *T { return &v }

// TestSIGKILLedProducerLeavesNoJob kills `timq bulk` while it writes a
// job's operations: no job appears (workers see a job only once its hash
// is written, at the end), nothing reaches the lanes, and what it wrote
// expires within the hour.
func TestSIGKILLedProducerLeavesNoJob(t *testing.T) {
	t.Parallel()
	g := newRig(t, sim.Config{})
	rdb := g.redis.Client(t)
	ctx := context.Background()
	n := testenv.Scale(300_000, 3)
	path := filepath.Join(t.TempDir(), "ops.jsonl")
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "{\"op\":\"modify\",\"GroupId\":\"g%d\",\"MsgSeq\":%d,\"CloudCustomData\":\"x\"}\n", i%50, i+1)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	g.startWorkerProc("worker", g.workerEnv())
	p := testenv.Start(t, "bulk", g.workerEnv(), testenv.Binary(t), "bulk", path)
	var opsKeys []string
	testenv.Eventually(t, time.Minute, "bulk wrote some operations", func() (bool, string) {
		opsKeys = rdb.Keys(ctx, "timq:job:{*}:ops:*").Val()
		for _, k := range opsKeys {
			if rdb.LLen(ctx, k).Val() > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("ops keys %v", opsKeys)
	})
	p.Kill()
	if code, _ := p.Wait(time.Second); code != -1 {
		t.Fatalf("bulk exited with %d before the kill; the test proves nothing", code)
	}
	written := int64(0)
	for _, k := range opsKeys {
		written += rdb.LLen(ctx, k).Val()
		if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("%s expires in %v, want within the hour", k, ttl)
		}
	}
	if written >= int64(n) {
		t.Fatalf("bulk wrote all %d operations before the kill; the test proves nothing", n)
	}
	t.Logf("killed bulk after it wrote %d of %d operations", written, n)
	store, err := enqueue.New(g.conn).Jobs()
	if err != nil {
		t.Fatal(err)
	}
	if js, err := store.List(ctx, 0); err != nil || len(js) != 0 {
		t.Fatalf("jobs after the kill = %+v, %v; want none", js, err)
	}
	if hashes := rdb.Keys(ctx, "timq:job:{*}").Val(); len(hashes) != 0 {
		t.Fatalf("job hashes after the kill: %v", hashes)
	}
	// The worker's feeder looks every 100 ms; after some of its rounds the
	// lanes still hold nothing.
	testenv.WaitFor(t, 10*time.Second, "the feeder's lease", func() bool { return rdb.Exists(ctx, "timq:jobs:feeder").Val() == 1 })
	for _, q := range []string{"timq-job-clear", "timq-job-recall", "timq-job-modify"} {
		if info, err := g.insp.GetQueueInfo(q); err == nil && info.Size != 0 {
			t.Errorf("lane %s holds %d tasks of a job never closed", q, info.Size)
		}
	}
}
