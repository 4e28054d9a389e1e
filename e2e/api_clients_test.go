package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
)

// The Python and Node examples of the README run against a live `timq api`
// and a `timq worker`; what they queue reaches the emulator.
func TestAPIClientExamples(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, interpreter, script string }{
		{"python", "python3", "../examples/python/timq_client.py"},
		{"node", "node", "../examples/node/timq_client.mjs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			bin, err := exec.LookPath(tc.interpreter)
			if err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatalf("%s is not on PATH; CI installs it (.ci/install-test-tools.sh)", tc.interpreter)
				}
				t.Skipf("%s is not on PATH", tc.interpreter)
			}
			r := testenv.Redis(t)
			emu := testenv.StartEmulator(t, sim.Config{})
			group := "@TGS#" + tc.name
			if err := emu.CreateGroup(group, sim.GroupPublic); err != nil {
				t.Fatal(err)
			}
			if _, _, err := emu.AddMessages(group, "", 30); err != nil {
				t.Fatal(err)
			}
			const token = "client-example-token-0123456789"
			env := testenv.ChildEnv("TIMQ_REDIS_URL="+r.URL(), fmt.Sprintf("TIMQ_SDKAPPID=%d", emu.SDKAppID),
				"TIMQ_SECRET_KEY="+emu.SecretKey, "TIMQ_API_BASE="+emu.URL, "TIMQ_API_TOKEN="+token)
			w := testenv.Start(t, "worker", env, testenv.Binary(t), "worker", "--log-format", "json")
			w.WaitLine(`"worker started"`, 30*time.Second)
			addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
			a := testenv.Start(t, "api", env, testenv.Binary(t), "api", "--addr", addr, "--log-format", "json")
			a.WaitLine(`"serving the API"`, 30*time.Second)

			res := testenv.Run(t, testenv.ChildEnv("TIMQ_API_URL=http://"+addr, "TIMQ_API_TOKEN="+token, "GROUP_ID="+group),
				nil, 2*time.Minute, bin, tc.script)
			if res.Code != 0 || !strings.Contains(res.Stdout, "tasks completed:") {
				t.Fatalf("%s %s: exit %d\n%s\n%s", tc.interpreter, tc.script, res.Code, res.Stdout, res.Stderr)
			}
			for seq := uint64(10); seq <= 21; seq++ {
				if m, _ := emu.Message(group, "", seq); !m.Recalled {
					t.Errorf("message %d not recalled", seq)
				}
			}
			if tc.name == "python" {
				if m, _ := emu.Message(group, "", 25); m.Modified != 1 {
					t.Errorf("message 25 modified %d times, want once", m.Modified)
				}
				if m, _ := emu.Message(group, "", 3); !m.Cleared {
					t.Error("the job's clear up to 3 did not reach the emulator")
				}
			}
			for _, out := range [][]string{a.Stdout(), a.Stderr(), {res.Stdout, res.Stderr}} {
				if s := strings.Join(out, "\n"); strings.Contains(s, token) || strings.Contains(s, emu.SecretKey) {
					t.Errorf("a token or the secret key is in the output:\n%s", s)
				}
			}
		})
	}
}
