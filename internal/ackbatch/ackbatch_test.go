package ackbatch_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/ackbatch"
	"github.com/timq/timq/internal/testenv"
)

// roundTrips counts the scripts that reach Redis below the hook under test:
// sent alone (singles), or in pipelines (how many pipelines carried
// scripts, and how many scripts they carried). Other commands, such as a
// new connection's handshake, are not counted.
type roundTrips struct {
	singles    atomic.Int64
	pipelines  atomic.Int64
	pipedCmds  atomic.Int64
	leaseEvals atomic.Int64 // EVALs (not EVALSHAs) of lease-ending scripts
}

func isScript(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "eval", "evalsha":
		return true
	}
	return false
}

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isScript(cmd) {
			r.singles.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, c := range cmds {
			if isScript(c) {
				n++
			}
			if args := c.Args(); c.Name() == "eval" && len(args) > 4 && fmt.Sprint(args[3]) == "asynq:{ackbatch}:active" {
				r.leaseEvals.Add(1)
			}
		}
		if n > 0 {
			r.pipelines.Add(1)
			r.pipedCmds.Add(int64(n))
		}
		return next(ctx, cmds)
	}
}

// setup returns a client with the hook installed, and a counter of what
// gets past the hook.
func setup(t *testing.T, opts ackbatch.Options) (*redis.Client, *ackbatch.Hook, *roundTrips) {
	t.Helper()
	rdb := testenv.Redis(t).Client(t)
	h := ackbatch.Install(rdb, opts)
	rt := &roundTrips{}
	rdb.AddHook(rt) // added later, so it sees what the hook lets through
	return rdb, h, rt
}

// endLease stands for asynq's done script: its first keys are a queue's
// active list and lease set; it counts its runs in KEYS[3] and answers
// ARGV[1].
var endLease = redis.NewScript(`redis.call("INCR", KEYS[3]) return ARGV[1]`)

var endLeaseKeys = []string{"asynq:{q}:active", "asynq:{q}:lease", "asynq:{q}:runs"}

// dequeue stands for asynq's dequeue script (first key: the pending list).
var dequeue = redis.NewScript(`redis.call("INCR", KEYS[3]) return "dequeued"`)

var dequeueKeys = []string{"asynq:{q}:pending", "asynq:{q}:paused", "asynq:{q}:runs"}

func runs(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	n, err := rdb.Get(context.Background(), "asynq:{q}:runs").Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return n
}

func loadScripts(t *testing.T, rdb *redis.Client) {
	t.Helper()
	for _, s := range []*redis.Script{endLease, dequeue} {
		if err := s.Load(context.Background(), rdb).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// holdAll starts n lease-ending scripts at once; wait returns once all have
// returned (failing the test after 10 s), and then replies and errs hold
// their outcomes by index.
func holdAll(t *testing.T, ctx context.Context, rdb *redis.Client, n int) (replies []string, errs []error, wait func()) {
	replies, errs = make([]string, n), make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i], errs[i] = endLease.Run(ctx, rdb, endLeaseKeys, fmt.Sprint("reply-", i)).Text()
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return replies, errs, func() {
		t.Helper()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("held scripts did not return within 10 s")
		}
	}
}

// waitHeld waits until the hook holds n scripts in all.
func waitHeld(t *testing.T, h *ackbatch.Hook, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().Held < n {
		if time.Now().After(deadline) {
			t.Fatalf("hook holds %d scripts, want %d", h.Stats().Held, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAFullBatchGoesInOnePipelineAndEachCallerGetsItsOwnReply(t *testing.T) {
	rdb, h, rt := setup(t, ackbatch.Options{Delay: time.Hour, MaxBatch: 3})
	loadScripts(t, rdb)
	replies, errs, wait := holdAll(t, context.Background(), rdb, 3)
	wait()
	for i := range 3 {
		if errs[i] != nil || replies[i] != fmt.Sprint("reply-", i) {
			t.Errorf("caller %d: reply %q, error %v; want reply-%d", i, replies[i], errs[i], i)
		}
	}
	if got := runs(t, rdb); got != 3 {
		t.Errorf("the script ran %d times in Redis, want 3", got)
	}
	if st := h.Stats(); st != (ackbatch.Stats{Held: 3, Pipelines: 1}) {
		t.Errorf("stats %+v, want 3 held in 1 pipeline", st)
	}
	if p, c := rt.pipelines.Load(), rt.pipedCmds.Load(); p != 1 || c != 3 {
		t.Errorf("%d pipelines carrying %d commands reached Redis, want 1 carrying 3", p, c)
	}
}

func TestHeldScriptsGoWhenTheDelayHasPassed(t *testing.T) {
	rdb, h, rt := setup(t, ackbatch.Options{Delay: 20 * time.Millisecond, MaxBatch: 100})
	loadScripts(t, rdb)
	_, errs, wait := holdAll(t, context.Background(), rdb, 2)
	wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if got := runs(t, rdb); got != 2 {
		t.Errorf("the script ran %d times, want 2", got)
	}
	if st := h.Stats(); st.Held != 2 || st.Pipelines < 1 || st.Pipelines > 2 {
		t.Errorf("stats %+v, want 2 held in 1 or 2 pipelines", st)
	}
	if s := rt.singles.Load(); s != 0 {
		t.Errorf("%d scripts reached Redis alone, want 0", s)
	}
}

func TestAnotherScriptTakesTheHeldOnesAlong(t *testing.T) {
	rdb, h, rt := setup(t, ackbatch.Options{Delay: time.Hour, MaxBatch: 100})
	loadScripts(t, rdb)
	_, errs, wait := holdAll(t, context.Background(), rdb, 2)
	waitHeld(t, h, 2)
	if got := runs(t, rdb); got != 0 {
		t.Fatalf("held scripts ran before anything sent them: %d runs", got)
	}
	got, err := dequeue.Run(context.Background(), rdb, dequeueKeys).Text()
	if err != nil || got != "dequeued" {
		t.Fatalf("dequeue: %q, %v", got, err)
	}
	wait() // with an hour's delay, only the dequeue can have sent them
	for i, err := range errs {
		if err != nil {
			t.Errorf("held caller %d: %v", i, err)
		}
	}
	if got := runs(t, rdb); got != 3 {
		t.Errorf("%d scripts ran, want 3", got)
	}
	if p, c := rt.pipelines.Load(), rt.pipedCmds.Load(); p != 1 || c != 3 {
		t.Errorf("%d pipelines carrying %d commands, want 1 carrying the 2 held scripts and the dequeue", p, c)
	}
}

func TestOtherScriptsAndCommandsAreNotHeld(t *testing.T) {
	rdb, h, rt := setup(t, ackbatch.Options{Delay: time.Hour, MaxBatch: 100})
	loadScripts(t, rdb)
	ctx := context.Background()
	if got, err := dequeue.Run(ctx, rdb, dequeueKeys).Text(); err != nil || got != "dequeued" {
		t.Fatalf("dequeue: %q, %v", got, err)
	}
	if err := rdb.Incr(ctx, "asynq:{q}:runs").Err(); err != nil {
		t.Fatal(err)
	}
	// A script whose keys name two queues does not end one lease.
	mixed := []string{"asynq:{a}:active", "asynq:{b}:lease", "asynq:{q}:runs"}
	if _, err := endLease.Run(ctx, rdb, mixed, "x").Text(); err != nil {
		t.Fatal(err)
	}
	if st := h.Stats(); st.Held != 0 || st.Pipelines != 0 {
		t.Errorf("stats %+v, want nothing held", st)
	}
	if got := runs(t, rdb); got != 3 {
		t.Errorf("runs %d, want 3", got)
	}
	if p := rt.pipelines.Load(); p != 0 {
		t.Errorf("%d pipelines, want 0", p)
	}
}

func TestMaxBatchOfOneHoldsNothing(t *testing.T) {
	rdb, h, _ := setup(t, ackbatch.Options{Delay: 2 * time.Second, MaxBatch: 1})
	loadScripts(t, rdb)
	if got, err := endLease.Run(context.Background(), rdb, endLeaseKeys, "alone").Text(); err != nil || got != "alone" {
		t.Fatalf("got %q, %v", got, err)
	}
	if st := h.Stats(); st.Held != 0 {
		t.Errorf("stats %+v, want nothing held", st)
	}
}

func TestAHeldScriptWhoseContextEndsIsNotSent(t *testing.T) {
	rdb, h, _ := setup(t, ackbatch.Options{Delay: time.Hour, MaxBatch: 100})
	loadScripts(t, rdb)
	ctx, cancel := context.WithCancel(context.Background())
	_, cancelledErrs, waitCancelled := holdAll(t, ctx, rdb, 1)
	waitHeld(t, h, 1)
	_, errs, wait := holdAll(t, context.Background(), rdb, 1)
	waitHeld(t, h, 2)
	cancel()
	if _, err := dequeue.Run(context.Background(), rdb, dequeueKeys).Result(); err != nil {
		t.Fatal(err)
	}
	waitCancelled()
	wait()
	if !errors.Is(cancelledErrs[0], context.Canceled) {
		t.Errorf("cancelled caller got %v, want context.Canceled", cancelledErrs[0])
	}
	if errs[0] != nil {
		t.Errorf("the other held caller got %v", errs[0])
	}
	if got := runs(t, rdb); got != 2 { // the live held script and the dequeue
		t.Errorf("runs %d, want 2: the cancelled script must not run", got)
	}
}

func TestAScriptRedisDoesNotKnowYetStillRuns(t *testing.T) {
	// No Load: EVALSHA answers NOSCRIPT, and Script.Run falls back to EVAL,
	// which is held again.
	rdb, h, _ := setup(t, ackbatch.Options{Delay: 5 * time.Millisecond, MaxBatch: 100})
	// A comment unique to this run makes a script Redis has not seen.
	fresh := redis.NewScript(fmt.Sprintf("-- %d\nredis.call(\"INCR\", KEYS[3]) return \"fresh \" .. ARGV[1]", time.Now().UnixNano()))
	got, err := fresh.Run(context.Background(), rdb, endLeaseKeys, "run").Text()
	if err != nil || got != "fresh run" {
		t.Fatalf("got %q, %v", got, err)
	}
	if st := h.Stats(); st.Held != 2 {
		t.Errorf("stats %+v, want 2 held (EVALSHA, then EVAL)", st)
	}
	if n := runs(t, rdb); n != 1 {
		t.Errorf("runs %d, want 1", n)
	}
}
