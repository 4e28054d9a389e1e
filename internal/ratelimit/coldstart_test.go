package ratelimit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingLimiter never waits; it counts Waits and remembers Backoffs.
type countingLimiter struct {
	waits   atomic.Int64
	backoff atomic.Int64 // the last Backoff, in nanoseconds
}

func (l *countingLimiter) Wait(ctx context.Context) error {
	l.waits.Add(1)
	return ctx.Err()
}
func (l *countingLimiter) Backoff(d time.Duration) { l.backoff.Store(int64(d)) }

// gateLimiter grants a slot only when the test says so, and counts the
// callers waiting in it.
type gateLimiter struct {
	slots   chan struct{}
	waiting atomic.Int32
}

func (g *gateLimiter) Wait(ctx context.Context) error {
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	select {
	case <-g.slots:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (g *gateLimiter) Backoff(time.Duration) {}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestColdStartLeavesEverySecondSlotEmptyDuringTheRamp(t *testing.T) {
	t.Parallel()
	inner := &countingLimiter{}
	c := newColdStart(inner, time.Minute, time.Hour)
	ctx := context.Background()
	for range 10 {
		if err := c.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := inner.waits.Load(); got != 20 {
		t.Fatalf("10 calls in a ramp took %d slots, want 20 (every second one left empty)", got)
	}
	c.mu.Lock()
	c.rampEnd = time.Now() // the ramp is over
	c.mu.Unlock()
	for range 5 {
		if err := c.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got := inner.waits.Load(); got != 25 {
		t.Fatalf("5 calls after the ramp took %d slots, want 5", got-20)
	}
}

func TestColdStartTakesPairsOneCallerAtATime(t *testing.T) {
	t.Parallel()
	inner := &gateLimiter{slots: make(chan struct{}, 100)}
	c := newColdStart(inner, time.Minute, time.Hour)
	var wg sync.WaitGroup
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.Wait(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	waitFor(t, "one caller waits for a slot", func() bool { return inner.waiting.Load() == 1 })
	time.Sleep(50 * time.Millisecond)
	if n := inner.waiting.Load(); n != 1 {
		t.Fatalf("%d callers wait for a slot in a ramp at once, want 1 (pairs must be consecutive)", n)
	}
	for range 10 {
		inner.slots <- struct{}{}
	}
	wg.Wait()
	if left := len(inner.slots); left != 0 {
		t.Errorf("5 calls left %d of 10 slots, want each to take a pair", left)
	}
}

func TestColdStartCallersWaitingForTheirTurnGoOnWhenTheRampEnds(t *testing.T) {
	t.Parallel()
	inner := &gateLimiter{slots: make(chan struct{}, 100)}
	c := newColdStart(inner, 100*time.Millisecond, time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Wait(ctx) }()
	}
	// One holds the turn; when the ramp ends the other two wait for the
	// wrapped limiter's slots directly.
	waitFor(t, "all three wait for a slot after the ramp", func() bool { return inner.waiting.Load() == 3 })
	cancel()
	wg.Wait()
}

func TestColdStartRampsAgainOnlyAfterAPause(t *testing.T) {
	t.Parallel()
	c := newColdStart(&countingLimiter{}, time.Second, time.Minute)
	ctx := context.Background()
	end, ok := c.ramping()
	if !ok || time.Until(end) < 900*time.Millisecond {
		t.Fatalf("a first call: ramping = %v until %v, want a ramp of about 1s", ok, time.Until(end))
	}
	if again, _ := c.ramping(); !again.Equal(end) {
		t.Fatalf("a second caller before any grant moved the ramp's end by %v", again.Sub(end))
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.rampEnd = time.Now() // the ramp is over
	c.mu.Unlock()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.ramping(); ok {
		t.Fatal("a call a moment after the last one started a ramp")
	}
	c.mu.Lock()
	c.last = time.Now().Add(-2 * time.Minute) // a pause longer than after
	c.mu.Unlock()
	if end, ok := c.ramping(); !ok || time.Until(end) < 900*time.Millisecond {
		t.Fatalf("the first call after a pause: ramping = %v until %v, want a ramp of about 1s", ok, time.Until(end))
	}
}

func TestColdStartPassesBackoffAndCancellation(t *testing.T) {
	t.Parallel()
	inner := &countingLimiter{}
	c := newColdStart(inner, time.Minute, time.Hour)
	c.Backoff(3 * time.Second)
	if got := time.Duration(inner.backoff.Load()); got != 3*time.Second {
		t.Errorf("the wrapped limiter got Backoff(%v), want 3s", got)
	}
	c.turn <- struct{}{} // another caller holds the turn
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a canceled context = %v", err)
	}
	if got := inner.waits.Load(); got != 0 {
		t.Errorf("the wrapped limiter was asked %d times, want 0: a call canceled before its turn does not reach it", got)
	}
}
