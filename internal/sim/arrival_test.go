package sim

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

// TestArrivalTimes pins the fields benchmarks read to measure enqueue-to-call
// latency: when the call that recalled, modified or cleared arrived, by the
// clock at arrival (before injected latency), and messages recalled per
// second.
func TestArrivalTimes(t *testing.T) {
	t.Parallel()
	clk := newClock()
	f := setup(t, Config{Now: clk.Now})
	start := clk.Now()
	f.group("g", GroupPublic, 5)
	f.group("c", GroupPublic, 3)

	if m := f.msg("g", "", 1); !m.RecalledAt.IsZero() || !m.ModifiedAt.IsZero() {
		t.Fatalf("fresh message has times: %+v", m)
	}
	b, _ := json.Marshal(f.msg("g", "", 1))
	if strings.Contains(string(b), "RecalledAt") || strings.Contains(string(b), "ModifiedAt") {
		t.Fatalf("zero times are not left out: %s", b)
	}

	clk.Advance(1500 * time.Millisecond)
	t1 := clk.Now()
	f.call(chatapi.EndpointRecall, chatapi.GroupMsgRecallRequest{GroupId: "g", MsgSeqList: seqs(1, 2, 9)}, nil)
	f.call(chatapi.EndpointModify, chatapi.ModifyGroupMsgRequest{GroupId: "g", MsgSeq: 3, CloudCustomData: ptr("x")}, nil)
	f.call(chatapi.EndpointClear, chatapi.ClearGroupMsgRequest{GroupId: "c"}, nil)
	clk.Advance(time.Second)
	f.call(chatapi.EndpointRecall, chatapi.GroupMsgRecallRequest{GroupId: "g", MsgSeqList: seqs(1, 4)}, nil)

	if m := f.msg("g", "", 1); !m.RecalledAt.Equal(t1) {
		t.Errorf("seq 1 RecalledAt = %v, want %v (a repeated recall must not move it)", m.RecalledAt, t1)
	}
	if m := f.msg("g", "", 4); !m.RecalledAt.Equal(t1.Add(time.Second)) {
		t.Errorf("seq 4 RecalledAt = %v, want %v", m.RecalledAt, t1.Add(time.Second))
	}
	if m := f.msg("g", "", 3); !m.ModifiedAt.Equal(t1) || !m.RecalledAt.IsZero() {
		t.Errorf("seq 3 = %+v, want ModifiedAt %v", m, t1)
	}
	if g, _ := f.srv.Group("c"); !g.LastClearAt.Equal(t1) {
		t.Errorf("LastClearAt = %v, want %v", g.LastClearAt, t1)
	}
	if g, _ := f.srv.Group("g"); !g.LastClearAt.IsZero() {
		t.Errorf("uncleared group has LastClearAt %v", g.LastClearAt)
	}
	st := f.srv.Stats()
	if !st.Start.Equal(start) {
		t.Fatalf("Start = %v, want %v", st.Start, start)
	}
	if got, want := st.RecalledPerSecond, []int64{0, 2, 1}; !slices.Equal(got, want) || st.MessagesRecalled != 3 {
		t.Errorf("RecalledPerSecond = %v (total %d), want %v", got, st.MessagesRecalled, want)
	}
	f.srv.Reset()
	if st := f.srv.Stats(); st.RecalledPerSecond != nil {
		t.Errorf("after Reset RecalledPerSecond = %v", st.RecalledPerSecond)
	}
}

func TestAdminSeedMany(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	rec := f.raw(http.MethodPost, "/_sim/seed", nil, `{"groups":[{"GroupId":"a","Type":"Public","Messages":2},{"GroupId":"b","Type":"Work"}]}`)
	if rec.Code != http.StatusCreated || !strings.Contains(rec.Body.String(), `"groups": 2`) {
		t.Fatalf("POST /_sim/seed: HTTP %d: %s", rec.Code, rec.Body)
	}
	if g, ok := f.srv.Group("a"); !ok || g.MaxSeq != 2 {
		t.Fatalf("group a = %+v, %v", g, ok)
	}
	if _, ok := f.srv.Group("b"); !ok {
		t.Fatal("group b not created")
	}
	for _, body := range []string{`{"groups":[{"GroupId":"a","Type":"Public"}]}`, `{"groups":[],"x":1}`, `nope`} {
		if rec := f.raw(http.MethodPost, "/_sim/seed", nil, body); rec.Code != http.StatusBadRequest {
			t.Errorf("POST /_sim/seed %s: HTTP %d, want 400: %s", body, rec.Code, rec.Body)
		}
	}
}
