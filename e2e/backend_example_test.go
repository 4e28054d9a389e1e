package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
)

// backendDir is the program in a module of its own that uses the public
// packages as an application backend would.
const backendDir = "../examples/backend"

// The separate-module program builds with the checkout's public packages
// only, and its clear, recall of 12 and text modify reach the emulator:
// exactly those messages change.
func TestBackendInAnotherModule(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	emu := testenv.StartEmulator(t, sim.Config{})
	const group = "@TGS#example"
	if err := emu.CreateGroup(group, sim.GroupPublic); err != nil {
		t.Fatal(err)
	}
	if _, _, err := emu.AddMessages(group, "", 30); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), "go", "run", ".")
	cmd.Dir = backendDir
	cmd.Env = append(os.Environ(),
		"GOFLAGS=-mod=readonly",
		"REDIS_ADDR="+r.Addr, fmt.Sprintf("REDIS_DB=%d", r.DB),
		"TIMQ_API_BASE_URL="+emu.URL, fmt.Sprintf("TIMQ_SDKAPPID=%d", emu.SDKAppID),
		"TIMQ_SECRET_KEY="+emu.SecretKey, "GROUP_ID="+group)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("go run %s: %v\n%s", backendDir, err, out.String())
	}
	if !strings.Contains(out.String(), "recall tasks: 2") || !strings.Contains(out.String(), "all tasks done") {
		t.Fatalf("program output:\n%s\nwant 2 recall tasks and all tasks done", out.String())
	}
	if strings.Contains(out.String(), emu.SecretKey) {
		t.Fatal("the program's output holds the secret key")
	}
	for seq := uint64(1); seq <= 30; seq++ {
		m, ok := emu.Message(group, "", seq)
		if !ok {
			t.Fatalf("message %d missing", seq)
		}
		wantCleared, wantRecalled, wantModified := seq <= 3, seq >= 10 && seq <= 21, seq == 25
		if m.Cleared != wantCleared || m.Recalled != wantRecalled || (m.Modified == 1) != wantModified {
			t.Errorf("message %d: cleared %v recalled %v modified %d; want %v %v %v", seq, m.Cleared, m.Recalled, m.Modified, wantCleared, wantRecalled, wantModified)
		}
		if wantModified {
			body, _ := json.Marshal(m.MsgBody)
			if string(body) != `[{"MsgType":"TIMTextElem","MsgContent":{"Text":"[removed by a moderator]"}}]` {
				t.Errorf("message 25's body = %s", body)
			}
		}
	}
}

// The README's Go code is the separate-module program's, between its
// "README:NAME start" and "README:NAME end" comments, so it cannot rot.
func TestReadmeQuotesTheBackendProgram(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join(backendDir, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile(`(?s)\n\t// README:(\w+) start\n(.*?)\t// README:\w+ end\n`).FindAllSubmatch(src, -1)
	if len(blocks) != 2 {
		t.Fatalf("found %d README blocks in main.go, want 2 (enqueue, worker)", len(blocks))
	}
	for _, b := range blocks {
		code := strings.ReplaceAll("\n"+string(b[2]), "\n\t", "\n")[1:]
		if !bytes.Contains(readme, []byte(code)) {
			t.Errorf("README.md does not hold the %s block of %s/main.go as it is:\n%s", b[1], backendDir, code)
		}
	}
}
