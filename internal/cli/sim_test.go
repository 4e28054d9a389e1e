package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tencentyun/tls-sig-api-v2-golang/tencentyun"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
)

// simBuffer is an io.Writer safe to read while runSim writes.
type simBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *simBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *simBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

const simTestKey = "sim-test-secret-key"

func simEnv(vars map[string]string) (*Env, *simBuffer, *simBuffer) {
	out, errb := &simBuffer{}, &simBuffer{}
	return &Env{Stdout: out, Stderr: errb, Getenv: func(k string) string { return vars[k] }}, out, errb
}

var simVars = map[string]string{"TIMQ_SDKAPPID": "1400000001", "TIMQ_SECRET_KEY": simTestKey}

func TestSimHelp(t *testing.T) {
	t.Parallel()
	env, _, errb := simEnv(nil) // --help needs no settings
	if code := Main(context.Background(), env, []string{"sim", "--help"}); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"-addr", "-rate", "-window", "-auto-create", "-seed", "-seed-file", "-group", "-fault", "-hang-for", "TIMQ_SDKAPPID", "TIMQ_SECRET_KEY", "TIMQ_ADMIN", "/_sim/stats"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestSimBadInput(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	badSeed := filepath.Join(dir, "bad.json")
	os.WriteFile(badSeed, []byte(`{"groups":[{"GroupId":"x","Type":"Nope"}]}`), 0o600)
	tests := []struct {
		name string
		vars map[string]string
		args []string
		want string
	}{
		{"unknown flag", simVars, []string{"--nope"}, "-nope"},
		{"argument", simVars, []string{"extra"}, "unexpected argument"},
		{"rate zero", simVars, []string{"--rate", "0"}, "--rate"},
		{"window", simVars, []string{"--window", "-1s"}, "--window"},
		{"hang-for", simVars, []string{"--hang-for", "0s"}, "--hang-for"},
		{"fault endpoint", simVars, []string{"--fault", "nope:502:0.1"}, "--fault"},
		{"fault probability", simVars, []string{"--fault", "all:502:0.7", "--fault", "all:hang:0.7"}, "--fault"},
		{"group", simVars, []string{"--group", "g1"}, "--group"},
		{"group id", simVars, []string{"--group", "@TGS#x!:Public"}, "--group"},
		{"seed file missing", simVars, []string{"--seed-file", filepath.Join(dir, "none.json")}, "--seed-file"},
		{"seed file bad", simVars, []string{"--seed-file", badSeed}, "--seed-file"},
		{"no sdkappid", map[string]string{"TIMQ_SECRET_KEY": "k"}, nil, "TIMQ_SDKAPPID"},
		{"no key", map[string]string{"TIMQ_SDKAPPID": "1400000001"}, nil, "TIMQ_SECRET_KEY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env, _, errb := simEnv(tt.vars)
			code := Main(context.Background(), env, append([]string{"sim", "--addr", "127.0.0.1:0"}, tt.args...))
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and one line naming %q", code, errb.String(), tt.want)
			}
			if strings.Contains(errb.String(), simTestKey) {
				t.Fatal("stderr shows the key")
			}
		})
	}
}

func TestSimServes(t *testing.T) {
	t.Parallel()
	seedFile := filepath.Join(t.TempDir(), "seed.json")
	os.WriteFile(seedFile, []byte(`{"groups":[{"GroupId":"@TGS#_c","Type":"Community","Topics":[{"TopicId":"@TGS#_c@TOPIC#_t","Messages":2}]}]}`), 0o600)
	base, stop, errb := runSimCommand(t, "--group", "g1:Public:3", "--group", "g2:Work",
		"--seed-file", seedFile, "--seed", "7", "--fault", "modify_group_msg:code=20005:1", "--fault", "all:latency:1ms")
	q := adminQuery(t)
	call := func(ep chatapi.Endpoint, body string) chatapi.GroupMsgRecallResponse {
		t.Helper()
		resp, err := http.Post(base+"/v4/"+string(ep)+"?"+q.Encode(), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ans chatapi.GroupMsgRecallResponse
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			t.Fatal(err)
		}
		return ans
	}
	if ans := call(chatapi.EndpointRecall, `{"GroupId":"g1","MsgSeqList":[{"MsgSeq":3},{"MsgSeq":4}]}`); ans.ErrorCode != 0 || ans.RecallRetList[0].RetCode != 0 || ans.RecallRetList[1].RetCode != 10030 {
		t.Fatalf("recall: %+v", ans)
	}
	if ans := call(chatapi.EndpointRecall, `{"GroupId":"@TGS#_c","TopicId":"@TGS#_c@TOPIC#_t","MsgSeqList":[{"MsgSeq":2}]}`); ans.ErrorCode != 0 || ans.RecallRetList[0].RetCode != 0 {
		t.Fatalf("topic recall: %+v", ans)
	}
	if ans := call(chatapi.EndpointClear, `{"GroupId":"g2"}`); ans.ErrorCode != 0 {
		t.Fatalf("clear g2: %+v", ans)
	}
	if ans := call(chatapi.EndpointModify, `{"GroupId":"g1","MsgSeq":1,"CloudCustomData":"x"}`); ans.ErrorCode != 20005 {
		t.Fatalf("modify with injected fault: %+v", ans)
	}
	resp, err := http.Get(base + "/_sim/groups/g1/messages/3")
	if err != nil {
		t.Fatal(err)
	}
	var m sim.MessageState
	json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if !m.Recalled {
		t.Fatalf("message 3 = %+v", m)
	}
	stop()
	if !strings.Contains(errb.String(), "stopped after 4 API calls") {
		t.Fatalf("stderr %q", errb.String())
	}
}

// adminQuery is the query of a valid call to `timq sim` as its admin.
func adminQuery(t *testing.T) url.Values {
	t.Helper()
	sig, err := tencentyun.GenUserSig(1400000001, simTestKey, "administrator", 3600)
	if err != nil {
		t.Fatal(err)
	}
	return url.Values{"sdkappid": {"1400000001"}, "identifier": {"administrator"}, "usersig": {sig}, "random": {"1"}, "contenttype": {"json"}}
}

// simStats reads `timq sim`'s counters.
func simStats(t *testing.T, base string) sim.Stats {
	t.Helper()
	resp, err := http.Get(base + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st sim.Stats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// runSimCommand runs `timq sim` on a free loopback port with args until
// stop, which fails the test unless it exits 0 within 10 s.
func runSimCommand(t *testing.T, args ...string) (base string, stop func(), stderr *simBuffer) {
	t.Helper()
	env, out, errb := simEnv(simVars)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan int, 1)
	go func() { done <- Main(ctx, env, append([]string{"sim", "--addr", "127.0.0.1:0"}, args...)) }()
	re := regexp.MustCompile(`timq sim: listening on (http://127\.0\.0\.1:\d+)\n`)
	for deadline := time.Now().Add(10 * time.Second); base == ""; {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no listening line; stdout %q stderr %q", out.String(), errb.String())
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	stop = func() {
		t.Helper()
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("sim did not stop on cancel")
		}
	}
	return base, stop, errb
}

// `timq sim` counts a call in the second it arrived, even when it reads it
// later: of two calls pipelined on one connection, the second is read only
// after the first's 1.1 s latency, yet both arrived together.
func TestSimCountsCallsByArrival(t *testing.T) {
	t.Parallel()
	base, stop, _ := runSimCommand(t, "--group", "g:Work", "--fault", "clear_group_msg:latency:1100ms")
	defer stop()
	q := adminQuery(t)
	const body = `{"GroupId":"g"}`
	req := fmt.Sprintf("POST /v4/%s?%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		chatapi.EndpointClear, q.Encode(), len(body), body)
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req+req); err != nil { // both in one write
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	for i := range 2 {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	es := simStats(t, base).Endpoints[chatapi.EndpointClear]
	if es.Calls != 2 || es.MaxPerSecond != 2 || es.MaxReadPerSecond != 1 {
		t.Fatalf("calls %d, most in a sliding second %d by arrival (want 2) and %d as read (want 1, read 1.1 s apart)", es.Calls, es.MaxPerSecond, es.MaxReadPerSecond)
	}
}

func TestSimListenError(t *testing.T) {
	t.Parallel()
	env, _, errb := simEnv(simVars)
	if code := Main(context.Background(), env, []string{"sim", "--addr", "256.0.0.1:1"}); code != 1 || !strings.Contains(errb.String(), "--addr") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}
