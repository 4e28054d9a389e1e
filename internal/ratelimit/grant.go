package ratelimit

import (
	"context"
	"time"
)

// A Grant tells a caller which slot its Wait granted, so that the call can
// be held to leaving within one slot interval of it. Waking on time is not
// enough: a process kept off the CPU between Wait and the moment its
// request is written sends the call late, bunched with the calls of later
// slots, and a sliding second can then hold more calls than the budget.
//
// Make one per call with WithGrant and pass its context to Wait. Only a
// Shared limiter fills it; with any other, SendBy stays zero (no limit).
type Grant struct {
	slot     time.Time
	interval time.Duration
	from     *Shared
}

// MaxMissedSends is how many times in a row a caller gives up a slot for a
// call that could not leave in time before it makes the call regardless:
// a process starved of CPU for that long still makes progress (and sends
// late) rather than miss slot after slot.
const MaxMissedSends = 3

type grantKey struct{}

// WithGrant returns ctx carrying a new, empty Grant, which a Shared
// limiter's Wait with that context fills.
func WithGrant(ctx context.Context) (context.Context, *Grant) {
	g := &Grant{}
	return context.WithValue(ctx, grantKey{}, g), g
}

// grantOf returns the Grant ctx carries, or nil.
func grantOf(ctx context.Context) *Grant {
	g, _ := ctx.Value(grantKey{}).(*Grant)
	return g
}

// SendBy returns the latest time the granted call may leave: one slot
// interval after its slot, the same lateness Wait itself tolerates. Zero
// when nothing filled the Grant.
func (g *Grant) SendBy() time.Time {
	if g.slot.IsZero() {
		return time.Time{}
	}
	return g.slot.Add(g.interval)
}

// SendByAfter returns SendBy for a call that has already missed its send
// deadline missed times in a row, or the zero time (no deadline) once that
// reaches MaxMissedSends: a caller starved of CPU that long still makes
// progress, and sends late.
func (g *Grant) SendByAfter(missed int) time.Time {
	if missed >= MaxMissedSends {
		return time.Time{}
	}
	return g.SendBy()
}

// Missed tells the limiter that the granted call did not leave by SendBy
// and was not made: it counts in SharedStats.MissedSends (its slot stays
// counted in Grants, which only grows). Wait again for a new slot to make
// the call. Call it at most once per Wait.
func (g *Grant) Missed() {
	if g.from != nil {
		g.from.missedSends.Add(1)
	}
}
