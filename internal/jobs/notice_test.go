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
