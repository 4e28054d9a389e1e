package sim

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

// With Config.Arrived, calls read late and bunched count by when they
// arrived: the rate limit admits them and MaxPerSecond shows their spacing,
// while MaxReadPerSecond shows the bunch as read.
func TestArrivedTimesDriveTheLimitAndTheCounts(t *testing.T) {
	t.Parallel()
	clock := newClock()
	start := clock.Now()
	var arrivals []time.Time
	f := setup(t, Config{Now: clock.Now, Rate: 2, Arrived: func(*http.Request) (time.Time, bool) {
		if len(arrivals) == 0 {
			return time.Time{}, false
		}
		at := arrivals[0]
		arrivals = arrivals[1:]
		return at, true
	}})
	f.group("G", GroupPublic, 0)
	clock.Advance(1300 * time.Millisecond) // all three are read at 1.3 s
	arrivals = []time.Time{start, start.Add(600 * time.Millisecond), start.Add(1200 * time.Millisecond)}
	for i := range 3 {
		if env := f.call(chatapi.EndpointSend, sendBody, nil); env.ErrorCode != 0 {
			t.Fatalf("call %d (arrived %v after the start): ErrorCode %d; want 0, no two arrived within a second", i, 600*time.Duration(i)*time.Millisecond, env.ErrorCode)
		}
	}
	// A call whose arrival is unknown is read at 1.3 s, with the one that
	// arrived at 1.2 s and (clamped) the one at 0.6 s: over the limit.
	if env := f.call(chatapi.EndpointSend, sendBody, nil); env.ErrorCode != CodePublicRateLimited {
		t.Fatalf("fourth call: ErrorCode %d, want %d", env.ErrorCode, CodePublicRateLimited)
	}
	st := f.srv.Stats().Endpoints[chatapi.EndpointSend]
	if st.MaxPerSecond != 3 || st.MaxReadPerSecond != 4 {
		t.Fatalf("MaxPerSecond %d (want 3: 0.6, 1.2 and 1.3 s), MaxReadPerSecond %d (want 4, all read at 1.3 s)", st.MaxPerSecond, st.MaxReadPerSecond)
	}
	if want := []int64{2, 2}; len(st.PerSecond) != 2 || st.PerSecond[0] != want[0] || st.PerSecond[1] != want[1] {
		t.Fatalf("PerSecond %v, want %v (by arrival)", st.PerSecond, want)
	}
}

// peak finds the fullest sliding second exactly, whatever the order in
// which events are added, as long as none comes more than a second late.
func TestPeakMatchesBruteForceOutOfOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Unix(1_700_000_000, 0)
	for round := range 200 {
		p := newPeak()
		var added []time.Time
		at := base
		var newest time.Time
		for range 400 {
			at = at.Add(time.Duration(rng.IntN(12)) * time.Millisecond)
			t := at.Add(-time.Duration(rng.IntN(60)) * time.Millisecond) // read up to 60 ms late, out of order
			if !newest.IsZero() && t.Before(newest.Add(-time.Second)) {
				t = newest.Add(-time.Second)
			}
			if t.After(newest) {
				newest = t
			}
			p.add(t)
			added = append(added, t)
		}
		var want int64
		for _, end := range added {
			var n int64
			for _, e := range added {
				if !e.After(end) && end.Sub(e) < time.Second {
					n++
				}
			}
			want = max(want, n)
		}
		if p.max != want {
			t.Fatalf("round %d: peak %d, brute force %d", round, p.max, want)
		}
	}
}

// The rate limit judges each call by its arrival time whatever the order
// calls come in: it admits a call exactly when no window holding it would
// then hold more than the limit, checked against brute force.
func TestLimiterIsExactOutOfOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	base := time.Unix(1_700_000_000, 0)
	const limit = 20
	over := func(admitted []time.Time, extra time.Time) bool {
		all := append(slices.Clone(admitted), extra)
		for _, end := range all {
			n := 0
			for _, e := range all {
				if !e.After(end) && end.Sub(e) < time.Second {
					n++
				}
			}
			if n > limit {
				return true
			}
		}
		return false
	}
	for round := range 100 {
		l := newLimiter(limit, time.Second)
		var admitted []time.Time
		at := base
		for range 150 {
			at = at.Add(time.Duration(rng.IntN(80)) * time.Millisecond)
			arrived := at.Add(-time.Duration(rng.IntN(300)) * time.Millisecond) // stamped up to 0.3 s before it is handled
			want := !over(admitted, arrived)
			if got := l.allow(arrived); got != want {
				t.Fatalf("round %d: allow(%v) = %v, brute force %v", round, arrived.Sub(base), got, want)
			}
			if want {
				admitted = append(admitted, arrived)
			}
		}
	}
}
