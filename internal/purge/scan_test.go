package purge_test

import (
	"context"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/purge"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// unlimited grants every token at once.
type unlimited struct{ waits int }

func (u *unlimited) Wait(ctx context.Context) error { u.waits++; return ctx.Err() }
func (u *unlimited) Backoff(time.Duration)          {}

// Scan pages back over exactly the last N messages and keeps the sender's.
func TestScanPagesOverTheLastMessages(t *testing.T) {
	emu := testenv.StartEmulator(t, sim.Config{Rate: -1})
	const g = "@TGS#scan"
	if err := emu.CreateGroup(g, sim.GroupPublic); err != nil {
		t.Fatal(err)
	}
	if _, _, err := emu.AddMessages(g, "", 40); err != nil { // seqs 1..40, the admin's
		t.Fatal(err)
	}
	api, err := chatapi.New(chatapi.Config{SDKAppID: emu.SDKAppID, SecretKey: emu.SecretKey, Admin: emu.Admin, BaseURL: emu.URL})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 25 { // seqs 41..65, the spammer's
		if _, err := api.SendGroupMsg(context.Background(), &chatapi.SendGroupMsgRequest{GroupId: g, From_Account: "spammer", Random: uint32(i), MsgBody: tasks.TextBody("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := emu.AddMessages(g, "", 10); err != nil { // seqs 66..75
		t.Fatal(err)
	}
	lim := &unlimited{}
	p, err := purge.Scan(context.Background(), api, lim, msgindex.Query{Sender: "spammer", Groups: []string{g}}, 30)
	if err != nil {
		t.Fatal(err)
	}
	// The last 30 are seqs 46..75: the spammer's 46..65.
	if len(p.Messages) != 20 || p.PerGroup[g] != 20 {
		t.Fatalf("found %d messages (%v), want the spammer's 20 among the last 30", len(p.Messages), p.PerGroup)
	}
	for _, m := range p.Messages {
		if m.Seq < 46 || m.Seq > 65 {
			t.Errorf("found seq %d, outside the spammer's among the last 30", m.Seq)
		}
	}
	if lim.waits != 2 { // 20, then 10
		t.Errorf("%d calls, want 2 pages", lim.waits)
	}
	if _, err := purge.Scan(context.Background(), api, lim, msgindex.Query{Sender: "spammer"}, 30); err == nil {
		t.Error("a scan without groups ran")
	}
}
