package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPacerRateAndBurst(t *testing.T) {
	t.Parallel()
	p := NewPacer(200)
	if got := p.Rate(); got != 197 {
		t.Fatalf("Rate() = %v, want 197", got)
	}
	if b := p.lim.Burst(); b != 1 {
		t.Fatalf("burst = %d, want 1", b)
	}
	// With burst 1 the first call is free and the second must wait a full
	// token interval; Reserve tells the wait without sleeping.
	now := time.Now()
	if r := p.lim.ReserveN(now, 1); r.DelayFrom(now) != 0 {
		t.Fatalf("first call delayed %v", r.DelayFrom(now))
	}
	if d := p.lim.ReserveN(now, 1).DelayFrom(now); d < 5*time.Millisecond {
		t.Fatalf("second call at the same instant delayed %v, want about 1/197 s", d)
	}
}

func TestPacerBackoffHoldsCallers(t *testing.T) {
	t.Parallel()
	p := NewPacer(200)
	p.Backoff(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait during backoff = %v, want the context's deadline error", err)
	}
	// A shorter backoff does not cut the longer one.
	p.Backoff(time.Millisecond)
	if p.until.Sub(time.Now()) < 59*time.Minute {
		t.Fatal("a shorter Backoff shortened the hold")
	}
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
