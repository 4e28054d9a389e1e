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
// and makes the call again in a new slot, with that slot's deadline; after
// ratelimit.MaxMissedSends misses in a row it makes the call regardless.
func TestCallThatMissedItsSendDeadlineTakesANewSlot(t *testing.T) {
	for _, tt := range []struct {
		name      string
		refuse    int // calls with a deadline refused before one goes
		wantCalls int
		wantMiss  int64
	}{
		{"one miss", 1, 2, 1},
		{"always late", 1000, ratelimit.MaxMissedSends + 1, ratelimit.MaxMissedSends},
	} {
		t.Run(tt.name, func(t *testing.T) {
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
				deadlines = append(deadlines, by)
				if ok && len(deadlines) <= tt.refuse {
					return chatapi.ErrSendDeadline
				}
				return nil
			})
			if err != nil {
				t.Fatalf("call: %v", err)
			}
			if len(deadlines) != tt.wantCalls {
				t.Fatalf("%d calls, want %d (deadlines %v)", len(deadlines), tt.wantCalls, deadlines)
			}
			for i := 1; i < len(deadlines); i++ {
				if !deadlines[i].IsZero() && !deadlines[i].After(deadlines[i-1]) {
					t.Fatalf("send deadlines %v; each new slot must come later", deadlines)
				}
			}
			if last := deadlines[len(deadlines)-1]; tt.refuse > ratelimit.MaxMissedSends && !last.IsZero() {
				t.Fatalf("after %d misses the call still had a deadline: %v", ratelimit.MaxMissedSends, last)
			}
			st := lim.Stats()
			if st.Grants != int64(tt.wantCalls) || st.MissedSends != tt.wantMiss {
				t.Fatalf("budget %+v; want %d grants and %d missed sends", st, tt.wantCalls, tt.wantMiss)
			}
		})
	}
}
