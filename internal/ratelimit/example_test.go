package ratelimit_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/ratelimit"
)

// Two worker processes share one budget of 200 calls per second for one
// app's endpoint: each makes a Shared limiter with the same name on the
// same Redis, and every call waits for its slot.
func ExampleNewShared() {
	m, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer m.Close()
	ctx := context.Background()
	for process := range 2 {
		rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
		lim := ratelimit.NewShared(rdb, "1400000001:clear_group_msg", 200)
		for range 3 {
			if err := lim.Wait(ctx); err != nil {
				panic(err)
			}
			// ... call the API ...
		}
		st := lim.Stats()
		fmt.Printf("process %d: %d calls, key %s, interval %v\n", process, st.Grants, lim.Key(), lim.Interval())
		rdb.Close()
	}
	// Output:
	// process 0: 3 calls, key timq:budget:{1400000001:clear_group_msg}, interval 5.077ms
	// process 1: 3 calls, key timq:budget:{1400000001:clear_group_msg}, interval 5.077ms
}
