package worker_test

import (
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/tasks"
	"github.com/timq/timq/worker"
)

// Three workers share one Redis, so they share each endpoint's budget: the
// emulator never sees more than its limit in any sliding second and never
// answers 60007, where three local pacers would send 591 calls a second.
func TestWorkersShareOneBudget(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	// A limit of 190 (paced at 187/s), not 200 (197/s): on a loaded CI
	// machine calls reach the emulator with enough jitter to put 200 in a
	// sliding second now and then (seen twice in 45 runs under load). Three
	// local pacers would still send 561.
	b.cfg.Rate = 190
	const n = 600
	b.group("shared-budget", sim.GroupPublic, n)
	var ws []*worker.Worker
	for range 3 {
		ws = append(ws, b.startWorker())
	}
	for i := 1; i <= n; i++ {
		b.enqueue(tasks.Modify{GroupId: "shared-budget", MsgSeq: uint64(i), MsgBody: tasks.TextBody("x")})
	}
	c := b.waitSettled(n, 60*time.Second)
	if c.completed != n || c.archived != 0 {
		t.Fatalf("counts = %+v, want %d completed", c, n)
	}
	st := b.emu.Stats().Endpoints[chatapi.EndpointModify]
	if st.Codes[60007] != 0 || st.MaxPerSecond > 200 {
		t.Fatalf("the emulator saw %d calls in one sliding second and answered 60007 %d times; want at most 200 and none", st.MaxPerSecond, st.Codes[60007])
	}
	var commands, grants int64
	for i, w := range ws {
		bs := w.BudgetStats()[chatapi.EndpointModify.Short()]
		if bs.Grants == 0 {
			t.Errorf("worker %d made no call", i)
		}
		commands += bs.Commands
		grants += bs.Grants
	}
	if st.Calls != n {
		t.Fatalf("the emulator saw %d calls, want %d", st.Calls, n)
	}
	// Every call had a slot; a few more may have been granted to callers
	// that then gave up, up to 30 per worker.
	if grants < n || grants > n+3*30 || float64(commands) > 2*float64(grants) {
		t.Fatalf("%d Redis commands for %d slots, want %d-%d slots (%d calls, up to 30 left empty per worker) and at most 2 commands each",
			commands, grants, n, n+3*30, n)
	}
	for i := 1; i <= n; i++ {
		if m := b.msg("shared-budget", uint64(i)); m.Modified != 1 {
			t.Fatalf("seq %d modified %d times", i, m.Modified)
		}
	}
	t.Logf("most calls in a sliding second: %d; %d Redis commands for %d calls", st.MaxPerSecond, commands, grants)
}
