package ratelimit

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// The Pacer's tests run in testing/synctest bubbles, where x/time/rate, the
// Pacer's timers and the contexts' deadlines all read one fake clock: the
// intervals below are exact.

func TestPacerRateAndBurst(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := NewPacer(200)
		if got := p.Rate(); got != 197 {
			t.Fatalf("Rate() = %v, want 197", got)
		}
		ctx := context.Background()
		start := time.Now()
		var at []time.Duration
		for range 198 {
			if err := p.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			at = append(at, time.Since(start))
		}
		// Burst 1: the first call is free, each next one a token's
		// interval (1/197 s) later, so one second holds 198 calls.
		if at[0] != 0 {
			t.Fatalf("the first call waited %v", at[0])
		}
		iv := time.Second / 197
		for i := 1; i < len(at); i++ {
			if gap := at[i] - at[i-1]; gap < iv-time.Microsecond || gap > iv+time.Microsecond {
				t.Fatalf("calls %d and %d are %v apart, want %v", i-1, i, gap, iv)
			}
		}
		if last := at[len(at)-1]; last > time.Second {
			t.Fatalf("198 calls took %v, want them within a second (burst 1 plus 197/s)", last)
		}
	})
}

func TestPacerBackoffHoldsCallers(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		p := NewPacer(200)
		start := time.Now()
		p.Backoff(time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait during backoff = %v, want the context's deadline error", err)
		}
		// A shorter backoff does not cut the longer one.
		p.Backoff(time.Millisecond)
		if err := p.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != time.Hour {
			t.Fatalf("Wait returned %v after a backoff of an hour, then one of a millisecond; want an hour", d)
		}
	})
}

func TestPacerWaitCanceled(t *testing.T) {
	t.Parallel()
	p := NewPacer(200)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
}
