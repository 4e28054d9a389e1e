package msgindex

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/timq/timq/internal/testenv"
)

func TestFindReturnsTheSendersMessagesInTheWindowOnce(t *testing.T) {
	rdb := testenv.Redis(t).Client(t)
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	ix := New(rdb, 48*time.Hour)
	ix.now = func() time.Time { return now }
	add := func(group, topic, sender string, seq uint64, ago time.Duration) {
		t.Helper()
		if err := ix.Add(ctx, Message{GroupID: group, TopicID: topic, Sender: sender, Seq: seq, Time: now.Add(-ago)}); err != nil {
			t.Fatal(err)
		}
	}
	add("g1", "", "spammer", 10, 5*time.Minute)
	add("g1", "", "spammer", 10, 5*time.Minute) // a callback delivered twice
	add("g1", "", "spammer", 11, 90*time.Minute)
	add("g2", "", "spammer", 3, 30*time.Hour)
	add("g2", "t1", "spammer", 4, time.Minute)
	add("g1", "", "someone", 12, time.Minute)
	add("g3", "", "spammer", 1, 72*time.Hour) // older than the retention: not kept

	seqs := func(q Query) []string {
		t.Helper()
		ms, err := ix.Find(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, fmt.Sprintf("%s/%s/%d", m.GroupID, m.TopicID, m.Seq))
		}
		return out
	}
	for _, tc := range []struct {
		q    Query
		want string
	}{
		{Query{Sender: "spammer"}, "[g1//10 g1//11 g2//3 g2/t1/4]"},
		{Query{Sender: "spammer", Since: now.Add(-2 * time.Hour)}, "[g1//10 g1//11 g2/t1/4]"},
		{Query{Sender: "spammer", Since: now.Add(-time.Hour)}, "[g1//10 g2/t1/4]"},
		{Query{Sender: "spammer", Until: now.Add(-time.Hour)}, "[g1//11 g2//3]"},
		{Query{Sender: "spammer", Groups: []string{"g2"}}, "[g2//3 g2/t1/4]"},
		{Query{Sender: "spammer", TopicID: "t1"}, "[g2/t1/4]"},
		{Query{Sender: "someone"}, "[g1//12]"},
		{Query{Sender: "nobody"}, "[]"},
	} {
		if got := fmt.Sprint(seqs(tc.q)); got != tc.want && !(got == "[]" && tc.want == "[]") {
			t.Errorf("Find(%+v) = %s, want %s", tc.q, got, tc.want)
		}
	}
	// Buckets expire after their hour plus the retention.
	for _, k := range rdb.Keys(ctx, "timq:mi:{spammer}:b:*").Val() {
		if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("%q has no expiry", k)
		}
	}
	if err := ix.Add(ctx, Message{GroupID: "g", Sender: "a{b}", Seq: 1, Time: now}); err == nil {
		t.Error("a sender with braces was indexed")
	}
	if err := ix.Add(ctx, Message{GroupID: "g", Sender: "s", Time: now}); err == nil {
		t.Error("a message without MsgSeq was indexed")
	}
}
