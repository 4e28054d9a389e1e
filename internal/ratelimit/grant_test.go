package ratelimit

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Wait with a Grant records the slot it granted: SendBy is one interval
// after it. Missed counts the slot as wasted, once per call.
func TestGrantRecordsTheSlotWaitGranted(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { c.Close() })
	s := NewShared(c, "grant", 200)
	var mu sync.Mutex
	var slots []time.Time
	s.onLocalSlots = func(ts []time.Time) {
		mu.Lock()
		slots = append(slots, ts...)
		mu.Unlock()
	}
	ctx, g := WithGrant(context.Background())
	if !g.SendBy().IsZero() {
		t.Fatal("an unfilled Grant has a SendBy")
	}
	g.Missed() // nothing to count yet
	if err := s.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	slot := g.SendBy().Add(-s.Interval())
	mu.Lock()
	found := slices.ContainsFunc(slots, slot.Equal)
	mu.Unlock()
	if !found {
		t.Fatalf("SendBy %v is not an interval after any slot Redis gave: %v", g.SendBy(), slots)
	}
	before := s.Stats() // a slot woken late on a loaded machine is wasted too
	if before.MissedSends != 0 || before.Grants != 1 {
		t.Fatalf("before Missed: %+v", before)
	}
	g.Missed()
	if st := s.Stats(); st.Wasted != before.Wasted || st.MissedSends != 1 || st.Grants != 1 {
		t.Fatalf("after Missed: wasted %d (was %d), missed sends %d, grants %d; want unchanged, 1 and 1 (counters only grow)", st.Wasted, before.Wasted, st.MissedSends, st.Grants)
	}
	// A Pacer keeps no slots: its Grant stays empty.
	pctx, pg := WithGrant(context.Background())
	if err := NewPacer(200).Wait(pctx); err != nil || !pg.SendBy().IsZero() {
		t.Fatalf("Pacer: err %v, SendBy %v; want a grant without a deadline", err, pg.SendBy())
	}
}

func TestSendByAfterDropsTheDeadlineAtMaxMissedSends(t *testing.T) {
	slot := time.Unix(1000, 0)
	g := &Grant{slot: slot, interval: 5 * time.Millisecond}
	for missed := range MaxMissedSends {
		if got := g.SendByAfter(missed); !got.Equal(g.SendBy()) {
			t.Errorf("SendByAfter(%d) = %v, want SendBy %v", missed, got, g.SendBy())
		}
	}
	if got := g.SendByAfter(MaxMissedSends); !got.IsZero() {
		t.Errorf("SendByAfter(%d) = %v, want zero (no deadline)", MaxMissedSends, got)
	}
}
