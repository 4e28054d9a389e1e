package jobs

import (
	"strconv"
	"testing"
	"time"
)

func sample(at time.Time, processed int64) string {
	return strconv.FormatInt(at.UnixMilli(), 10) + ":" + strconv.FormatInt(processed, 10)
}

func TestRateFromRecentProgress(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	j := Job{State: StateRunning, Counts: Counts{Total: 10000, Applied: 3000, DeadLettered: 100, Waiting: 6800, InFlight: 100}}
	samples := []string{ // newest first
		sample(now.Add(-5*time.Second), 2900),
		sample(now.Add(-20*time.Second), 1100),
		sample(now.Add(-2*time.Minute), 0), // outside ProgressSpan
	}
	r, eta := rate(j, samples, now)
	// (3100 - 1100) / 20 s = 100/s; 6900 left take 69 s.
	if r != 100 {
		t.Fatalf("rate %v, want 100", r)
	}
	if want := now.Add(69 * time.Second); eta == nil || !eta.Equal(want) {
		t.Fatalf("ETA %v, want %v", eta, want)
	}
}

func TestNoRateWithoutProgress(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	running := Job{State: StateRunning, Counts: Counts{Total: 10, Applied: 4, Waiting: 6}}
	ended := time.Now()
	for name, c := range map[string]struct {
		j       Job
		samples []string
	}{
		"no samples":     {running, nil},
		"only stale":     {running, []string{sample(now.Add(-2*ProgressSpan), 0)}},
		"no progress":    {running, []string{sample(now.Add(-10*time.Second), 4)}},
		"too recent":     {running, []string{sample(now.Add(-500*time.Millisecond), 0)}},
		"paused":         {Job{State: StatePaused, Counts: running.Counts}, []string{sample(now.Add(-10*time.Second), 0)}},
		"ended":          {Job{State: StateDone, Finished: true, Ended: &ended, Counts: Counts{Total: 10, Applied: 10}}, []string{sample(now.Add(-10*time.Second), 0)}},
		"garbage sample": {running, []string{"x:y", "12"}},
	} {
		if r, eta := rate(c.j, c.samples, now); r != 0 || eta != nil {
			t.Errorf("%s: rate %v, ETA %v; want none", name, r, eta)
		}
	}
}
