package prefetch_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/prefetch"
	"github.com/timq/timq/internal/redishook"
	"github.com/timq/timq/internal/testenv"
)

// server runs an asynq server with slots concurrency for queue on a client
// with the hook, and records every task it processes; it stops when the test
// ends.
type server struct {
	db   *testenv.RedisDB
	rdb  *redis.Client
	hook *prefetch.Hook
	srv  *asynq.Server

	mu   sync.Mutex
	seen map[string]int // payload -> times processed
}

func startServer(t *testing.T, db *testenv.RedisDB, queue string, slots int, opts prefetch.Options, handler func(*asynq.Task) error) *server {
	t.Helper()
	s := &server{db: db, seen: map[string]int{}}
	s.rdb = redis.NewClient(&redis.Options{Addr: db.Addr, DB: db.DB})
	s.hook = prefetch.Install(s.rdb, opts)
	s.srv = asynq.NewServerFromRedisClient(s.rdb, asynq.Config{
		Concurrency: slots, Queues: map[string]int{queue: 1}, LogLevel: asynq.FatalLevel,
		TaskCheckInterval: 10 * time.Millisecond,
	})
	if err := s.srv.Start(asynq.HandlerFunc(func(_ context.Context, task *asynq.Task) error {
		s.mu.Lock()
		s.seen[string(task.Payload())]++
		s.mu.Unlock()
		if handler != nil {
			return handler(task)
		}
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

func (s *server) stop() {
	s.srv.Shutdown()
	s.hook.Close()
	_ = s.hook.HandBack(context.Background())
	_ = s.rdb.Close()
}

func enqueue(t *testing.T, db *testenv.RedisDB, queue string, n int) {
	t.Helper()
	cli := asynq.NewClient(db.ConnOpt())
	defer cli.Close()
	for i := range n {
		if _, err := cli.Enqueue(asynq.NewTask("t", []byte(fmt.Sprint(i))), asynq.Queue(queue), asynq.MaxRetry(0)); err != nil {
			t.Fatal(err)
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func queueInfo(t *testing.T, db *testenv.RedisDB, queue string) *asynq.QueueInfo {
	t.Helper()
	insp := asynq.NewInspector(db.ConnOpt())
	defer insp.Close()
	info, err := insp.GetQueueInfo(queue)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestAsynqTakesTasksInBatchesAndRunsEachOnce fails if asynq's dequeue
// script is no longer the one this package recognises.
func TestAsynqTakesTasksInBatchesAndRunsEachOnce(t *testing.T) {
	db := testenv.Redis(t)
	const queue, n = "prefetch-run", 100
	enqueue(t, db, queue, n)
	s := startServer(t, db, queue, 4, prefetch.Options{Batch: 8}, nil)
	waitFor(t, "every task processed", func() bool {
		info := queueInfo(t, db, queue)
		return info.Processed == n && info.Active == 0 && info.Pending == 0
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.seen) != n {
		t.Errorf("%d distinct tasks processed, want %d", len(s.seen), n)
	}
	for p, c := range s.seen {
		if c != 1 {
			t.Errorf("task %s processed %d times", p, c)
		}
	}
	st := s.hook.Stats()
	if st.Served != n {
		t.Errorf("the hook served %d dequeues, want %d: asynq's dequeue script was not recognised", st.Served, n)
	}
	if st.Fetches == 0 || st.Fetches > n/2 {
		t.Errorf("%d fetches for %d tasks: want batches", st.Fetches, n)
	}
}

// TestHandBackReturnsBufferedTasksToTheirQueue stops a server whose handler
// blocks, so that the hook still holds fetched tasks: HandBack puts them
// back in the queue, pending, and a second server then runs every task
// exactly once in all.
func TestHandBackReturnsBufferedTasksToTheirQueue(t *testing.T) {
	db := testenv.Redis(t)
	const queue, n = "prefetch-handback", 20
	enqueue(t, db, queue, n)
	release := make(chan struct{})
	first := startServer(t, db, queue, 4, prefetch.Options{Batch: 8}, func(*asynq.Task) error {
		<-release
		return nil
	})
	waitFor(t, "the first server's slots full", func() bool {
		first.mu.Lock()
		defer first.mu.Unlock()
		return len(first.seen) == 4
	})
	info := queueInfo(t, db, queue)
	if info.Active <= 4 {
		t.Fatalf("%d tasks active with 4 slots full: nothing was prefetched", info.Active)
	}
	buffered := info.Active - 4
	first.srv.Stop() // takes nothing more, so the buffer stays
	close(release)
	first.stop()
	if got := first.hook.Stats().HandedBack; got == 0 {
		t.Fatalf("handed back %d tasks, want the buffered ones", got)
	}
	info = queueInfo(t, db, queue)
	if info.Active != 0 || info.Pending+int(first.hook.Stats().Served) != n {
		t.Fatalf("after the stop: %d active, %d pending, %d served (%d were buffered); want 0 active and pending + served = %d",
			info.Active, info.Pending, first.hook.Stats().Served, buffered, n)
	}
	second := startServer(t, db, queue, 4, prefetch.Options{Batch: 8}, nil)
	waitFor(t, "every task processed", func() bool {
		info := queueInfo(t, db, queue)
		return info.Pending == 0 && info.Active == 0 && info.Processed == n
	})
	seen := map[string]int{}
	for _, s := range []*server{first, second} {
		s.mu.Lock()
		for p, c := range s.seen {
			seen[p] += c
		}
		s.mu.Unlock()
	}
	checkRanOnce(t, seen, n)
}

// TestStaleBufferedTasksGoBack holds the only slot for longer than MaxAge:
// the sweeper hands the buffered tasks back rather than let their leases
// age, and each task still runs once.
func TestStaleBufferedTasksGoBack(t *testing.T) {
	db := testenv.Redis(t)
	const queue, n = "prefetch-stale", 6
	enqueue(t, db, queue, n)
	var once sync.Once
	block := make(chan struct{})
	s := startServer(t, db, queue, 1, prefetch.Options{Batch: 4, MaxAge: 100 * time.Millisecond}, func(*asynq.Task) error {
		once.Do(func() { <-block }) // the first task holds its slot
		return nil
	})
	waitFor(t, "a stale hand-back", func() bool { return s.hook.Stats().HandedBack > 0 })
	close(block)
	waitFor(t, "every task processed", func() bool {
		info := queueInfo(t, db, queue)
		return info.Pending == 0 && info.Active == 0 && info.Processed == n
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	checkRanOnce(t, s.seen, n)
}

// TestAPausedQueueIsNotFetched: asynq's rule that a paused queue hands out
// nothing holds for fetches too.
func TestAPausedQueueIsNotFetched(t *testing.T) {
	db := testenv.Redis(t)
	const queue, n = "prefetch-paused", 5
	enqueue(t, db, queue, n)
	insp := asynq.NewInspector(db.ConnOpt())
	defer insp.Close()
	if err := insp.PauseQueue(queue); err != nil {
		t.Fatal(err)
	}
	startServer(t, db, queue, 4, prefetch.Options{Batch: 8}, nil)
	time.Sleep(200 * time.Millisecond) // some 20 of asynq's 10 ms polls
	if info := queueInfo(t, db, queue); info.Pending != n || info.Active != 0 {
		t.Fatalf("paused queue: %d pending, %d active; want %d and 0", info.Pending, info.Active, n)
	}
	if err := insp.UnpauseQueue(queue); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every task processed", func() bool { return queueInfo(t, db, queue).Processed == n })
}

// TestOtherScriptsPassThrough: only asynq's own dequeue script is answered;
// another script with the same keys runs as sent.
func TestOtherScriptsPassThrough(t *testing.T) {
	db := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: db.Addr, DB: db.DB})
	defer rdb.Close()
	h := prefetch.Install(rdb, prefetch.Options{})
	defer h.Close()
	keys := []string{"asynq:{x}:pending", "asynq:{x}:paused", "asynq:{x}:active", "asynq:{x}:lease"}
	got, err := redis.NewScript(`return "mine"`).Run(context.Background(), rdb, keys, 1, "asynq:{x}:t:").Text()
	if err != nil || got != "mine" {
		t.Fatalf("got %q, %v", got, err)
	}
	if st := h.Stats(); st != (prefetch.Stats{}) {
		t.Errorf("stats %+v, want none", st)
	}
}

// lostReply lets the first hand-back script run in Redis and then reports
// an error, as when its reply is lost; later calls pass.
type lostReply struct {
	redishook.ProcessOnly
	done atomic.Bool
}

func (l *lostReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		isHandBack := len(args) > 5 && args[2] == 3 && strings.HasSuffix(fmt.Sprint(args[3]), ":pending") && strings.HasSuffix(fmt.Sprint(args[4]), ":active")
		if err := next(ctx, cmd); err != nil || !isHandBack || l.done.Swap(true) {
			return err
		}
		err := errors.New("reply lost")
		cmd.SetErr(err)
		return err
	}
}

// TestARetriedHandBackTakesNothingFromOthers: a hand-back whose reply was
// lost ran in Redis, and the tasks went to another server meanwhile; the
// retry must leave them alone, so each task runs once.
func TestARetriedHandBackTakesNothingFromOthers(t *testing.T) {
	db := testenv.Redis(t)
	const queue, n = "prefetch-retry", 6
	enqueue(t, db, queue, n)
	rdb := redis.NewClient(&redis.Options{Addr: db.Addr, DB: db.DB})
	h := prefetch.Install(rdb, prefetch.Options{Batch: 4, MaxAge: 50 * time.Millisecond})
	rdb.AddHook(&lostReply{})
	t.Cleanup(func() { h.Close(); rdb.Close() })
	// Take tasks as asynq's processor would, once, and never ask again: the
	// other three go stale.
	dq := redis.NewScript(prefetch.AsynqDequeueSource)
	keys := []string{"asynq:{" + queue + "}:pending", "asynq:{" + queue + "}:paused", "asynq:{" + queue + "}:active", "asynq:{" + queue + "}:lease"}
	if err := dq.Run(context.Background(), rdb, keys, time.Now().Add(30*time.Second).Unix(), "asynq:{"+queue+"}:t:").Err(); err != nil {
		t.Fatal(err)
	}
	if h.Stats().Fetches != 1 {
		t.Fatalf("stats %+v: the dequeue was not answered by a fetch", h.Stats())
	}
	// The first hand-back runs but "fails"; meanwhile a plain asynq server
	// takes and runs everything; the sweeper retries each second.
	other := startPlainServer(t, db, queue)
	waitFor(t, "every task processed", func() bool {
		info := queueInfo(t, db, queue)
		return info.Processed >= n-1 && info.Pending == 0
	})
	time.Sleep(2 * time.Second) // anything taken back would run again by now
	info := queueInfo(t, db, queue)
	if info.Processed != n-1 || info.Pending != 0 || info.Active != 1 {
		t.Errorf("processed %d, pending %d, active %d; want %d, 0 and 1 (the task our dequeue got)", info.Processed, info.Pending, info.Active, n-1)
	}
	other.mu.Lock()
	defer other.mu.Unlock()
	checkRanOnce(t, other.seen, len(other.seen))
}

// checkRanOnce fails the test unless seen (payload -> runs) holds n tasks,
// each run once.
func checkRanOnce(t *testing.T, seen map[string]int, n int) {
	t.Helper()
	if len(seen) != n {
		t.Errorf("%d distinct tasks ran, want %d", len(seen), n)
	}
	for p, c := range seen {
		if c != 1 {
			t.Errorf("task %s ran %d times", p, c)
		}
	}
}

// startPlainServer runs an asynq server without the hook whose tasks take
// 1.5 s each, so that they are still active when a hand-back is retried.
func startPlainServer(t *testing.T, db *testenv.RedisDB, queue string) *server {
	t.Helper()
	s := &server{db: db, seen: map[string]int{}}
	s.srv = asynq.NewServer(db.ConnOpt(), asynq.Config{
		Concurrency: 8, Queues: map[string]int{queue: 1}, LogLevel: asynq.FatalLevel,
		TaskCheckInterval: 10 * time.Millisecond,
	})
	if err := s.srv.Start(asynq.HandlerFunc(func(_ context.Context, task *asynq.Task) error {
		s.mu.Lock()
		s.seen[string(task.Payload())]++
		s.mu.Unlock()
		time.Sleep(1500 * time.Millisecond)
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.srv.Shutdown)
	return s
}
