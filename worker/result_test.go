package worker

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

// appendAppliedResult must write what json.Marshal writes for taskResult.
func TestAppliedResultEncodesLikeJSONMarshal(t *testing.T) {
	at := time.Date(2026, 11, 22, 3, 4, 5, 120000000, time.FixedZone("x", 3600))
	for _, ep := range []chatapi.Endpoint{chatapi.EndpointClear, chatapi.EndpointModify, chatapi.EndpointRecall} {
		for _, attempt := range []int{1, 2, 11, 1000} {
			for _, ts := range []time.Time{at, at.Truncate(time.Second), at.Add(7)} {
				want, err := json.Marshal(taskResult{Status: "applied", Endpoint: ep.Short(), Attempt: attempt, At: ts.UTC().Format(time.RFC3339Nano)})
				if err != nil {
					t.Fatal(err)
				}
				if got := appendAppliedResult([]byte("junk"), ep.Short(), attempt, ts); string(got) != "junk"+string(want) {
					t.Errorf("got %s, want %s", got[4:], want)
				}
			}
		}
	}
}

func BenchmarkAppliedResult(b *testing.B) {
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(taskResult{Status: "applied", Endpoint: chatapi.EndpointClear.Short(), Attempt: 1, At: time.Now().UTC().Format(time.RFC3339Nano)})
		}
	})
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 128)
		for b.Loop() {
			buf = appendAppliedResult(buf[:0], chatapi.EndpointClear.Short(), 1, time.Now())
		}
	})
}
