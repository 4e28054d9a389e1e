package chatapi

import (
	"context"
	"errors"
	"time"
)

// ErrSendDeadline is the error of a call whose context carries a send
// deadline (WithSendDeadline) that passed before the request left. Nothing
// was sent: the API did not see the call. Make it again when the rate
// limiter grants a new slot.
var ErrSendDeadline = errors.New("chatapi: the call's send deadline passed before it left; not sent")

type sendDeadlineKey struct{}

// WithSendDeadline returns a context whose calls must leave by t or not at
// all. A zero t returns ctx unchanged.
//
// The client checks the deadline once, just before it hands the request to
// its HTTP client: a call caught late ends with ErrSendDeadline and nothing
// is sent. Past that point (a dial, the write) the budget's headroom, not
// the deadline, keeps a late call from making a sliding second too many.
// The repeat after a UserSig refusal is not held to the deadline: it
// answers for a call already sent in its slot.
func WithSendDeadline(ctx context.Context, t time.Time) context.Context {
	if t.IsZero() {
		return ctx
	}
	return context.WithValue(ctx, sendDeadlineKey{}, t)
}

// SendDeadline returns the send deadline WithSendDeadline put in ctx.
func SendDeadline(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(sendDeadlineKey{}).(time.Time)
	return t, ok && !t.IsZero()
}
