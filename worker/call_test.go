package worker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/ratelimit"
)

// A call that could not leave within a slot interval of its slot is not
// counted as made: the worker gives its slot up (counted as a missed send)
// and makes the call again in a new slot, with that slot's deadline.
func TestCallThatMissedItsSendDeadlineTakesANewSlot(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { rdb.Close() })
	lim := ratelimit.NewShared(rdb, "1400000001:modify_group_msg", 200)
	w := &Worker{
		pacers: map[chatapi.Endpoint]ratelimit.Limiter{chatapi.EndpointModify: lim},
		log:    slog.New(slog.DiscardHandler),
	}
	var deadlines []time.Time
	err := w.call(context.Background(), chatapi.EndpointModify, attempt{}, func(ctx context.Context) error {
		by, ok := chatapi.SendDeadline(ctx)
		if !ok {
			t.Fatal("the call's context has no send deadline")
		}
		deadlines = append(deadlines, by)
		if len(deadlines) == 1 {
			return chatapi.ErrSendDeadline
		}
		return nil
	})
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	if len(deadlines) != 2 || !deadlines[1].After(deadlines[0]) {
		t.Fatalf("send deadlines %v; want two, the second later (a new slot)", deadlines)
	}
	st := lim.Stats()
	if st.Grants != 1 || st.MissedSends != 1 || st.Wasted < 1 {
		t.Fatalf("budget %+v; want 1 grant (the call made) and 1 missed send, counted as wasted", st)
	}
}
