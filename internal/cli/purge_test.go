package cli_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/worker"
)

// A purge recalls exactly the sender's indexed messages in the window,
// checked message by message in the emulator.
func TestPurgeRecallsExactlyTheSendersMessagesInTheWindow(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	emu := testenv.StartEmulator(t, sim.Config{})
	ctx := context.Background()
	ix := msgindex.New(f.rdb.Client(t), 0)
	now := time.Now()
	type sent struct {
		group, from string
		seq         uint64
		ago         time.Duration
	}
	var all []sent
	for _, g := range []string{"@TGS#pa", "@TGS#pb"} {
		if err := emu.CreateGroup(g, sim.GroupPublic); err != nil {
			t.Fatal(err)
		}
		if _, _, err := emu.AddMessages(g, "", 25); err != nil {
			t.Fatal(err)
		}
	}
	for s := uint64(1); s <= 15; s++ {
		all = append(all, sent{"@TGS#pa", "spammer", s, 30 * time.Minute})
	}
	for s := uint64(16); s <= 20; s++ {
		all = append(all, sent{"@TGS#pa", "bob", s, 30 * time.Minute})
	}
	for s := uint64(1); s <= 5; s++ {
		all = append(all, sent{"@TGS#pb", "spammer", s, 3 * time.Hour}) // before the window
	}
	for s := uint64(6); s <= 8; s++ {
		all = append(all, sent{"@TGS#pb", "spammer", s, 10 * time.Minute})
	}
	for _, m := range all {
		if err := ix.Add(ctx, msgindex.Message{GroupID: m.group, Sender: m.from, Seq: m.seq, Time: now.Add(-m.ago)}); err != nil {
			t.Fatal(err)
		}
	}
	want := func(m sent) bool { return m.from == "spammer" && m.ago < 2*time.Hour }

	code, out, errOut := f.run(t, "", "purge", "--sender", "spammer", "--since", "2h", "--dry-run")
	if code != 0 || !strings.Contains(out, "@TGS#pa\t15\n") || !strings.Contains(out, "@TGS#pb\t3\n") || !strings.Contains(out, "18 messages of spammer in 2 groups (dry run") {
		t.Fatalf("purge --dry-run: exit %d\n%s%s", code, out, errOut)
	}
	w, err := worker.New(worker.Config{Redis: f.rdb.ConnOpt(), API: worker.API{SDKAppID: emu.SDKAppID, SecretKey: emu.SecretKey, BaseURL: emu.URL},
		PollInterval: 100 * time.Millisecond, ShutdownTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing was recalled by the dry run.
	for _, m := range all {
		if st, _ := emu.Message(m.group, "", m.seq); st.Recalled {
			t.Fatalf("%s %d recalled by a dry run", m.group, m.seq)
		}
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	code, out, errOut = f.run(t, "", "purge", "--sender", "spammer", "--since", "2h", "--wait", "--reason", "spam")
	if code != 0 || !strings.Contains(out, "18 messages of spammer in 2 groups: job ") || !strings.Contains(out, ": done") {
		t.Fatalf("purge --wait: exit %d\n%s%s", code, out, errOut)
	}
	for _, m := range all {
		st, _ := emu.Message(m.group, "", m.seq)
		if st.Recalled != want(m) {
			t.Errorf("%s seq %d of %s sent %v ago: recalled %v, want %v", m.group, m.seq, m.from, m.ago, st.Recalled, want(m))
		}
	}
	for _, args := range [][]string{{"purge"}, {"purge", "--sender", "s", "--since", "yesterday"}, {"purge", "--sender", "s", "--until", "2h"}} {
		if code, _, _ := f.run(t, "", args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}
