package jobs

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

func TestCheckNotifyURL(t *testing.T) {
	for _, tc := range []struct {
		url, wantErr string
	}{
		{"https://example.com/hooks/timq?k=v", ""},
		{"http://127.0.0.1:8080/", ""},
		{"ftp://example.com/", "http or https"},
		{"/relative/path", "http or https"},
		{"https://", "no host"},
		{"https://user:pass@example.com/", "user information"},
		{"https://example.com/" + strings.Repeat("a", 2048), "2048"},
		{"http://exa mple.com/", "invalid character"},
	} {
		err := CheckNotifyURL(tc.url)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("CheckNotifyURL(%.40q) = %v, want an error with %q", tc.url, err, tc.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "pass") {
			t.Errorf("CheckNotifyURL(%q): the error shows the password: %v", tc.url, err)
		}
	}
}

func TestVerifyRefusesTamperingAndReplays(t *testing.T) {
	secret := []byte("a-secret-of-enough-length")
	at := time.Unix(1_800_000_000, 0)
	body := []byte(`{"type":"job.ended","job":{"id":"x"}}`)
	sig := Sign(secret, at, body)
	if err := Verify(secret, sig, body, at.Add(30*time.Second), time.Minute); err != nil {
		t.Fatalf("a fresh notice: %v", err)
	}
	for name, tc := range map[string]struct {
		header string
		body   []byte
		now    time.Time
	}{
		"another body":      {sig, []byte(`{"type":"job.ended","job":{"id":"y"}}`), at},
		"replayed later":    {sig, body, at.Add(2 * time.Minute)},
		"from the future":   {sig, body, at.Add(-2 * time.Minute)},
		"another timestamp": {strings.Replace(sig, "t=1800000000", "t=1800000001", 1), body, at},
		"no signature":      {"t=1800000000", body, at},
		"garbage":           {"sha256=abc", body, at},
	} {
		if err := Verify(secret, tc.header, tc.body, tc.now, time.Minute); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
}

// A job's retention is its own, whoever ends it: a Store with another
// default (a CLI or dashboard cancelling it) keeps it for the job's.
func TestAJobKeepsItsOwnRetention(t *testing.T) {
	rdb := testenv.Redis(t).Client(t)
	ctx := context.Background()
	w, err := NewStore(rdb, 0).Create(Spec{Weight: 1, Retention: 90 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(ctx, tasks.Clear{GroupId: "g"}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	j, err := NewStore(rdb, 48*time.Hour).Cancel(ctx, w.ID())
	if err != nil {
		t.Fatal(err)
	}
	if j.State != StateCancelled || time.Duration(j.Retention) != 90*time.Second {
		t.Fatalf("cancelled job = %+v, want cancelled with a 90s retention", j)
	}
	ttl := rdb.TTL(ctx, jobKey(w.ID())).Val()
	if ttl <= 0 || ttl > 90*time.Second {
		t.Errorf("the ended job's hash expires in %v, want within its 90s retention", ttl)
	}
	for _, bad := range []Spec{{Weight: 0}, {Weight: 1, Retention: time.Millisecond}, {Weight: 1, Notify: "mailto:x@example.com"}} {
		if _, err := NewStore(rdb, 0).Create(bad); err == nil {
			t.Errorf("Create(%+v) accepted", bad)
		}
	}
}

func TestRecallMessagesAreCountedOneByOne(t *testing.T) {
	rdb := testenv.Redis(t).Client(t)
	ctx := context.Background()
	s := NewStore(rdb, 0)
	w, err := s.Create(Spec{Weight: 1})
	if err != nil {
		t.Fatal(err)
	}
	recall := func(seqs ...uint64) tasks.Recall {
		r := tasks.Recall{GroupId: "g"}
		for _, q := range seqs {
			r.MsgSeqList = append(r.MsgSeqList, tasks.MsgSeqItem{MsgSeq: q})
		}
		return r
	}
	for _, p := range []tasks.Payload{recall(1, 2, 3), recall(4, 5), tasks.Clear{GroupId: "g"}, recall(6)} {
		if err := w.Add(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	j, err := w.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if m := j.RecallMessages; m == nil || *m != (Counts{Total: 6, Waiting: 6}) {
		t.Fatalf("new job's recall messages = %+v, want 6 waiting", m)
	}
	// Two recalls fed (5 messages): one ends with 2 of 3 recalled, the
	// other is dropped by the cancel; the unfed one is cancelled at once.
	if err := advanceScript.Run(ctx, rdb, []string{jobKey(w.ID())}, "recall", 0, 2, recallMessages("recall", []string{`{"MsgSeqList":[{},{},{}]}`, `{"MsgSeqList":[{},{}]}`})).Err(); err != nil {
		t.Fatal(err)
	}
	op := func(i int64) Op { return Op{Job: w.ID(), Endpoint: "recall", Index: i} }
	if _, err := s.Finish(ctx, op(0), DeadLettered, nil, Messages{Recalled: 2, DeadLettered: 1}); err != nil {
		t.Fatal(err)
	}
	j, err = s.Cancel(ctx, w.ID())
	if err != nil {
		t.Fatal(err)
	}
	if m := *j.RecallMessages; m != (Counts{Total: 6, InFlight: 2, Applied: 2, DeadLettered: 1, Cancelled: 1}) {
		t.Fatalf("after the cancel: recall messages %+v, want 2 in flight, 2 recalled, 1 dead, 1 cancelled", m)
	}
	if _, err := s.Finish(ctx, op(1), Cancelled, nil, Messages{Cancelled: 2}); err != nil {
		t.Fatal(err)
	}
	// A second count of the same operation changes nothing.
	if counted, err := s.Finish(ctx, op(0), Applied, nil, Messages{Recalled: 3}); counted || err != nil {
		t.Fatalf("second Finish = %v, %v; want not counted", counted, err)
	}
	j, err = s.Get(ctx, w.ID())
	if err != nil {
		t.Fatal(err)
	}
	if m := *j.RecallMessages; m != (Counts{Total: 6, Applied: 2, DeadLettered: 1, Cancelled: 3}) {
		t.Fatalf("at the end: recall messages %+v, want 2 recalled, 1 dead, 3 cancelled", m)
	}
}
