package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// Messages sent to the emulator reach timq api as signed after-send
// callbacks; timq purge then recalls exactly the spammer's messages,
// checked message by message, with a worker running.
func TestSpammerIsPurgedFromCallbacks(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	const token = "e2e-callback-token"
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	emu := testenv.StartEmulator(t, sim.Config{Callbacks: &sim.Callbacks{URL: "http://" + addr + "/v1/callbacks/tencent", Token: token, Duplicate: 0.2}})
	env := testenv.ChildEnv("TIMQ_REDIS_URL="+r.URL(), fmt.Sprintf("TIMQ_SDKAPPID=%d", emu.SDKAppID), "TIMQ_CALLBACK_TOKEN="+token,
		"TIMQ_SECRET_KEY="+emu.SecretKey, "TIMQ_API_BASE="+emu.URL)
	a := testenv.Start(t, "api", env, testenv.Binary(t), "api", "--addr", addr, "--log-format", "json")
	a.WaitLine(`"serving the API"`, 30*time.Second)
	w := testenv.Start(t, "worker", env, testenv.Binary(t), "worker", "--log-format", "json")
	w.WaitLine(`"worker started"`, 30*time.Second)

	api, err := chatapi.New(chatapi.Config{SDKAppID: emu.SDKAppID, SecretKey: emu.SecretKey, Admin: emu.Admin, BaseURL: emu.URL})
	if err != nil {
		t.Fatal(err)
	}
	groups := []string{"@TGS#p1", "@TGS#p2", "@TGS#p3"}
	type sent struct {
		group, from string
		seq         uint64
	}
	var all []sent
	for _, g := range groups {
		if err := emu.CreateGroup(g, sim.GroupPublic); err != nil {
			t.Fatal(err)
		}
		for i := range 12 {
			from := []string{"spammer", "alice", "spammer", "bob"}[i%4]
			resp, err := api.SendGroupMsg(context.Background(), &chatapi.SendGroupMsgRequest{GroupId: g, From_Account: from, Random: uint32(i), MsgBody: tasks.TextBody("hi")})
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, sent{g, from, resp.MsgSeq})
		}
	}
	testenv.Eventually(t, 30*time.Second, "every message called back", func() (bool, string) {
		st := emu.CallbackStats()
		return st.OK >= int64(len(all)) && st.Failed == 0, fmt.Sprintf("%+v", st)
	})
	// Paging the groups' history finds the same messages as the index.
	dry := func(extra ...string) string {
		t.Helper()
		res := testenv.Run(t, env, nil, time.Minute, testenv.Binary(t), append([]string{"purge", "--sender", "spammer", "--group", "@TGS#p1", "--group", "@TGS#p2", "--dry-run"}, extra...)...)
		if res.Code != 0 {
			t.Fatalf("purge --dry-run %v: exit %d\n%s%s", extra, res.Code, res.Stdout, res.Stderr)
		}
		return res.Stdout
	}
	if fromIndex, fromHistory := dry(), dry("--scan-history", "100"); fromIndex != fromHistory || !strings.Contains(fromIndex, "12 messages of spammer in 2 groups") {
		t.Fatalf("the index found:\n%s\nthe history scan found:\n%s", fromIndex, fromHistory)
	}
	res := testenv.Run(t, env, nil, 2*time.Minute, testenv.Binary(t), "purge", "--sender", "spammer", "--group", "@TGS#p1", "--group", "@TGS#p2", "--wait")
	if res.Code != 0 || !strings.Contains(res.Stdout, "12 messages of spammer in 2 groups") || !strings.Contains(res.Stdout, ": done") {
		t.Fatalf("purge: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	for _, m := range all {
		st, _ := emu.Message(m.group, "", m.seq)
		want := m.from == "spammer" && m.group != "@TGS#p3"
		if st.Recalled != want {
			t.Errorf("%s seq %d from %s: recalled %v, want %v", m.group, m.seq, m.from, st.Recalled, want)
		}
	}
}
