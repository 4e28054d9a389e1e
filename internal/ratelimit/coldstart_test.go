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

func TestColdStartHalvesTheRateDuringTheRamp(t *testing.T) {
	t.Parallel()
	inner := &countingLimiter{}
	const ramp = 200 * time.Millisecond
	c := newColdStart(inner, 200, ramp, time.Minute)
	start := time.Now()
	var mu sync.Mutex
	var grants []time.Duration
	ctx, cancel := context.WithTimeout(context.Background(), ramp+300*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.Wait(ctx) == nil {
				mu.Lock()
				grants = append(grants, time.Since(start))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	inRamp := 0
	for _, g := range grants {
		if g < ramp {
			inRamp++
		}
	}
	// Half of 197/s for 200 ms is 19.7 calls, plus the free first one.
	if want := 21; inRamp > want {
		t.Errorf("%d calls in the %v ramp, want at most %d (half rate)", inRamp, ramp, want)
	}
	// After the ramp the wrapped limiter, which never waits, decides alone.
	if after := len(grants) - inRamp; after < 1000 {
		t.Errorf("%d calls in the 300 ms after the ramp, want the wrapped limiter's pace (it never waits)", after)
	}
	if got := inner.waits.Load(); got < int64(len(grants)) {
		t.Errorf("the wrapped limiter was asked %d times for %d grants", got, len(grants))
	}
}

func TestColdStartRampsAgainOnlyAfterAPause(t *testing.T) {
	t.Parallel()
	c := newColdStart(&countingLimiter{}, 200, time.Second, time.Minute)
	ctx := context.Background()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	firstEnd := c.rampEnd
	c.rampEnd = time.Now() // the ramp is over
	c.mu.Unlock()
	if time.Until(firstEnd) < 900*time.Millisecond {
		t.Fatalf("the first call started a ramp ending in %v, want about 1s", time.Until(firstEnd))
	}
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	if c.rampEnd.After(time.Now()) {
		t.Errorf("a call a moment after the last one started a ramp")
	}
	c.last = time.Now().Add(-2 * time.Minute) // a pause longer than after
	c.mu.Unlock()
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Until(c.rampEnd) < 900*time.Millisecond {
		t.Errorf("the first call after a pause started a ramp ending in %v, want about 1s", time.Until(c.rampEnd))
	}
}

func TestColdStartPassesBackoffAndCancellation(t *testing.T) {
	t.Parallel()
	inner := &countingLimiter{}
	c := NewColdStart(inner, 200)
	c.Backoff(3 * time.Second)
	if got := time.Duration(inner.backoff.Load()); got != 3*time.Second {
		t.Errorf("the wrapped limiter got Backoff(%v), want 3s", got)
	}
	if err := c.Wait(context.Background()); err != nil { // the ramp's free call
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a canceled context = %v", err)
	}
	if got := inner.waits.Load(); got != 1 {
		t.Errorf("the wrapped limiter was asked %d times, want 1: a call canceled in the ramp does not reach it", got)
	}
}
