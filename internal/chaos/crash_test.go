package chaos

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// slowAPI makes every call take 10-30 ms, so a backlog is still running when
// a worker is stopped or killed.
func slowAPI() map[chatapi.Endpoint]sim.Faults {
	f := sim.Faults{Latency: 10 * time.Millisecond, Jitter: 20 * time.Millisecond}
	return map[chatapi.Endpoint]sim.Faults{chatapi.EndpointClear: f, chatapi.EndpointRecall: f, chatapi.EndpointModify: f}
}

// activeIDs lists the IDs of the tasks asynq holds as active in timq's queues.
func (g *rig) activeIDs() map[string]string {
	g.t.Helper()
	out := map[string]string{}
	known, err := g.insp.Queues()
	if err != nil {
		g.t.Fatal(err)
	}
	for _, q := range tasks.Queues() {
		if !contains(known, q) {
			continue
		}
		for page := 1; ; page++ {
			ts, err := g.insp.ListActiveTasks(q, asynq.PageSize(1000), asynq.Page(page))
			if err != nil {
				g.t.Fatal(err)
			}
			for _, ti := range ts {
				out[ti.ID] = q
			}
			if len(ts) < 1000 {
				break
			}
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestSIGKILLedWorkerLosesNothing kills a `timq worker` process with SIGKILL
// in the middle of a backlog. The tasks it held stay "active" in Redis until
// their lease runs out; asynq's recoverer in a second worker then hands
// them back (asynq v0.26: leases last 30 s, and the recoverer, which runs
// when a server starts and then every minute, takes tasks whose lease ended
// more than 30 s ago, so recovery comes about 60 s after the kill). Every
// operation must end applied or dead-lettered exactly as planned.
func TestSIGKILLedWorkerLosesNothing(t *testing.T) {
	t.Parallel()
	g := newRig(t, sim.Config{Faults: slowAPI()})
	k := testenv.Scale(1, 10)
	plan := NewPlan(Mix{Prefix: "kill", Modify: 1500 * k, Recall: 300 * k, RecallSize: 2, Clear: 300 * k, Permanent: 3})
	plan.Seed(t, g.emu.Seed)
	if _, err := plan.Produce(context.Background(), g.client, plan.Ops, 8, time.Minute); err != nil {
		t.Fatal(err)
	}
	env := g.workerEnv("TIMQ_MAX_RETRY=25")
	a := g.startWorkerProc("worker-a", env)
	testenv.Eventually(t, time.Minute, "worker-a completed 400 tasks", func() (bool, string) {
		c := g.counts()
		return c.Completed >= 400, c.String()
	})
	a.Kill()
	killedAt := time.Now()
	mid := g.counts()
	held := g.activeIDs()
	t.Logf("SIGKILL worker-a: %v; %d tasks held by the dead worker", mid, len(held))
	if len(held) == 0 || mid.Completed+mid.Archived >= len(plan.Ops) {
		t.Fatalf("worker-a held no task when killed (%v); the test proves nothing", mid)
	}

	g.startWorkerProc("worker-b", env)
	testenv.WaitSettled(t, g.insp, len(plan.Ops), 3*time.Minute)
	t.Logf("all settled %s after the kill", elapsed(killedAt))

	// Every task the dead worker held was recovered by lease expiry.
	recovered := 0
	for id, q := range held {
		ti, err := g.insp.GetTaskInfo(q, id)
		if err != nil {
			t.Errorf("task %s held by the dead worker: %v", id, err)
			continue
		}
		// Recovery counts as a retry; a task dead-lettered on its
		// recovered run keeps that run's error as its last.
		if ti.Retried >= 1 || strings.Contains(ti.LastErr, "lease expired") {
			recovered++
		} else {
			t.Errorf("task %s (%v) held by the dead worker ended without lease recovery: retried %d, last error %q", id, ti.State, ti.Retried, ti.LastErr)
		}
	}
	if recovered != len(held) {
		t.Errorf("%d of the %d tasks held by the dead worker were recovered", recovered, len(held))
	}
	acc := plan.Verify(t, g.emu, g.store, g.insp)
	t.Logf("killed worker held %d tasks, %d recovered by lease expiry; %d duplicate applications", len(held), recovered, acc.Duplicates())
}

// TestSIGTERMUnderLoadLosesNothing stops a `timq worker` process with
// SIGTERM in the middle of a backlog: it must exit 0 within its shutdown
// timeout and leave no task active. A second worker finishes the backlog,
// and every operation ends as planned. Duplicates (at-least-once delivery)
// are counted; to show they are harmless, a sample of applied operations is
// then delivered again and the emulator's state must not change.
func TestSIGTERMUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	g := newRig(t, sim.Config{Faults: slowAPI()})
	k := testenv.Scale(1, 10)
	plan := NewPlan(Mix{Prefix: "term", Modify: 1200 * k, Recall: 300 * k, RecallSize: 2, Clear: 300 * k, Permanent: 2})
	plan.Seed(t, g.emu.Seed)
	if _, err := plan.Produce(context.Background(), g.client, plan.Ops, 8, time.Minute); err != nil {
		t.Fatal(err)
	}
	const shutdownTimeout = 10 * time.Second
	env := g.workerEnv("TIMQ_MAX_RETRY=25")
	a := g.startWorkerProc("worker-a", env, "--shutdown-timeout", shutdownTimeout.String())
	testenv.Eventually(t, time.Minute, "worker-a completed 300 tasks", func() (bool, string) {
		c := g.counts()
		return c.Completed >= 300, c.String()
	})
	before := g.counts()
	a.Signal(syscall.SIGTERM)
	sent := time.Now()
	code, err := a.Wait(shutdownTimeout + 5*time.Second)
	if err != nil {
		t.Fatalf("worker-a did not stop within its shutdown timeout %v (+5 s): %v", shutdownTimeout, err)
	}
	stopped := time.Since(sent)
	mid := g.counts()
	t.Logf("SIGTERM with %v: worker-a exited %d after %v; now %v", before, code, stopped.Round(time.Millisecond), mid)
	if code != 0 {
		t.Errorf("worker-a exited %d after SIGTERM, want 0", code)
	}
	if stopped > shutdownTimeout+2*time.Second {
		t.Errorf("worker-a took %v to stop, more than its shutdown timeout %v", stopped, shutdownTimeout)
	}
	if mid.Active != 0 {
		t.Errorf("%d tasks still active after a graceful stop; they were neither finished nor handed back", mid.Active)
	}
	if mid.Completed+mid.Archived >= len(plan.Ops) {
		t.Fatalf("the backlog finished before SIGTERM (%v); the test proves nothing", mid)
	}

	g.startWorkerProc("worker-b", env)
	testenv.WaitSettled(t, g.insp, len(plan.Ops), 2*time.Minute)
	acc := plan.Verify(t, g.emu, g.store, g.insp)

	// Deliver a sample of applied operations again, as a redelivery would.
	snap := plan.Snapshot(t, g.emu)
	var again []*Op
	replayed := map[string]int{}
	for i, o := range plan.Ops {
		if i%5 == 0 && !o.DeadLettered() {
			c := *o
			c.ID = o.ID + "-again"
			again = append(again, &c)
			replayed[o.Payload.TaskType()]++
		}
	}
	if _, err := plan.Produce(context.Background(), g.client, again, 8, time.Minute); err != nil {
		t.Fatal(err)
	}
	testenv.WaitSettled(t, g.insp, len(plan.Ops)+len(again), 2*time.Minute)
	if diff := plan.Snapshot(t, g.emu).Diff(snap); diff != "" {
		t.Errorf("delivering applied operations again changed the emulator's state:\n%s", diff)
	}
	after := plan.Count(g.emu)
	t.Logf("duplicates: %d during the stop and restart; then %d operations delivered again (%v) added %d (modify %d, recall %d, clear %d) and left the state unchanged",
		acc.Duplicates(), len(again), replayed, after.Duplicates()-acc.Duplicates(),
		after.DupModify-acc.DupModify, after.DupRecall-acc.DupRecall, after.DupClear-acc.DupClear)
	if got, want := after.Duplicates()-acc.Duplicates(), int64(replayed[tasks.TypeModify]+2*replayed[tasks.TypeRecall]+replayed[tasks.TypeClear]); got != want {
		t.Errorf("the redelivered operations counted %d duplicates, want %d", got, want)
	}
	if n, _ := g.store.Count(context.Background()); n != int64(acc.DeadLettered) {
		t.Errorf("%d dead letters after the redelivery, want still %d", n, acc.DeadLettered)
	}
}

// TestCrashOnLastAttemptIsDeadLettered kills a worker while it holds tasks
// on their last attempt (MaxRetry 0, which `timq enqueue --max-retry 0`
// allows; any task on its final retry is in the same place). asynq's
// recoverer archives such a task itself ("asynq: task lease expired")
// without running timq's handler, so the contract says it must still end
// applied or in timq's dead-letter store. It runs under make soak only: it
// needs a second lease-recovery wait of about a minute, and make test keeps
// one (TestSIGKILLedWorkerLosesNothing).
func TestCrashOnLastAttemptIsDeadLettered(t *testing.T) {
	if !testenv.Soak() {
		t.Skip("make soak only (TIMQ_SOAK=1): a second one-minute lease-recovery wait")
	}
	t.Parallel()
	g := newRig(t, sim.Config{Faults: slowAPI()})
	plan := NewPlan(Mix{Prefix: "last", Modify: 2000, MaxRetry: -1})
	plan.Seed(t, g.emu.Seed)
	if _, err := plan.Produce(context.Background(), g.client, plan.Ops, 8, time.Minute); err != nil {
		t.Fatal(err)
	}
	env := g.workerEnv()
	a := g.startWorkerProc("worker-a", env)
	testenv.Eventually(t, time.Minute, "worker-a completed 300 tasks", func() (bool, string) {
		c := g.counts()
		return c.Completed >= 300, c.String()
	})
	a.Kill()
	held := g.activeIDs()
	t.Logf("SIGKILL worker-a holding %d tasks on their last attempt", len(held))
	g.startWorkerProc("worker-b", env)
	testenv.WaitSettled(t, g.insp, len(plan.Ops), 3*time.Minute)
	// asynq archived the held tasks itself; worker-b's archive reconciler
	// (every 30 s) writes their dead letters.
	testenv.Eventually(t, time.Minute, "every archived task has its dead letter", func() (bool, string) {
		c := g.counts()
		n, err := g.store.Count(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return n >= int64(c.Archived), fmt.Sprintf("%d dead letters, %d archived", n, c.Archived)
	})
	plan.CrashOnLastAttempt = true
	acc := plan.Verify(t, g.emu, g.store, g.insp)
	t.Logf("%d operations dead-lettered by the archive reconciler after the crash, %d of them applied by the cut attempt", acc.CrashArchived, acc.CrashArchivedApplied)
	if acc.CrashArchived != len(held) {
		t.Errorf("%d crash dead letters, want one per task held by the killed worker (%d)", acc.CrashArchived, len(held))
	}
}
