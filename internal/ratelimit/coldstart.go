package ratelimit

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Cold-start defaults.
const (
	// DefaultColdRamp is how long calls go at half rate after a cold start.
	// At half of 197 calls/s it leaves about 30 calls of room in the
	// server's window, enough for handshakes of up to about 150 ms.
	DefaultColdRamp = 300 * time.Millisecond
	// DefaultColdAfter is how long without a call makes the next one a cold
	// start: shorter than net/http's 90 s idle-connection timeout, so a
	// ramp comes before the connections are gone.
	DefaultColdAfter = 30 * time.Second
)

// ColdStart is a Limiter that lets calls out at half rate for a while after
// a cold start (its first call, or the first after a pause of ColdAfter),
// and otherwise defers to the Limiter it wraps.
//
// After a cold start the HTTP client has no open connections, so each of
// the first calls waits for a TCP (and TLS) handshake after its slot and
// reaches the server that much later than the calls behind it on warm
// connections. The server's sliding second then holds more calls than the
// limiter let out in any second: make bench's recall scenarios saw the
// first six calls of a new worker arrive 25-50 ms late, within 3 ms of each
// other, and the window from there held 201-205 calls at a limit of 200
// (and 60007s) in 6 of 10 short runs. At half rate for the ramp, that
// window holds about rate*ramp/2 fewer calls, which absorbs the
// handshakes; the cost is those calls, once per cold start.
type ColdStart struct {
	inner Limiter
	warm  *rate.Limiter // half of rate, burst 1
	ramp  time.Duration
	after time.Duration

	mu      sync.Mutex
	last    time.Time // the last grant; zero before the first
	rampEnd time.Time
}

// NewColdStart wraps inner, whose rate is limit*Headroom calls per second,
// with the default ramp and pause (DefaultColdRamp, DefaultColdAfter).
func NewColdStart(inner Limiter, limit float64) *ColdStart {
	return newColdStart(inner, limit, DefaultColdRamp, DefaultColdAfter)
}

func newColdStart(inner Limiter, limit float64, ramp, after time.Duration) *ColdStart {
	return &ColdStart{inner: inner, warm: rate.NewLimiter(rate.Limit(limit*Headroom/2), 1), ramp: ramp, after: after}
}

// Wait blocks until a call may go out: during a ramp, first for the half
// rate, then for the wrapped Limiter.
func (c *ColdStart) Wait(ctx context.Context) error {
	c.mu.Lock()
	now := time.Now()
	if c.last.IsZero() || now.Sub(c.last) > c.after {
		c.rampEnd = now.Add(c.ramp)
	}
	ramping := now.Before(c.rampEnd)
	c.mu.Unlock()
	if ramping {
		if err := c.warm.Wait(ctx); err != nil {
			return err
		}
	}
	if err := c.inner.Wait(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.last = time.Now()
	c.mu.Unlock()
	return nil
}

// Backoff passes the pause to the wrapped Limiter.
func (c *ColdStart) Backoff(d time.Duration) { c.inner.Backoff(d) }
