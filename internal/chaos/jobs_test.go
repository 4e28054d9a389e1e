package chaos

import (
	"context"
	"fmt"
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
