package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Headroom is the share of the API's limit a Pacer uses. 98.5% of 200 is 197
// calls per second: within the 98% target, with 2 calls of slack per second
// for scheduling jitter between the pacer and the server's clock.
const Headroom = 0.985

// Limiter decides when the next call to one endpoint may go out.
type Limiter interface {
	// Wait blocks until a call may be made or ctx ends (then it returns
	// ctx's error and the caller must not call).
	Wait(ctx context.Context) error
	// Backoff holds every caller for at least d, after the API answered
	// "too fast" (60007 and friends).
	Backoff(d time.Duration)
}

// Pacer is a Limiter for one endpoint in one process. It is safe for
// concurrent use.
type Pacer struct {
	lim *rate.Limiter

	mu    sync.Mutex
	until time.Time // no call before this instant (set by Backoff)
}

// NewPacer returns a Pacer for an API limit of limit calls per second. It
// paces at limit*Headroom with a burst of 1.
func NewPacer(limit float64) *Pacer {
	return &Pacer{lim: rate.NewLimiter(rate.Limit(limit*Headroom), 1)}
}

// Rate returns the pacing rate in calls per second.
func (p *Pacer) Rate() float64 { return float64(p.lim.Limit()) }

// Wait blocks until the endpoint's next call may go out.
func (p *Pacer) Wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		d := time.Until(p.until)
		p.mu.Unlock()
		if d <= 0 {
			break
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return p.lim.Wait(ctx)
}

// Backoff holds every caller for at least d from now. Overlapping backoffs
// keep the later end.
func (p *Pacer) Backoff(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if end := time.Now().Add(d); end.After(p.until) {
		p.until = end
	}
}
