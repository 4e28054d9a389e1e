package ratelimit

import (
	"context"
	"sync"
	"time"
)

// Cold-start defaults.
const (
	// DefaultColdRamp is how long a cold start lasts. At 197 calls/s it
	// leaves about 30 slots empty, room for handshakes of up to about
	// 150 ms (TLS to Tencent included).
	DefaultColdRamp = 300 * time.Millisecond
	// DefaultColdAfter is how long without a call makes the next one a cold
	// start. The API client closes connections idle for 4 s, so after a
	// pause of between 4 s and this the next calls dial too, without a
	// ramp: they do not bunch (a call whose dial ends past its send
	// deadline is not sent; see chatapi.WithSendDeadline), and each costs
	// its slot.
	DefaultColdAfter = 30 * time.Second
)

// ColdStart is a Limiter that, for a while after a cold start (its first
// call, or the first after a pause of ColdAfter), takes the wrapped
// Limiter's slots two at a time and leaves the first of each pair empty;
// otherwise it defers to the Limiter it wraps.
//
// After a cold start the HTTP client has no open connections, so each of
// the first calls waits for a TCP (and TLS) handshake after its slot and
// reaches the server that much later than the calls behind it on warm
// connections. The server's sliding second then holds more calls than the
// limiter let out in any second: make bench's recall scenarios saw the
// first six calls of a new worker arrive 25-50 ms late, within 3 ms of each
// other, and the window from there held 201-205 calls at a limit of 200
// (and 60007s) in 6 of 10 short runs. The empty slots make room in that
// window: they are used up, so no other process sharing the budget fills
// them, as it would fill slots this one merely did not ask for. The cost is
// about half a ramp's slots per cold start (about 30).
//
// The API client checks a call's send deadline once its connection is
// ready, and does not send a call whose dial ended past it
// (chatapi.WithSendDeadline), so most such calls cost their slot rather
// than arrive late. A call that missed its deadline
// MaxMissedSends times in a row still goes out late; the ramp stays for
// those.
//
// During a ramp callers take their turn one at a time, so that the two
// slots of a pair are the process's consecutive ones; a caller still
// waiting for its turn when the ramp ends waits as usual instead.
type ColdStart struct {
	inner Limiter
	ramp  time.Duration
	after time.Duration
	turn  chan struct{} // capacity 1: held while a caller takes its pair

	mu      sync.Mutex
	last    time.Time // the last grant; zero before the first
	rampEnd time.Time
}

// NewColdStart wraps inner with the default ramp and pause
// (DefaultColdRamp, DefaultColdAfter).
func NewColdStart(inner Limiter) *ColdStart {
	return newColdStart(inner, DefaultColdRamp, DefaultColdAfter)
}

func newColdStart(inner Limiter, ramp, after time.Duration) *ColdStart {
	return &ColdStart{inner: inner, ramp: ramp, after: after, turn: make(chan struct{}, 1)}
}

// Wait blocks until a call may go out: during a ramp, until the second slot
// of a pair, otherwise until the wrapped Limiter's next slot.
func (c *ColdStart) Wait(ctx context.Context) error {
	if end, ok := c.ramping(); ok {
		paired, err := c.waitPair(ctx, end)
		if err != nil {
			return err
		}
		if paired {
			c.granted()
			return nil
		}
	}
	if err := c.inner.Wait(ctx); err != nil {
		return err
	}
	c.granted()
	return nil
}

// ramping starts a ramp on a cold start and reports whether one runs and
// when it ends.
func (c *ColdStart) ramping() (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if (c.last.IsZero() || now.Sub(c.last) > c.after) && !now.Before(c.rampEnd) {
		c.rampEnd = now.Add(c.ramp)
	}
	return c.rampEnd, now.Before(c.rampEnd)
}

// waitPair waits for the caller's turn, unless the ramp ends first (then it
// reports false), and then for two slots of the wrapped Limiter, leaving
// the first empty.
func (c *ColdStart) waitPair(ctx context.Context, end time.Time) (bool, error) {
	t := time.NewTimer(time.Until(end))
	defer t.Stop()
	select {
	case c.turn <- struct{}{}:
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-c.turn }()
	for range 2 {
		if err := c.inner.Wait(ctx); err != nil {
			return false, err
		}
	}
	return true, nil
}

func (c *ColdStart) granted() {
	c.mu.Lock()
	c.last = time.Now()
	c.mu.Unlock()
}

// Backoff passes the pause to the wrapped Limiter.
func (c *ColdStart) Backoff(d time.Duration) { c.inner.Backoff(d) }
