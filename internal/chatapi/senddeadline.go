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
// The client checks the deadline with the request built and its
// connection in hand, just before its goroutine writes it: a call caught
// late ends with ErrSendDeadline and nothing is sent. A call that finds no
// free kept-alive connection dials one first; if the dial ends past the
// deadline the call is not sent either, and the new connection is kept for
// the next call. So a dial costs the slot of the call that made it whenever
// the handshake takes longer than the deadline's slack (over the internet,
// after an idle spell, one slot per connection dialed), rather than letting
// that call arrive late, bunched with the calls of later slots. The repeat
// after a UserSig refusal is not held to the deadline: it answers for a
// call already sent in its slot.
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
