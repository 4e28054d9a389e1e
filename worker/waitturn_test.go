package worker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/tasks"
)

// queuedLimiter hands out tokens one at a time, when the test says, in the
// order Wait was called, as the rate limiters do.
type queuedLimiter struct {
	mu      sync.Mutex
	waiting []string // who waits, in order of asking
	arrived chan struct{}
	grant   chan struct{}
}

func (l *queuedLimiter) Wait(ctx context.Context) error {
	who, _ := ctx.Value(whoKey{}).(string)
	l.mu.Lock()
	l.waiting = append(l.waiting, who)
	l.mu.Unlock()
	l.arrived <- struct{}{}
	select {
	case <-l.grant:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *queuedLimiter) Backoff(time.Duration) {}

type whoKey struct{}

// With any number of job operations waiting, an interactive one asks for
// its token behind at most maxJobWaiters of them.
func TestInteractiveCallsAskBehindFewJobCalls(t *testing.T) {
	ep := chatapi.EndpointModify
	w := &Worker{jobWaiters: map[chatapi.Endpoint]chan struct{}{ep: make(chan struct{}, maxJobWaiters)}}
	l := &queuedLimiter{arrived: make(chan struct{}, 100), grant: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wait := func(who, queue string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = w.waitTurn(context.WithValue(ctx, whoKey{}, who), l, ep, attempt{queue: queue})
		}()
	}
	const jobCalls = 50
	for range jobCalls {
		wait("job", jobs.LaneQueue(tasks.TypeModify))
	}
	for range maxJobWaiters {
		<-l.arrived
	}
	wait("interactive", tasks.QueueModify)
	<-l.arrived
	l.mu.Lock()
	order := append([]string(nil), l.waiting...)
	l.mu.Unlock()
	if len(order) != maxJobWaiters+1 || order[maxJobWaiters] != "interactive" {
		t.Fatalf("callers asking the limiter, in order: %v; want %d job calls, then the interactive one", order, maxJobWaiters)
	}
	// Every job call still gets its turn as tokens come.
	for range jobCalls + 1 {
		l.grant <- struct{}{}
	}
	wg.Wait()
	if n := len(l.waiting); n != jobCalls+1 {
		t.Fatalf("%d calls asked for a token, want %d", n, jobCalls+1)
	}
}
