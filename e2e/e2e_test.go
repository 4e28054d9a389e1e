// Package e2e runs timq end to end as separate processes: it builds the
// binary once and drives `timq sim`, `timq worker`, `timq enqueue`,
// `timq bulk`, `timq dlq` and `timq stats` the way an operator would,
// checking their output, exit codes and the emulator's final state.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// cluster is the processes of one test and how to reach them.
type cluster struct {
	t      *testing.T
	bin    string
	env    []string // TIMQ_REDIS_URL and the app's credentials
	simURL string
}

func (c *cluster) run(args ...string) testenv.Result {
	c.t.Helper()
	return testenv.Run(c.t, c.env, nil, 30*time.Second, c.bin, args...)
}

// must runs a command and fails the test unless it exits 0.
func (c *cluster) must(args ...string) testenv.Result {
	c.t.Helper()
	r := c.run(args...)
	if r.Code != 0 {
		c.t.Fatalf("timq %s: exit %d\nstderr: %s", strings.Join(args, " "), r.Code, r.Stderr)
	}
	return r
}

var taskIDLine = regexp.MustCompile(`^[0-9a-zA-Z-]{8,}$`)

// enqueue runs `timq enqueue ...` and returns the task IDs it printed.
func (c *cluster) enqueue(args ...string) []string {
	c.t.Helper()
	r := c.must(append([]string{"enqueue"}, args...)...)
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		if !taskIDLine.MatchString(l) {
			c.t.Fatalf("timq enqueue printed %q, not a task ID", l)
		}
		ids = append(ids, l)
	}
	return ids
}

type queueCounts struct {
	Pending, Active, Scheduled, Retry, Archived, Completed int
}

type stats struct {
	Queues      map[string]queueCounts `json:"queues"`
	DeadLetters int64                  `json:"dead_letters"`
}

func (c *cluster) stats() stats {
	c.t.Helper()
	r := testenv.Run(c.t, c.env, nil, 30*time.Second, c.bin, "stats", "--json")
	if r.Code != 0 {
		c.t.Fatalf("timq stats --json: exit %d: %s", r.Code, r.Stderr)
	}
	var s stats
	dec := json.NewDecoder(strings.NewReader(r.Stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		c.t.Fatalf("timq stats --json printed %q: %v", r.Stdout, err)
	}
	return s
}

// settle polls `timq stats --json` until nothing is pending, active,
// scheduled or retrying and completed+archived reaches done.
func (c *cluster) settle(done int) stats {
	c.t.Helper()
	var s stats
	testenv.Eventually(c.t, time.Minute, fmt.Sprintf("%d tasks completed or archived", done), func() (bool, string) {
		r := testenv.RunQuiet(c.t, c.env, nil, 30*time.Second, c.bin, "stats", "--json")
		s = stats{}
		if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &s) != nil {
			return false, r.Stderr
		}
		n, busy := 0, 0
		for _, q := range s.Queues {
			n += q.Completed + q.Archived
			busy += q.Pending + q.Active + q.Scheduled + q.Retry
		}
		return n >= done && busy == 0, fmt.Sprintf("%+v", s)
	})
	return s
}

// message reads one message from the emulator's admin API.
func (c *cluster) message(group string, seq uint64) sim.MessageState {
	c.t.Helper()
	resp, err := http.Get(fmt.Sprintf("%s/_sim/groups/%s/messages/%d", c.simURL, url.PathEscape(group), seq))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m sim.MessageState
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&m) != nil {
		c.t.Fatalf("GET message %s/%d: HTTP %d", group, seq, resp.StatusCode)
	}
	return m
}

func (c *cluster) simStats() sim.Stats {
	c.t.Helper()
	resp, err := http.Get(c.simURL + "/_sim/stats")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var s sim.Stats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		c.t.Fatal(err)
	}
	return s
}

// TestEndToEnd builds timq and runs every command as its own process
// against one Redis database and one `timq sim`.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	bin := testenv.Binary(t)
	r := testenv.Redis(t)
	c := &cluster{t: t, bin: bin, env: testenv.ChildEnv(
		"TIMQ_REDIS_URL="+r.URL(),
		fmt.Sprintf("TIMQ_SDKAPPID=%d", testenv.TestSDKAppID),
		"TIMQ_SECRET_KEY=e2e-secret-"+fmt.Sprint(time.Now().UnixNano()),
	)}

	// A bad setting is one clear line naming it, exit 2.
	bad := testenv.Run(t, append(append([]string(nil), c.env...), "TIMQ_API_BASE=http://127.0.0.1:1", "TIMQ_RATE=abc"), nil, 30*time.Second, bin, "worker")
	if lines := strings.Split(strings.TrimSpace(bad.Stderr), "\n"); bad.Code != 2 || len(lines) != 1 || !strings.Contains(lines[0], "TIMQ_RATE") {
		t.Errorf("TIMQ_RATE=abc timq worker: exit %d, stderr %q; want exit 2 and one line naming TIMQ_RATE", bad.Code, bad.Stderr)
	}
	bad = testenv.Run(t, append(append([]string(nil), c.env...), "TIMQ_SDKAPPID=twelve"), nil, 30*time.Second, bin, "sim")
	if lines := strings.Split(strings.TrimSpace(bad.Stderr), "\n"); bad.Code != 2 || len(lines) != 1 || !strings.Contains(lines[0], "TIMQ_SDKAPPID") {
		t.Errorf("TIMQ_SDKAPPID=twelve timq sim: exit %d, stderr %q; want exit 2 and one line naming TIMQ_SDKAPPID", bad.Code, bad.Stderr)
	}

	// The emulator and a worker, each a process of its own.
	simProc := testenv.Start(t, "sim", c.env, bin, "sim", "--addr", "127.0.0.1:0",
		"--group", "@TGS#e2eA:Public:30", "--group", "e2e-b:Public:10", "--group", "e2e-mod:Public:5", "--group", "e2e-c2:Public:3")
	line := simProc.WaitLine("timq sim: listening on http://", 30*time.Second)
	c.simURL = strings.TrimSpace(line[strings.Index(line, "http://"):])
	c.env = append(c.env, "TIMQ_API_BASE="+c.simURL)
	worker := testenv.Start(t, "worker", c.env, bin, "worker", "--log-format", "json", "--shutdown-timeout", "5s")
	worker.WaitLine(`"worker started"`, 30*time.Second)

	// timq enqueue: each operation prints its task IDs.
	clearID := c.enqueue("clear", "--group", "e2e-b", "--seq", "4")
	seqs := make([]string, 12)
	for i := range seqs {
		seqs[i] = fmt.Sprint(i + 1)
	}
	recallIDs := c.enqueue("recall", "--group", "@TGS#e2eA", "--seq", strings.Join(seqs, ","))
	modifyID := c.enqueue("modify", "--group", "e2e-mod", "--seq", "2", "--text", "edited by e2e", "--cloud-custom-data", "cd1")
	doomedID := c.enqueue("clear", "--group", "e2e-later") // no such group yet: 10010
	if len(clearID) != 1 || len(recallIDs) != 2 || len(modifyID) != 1 || len(doomedID) != 1 {
		t.Fatalf("task IDs: clear %v, recall %v (12 messages: want 2 tasks), modify %v, doomed clear %v", clearID, recallIDs, modifyID, doomedID)
	}
	// A mistake in the flags is one line naming the flag, exit 2.
	if r := c.run("enqueue", "modify", "--group", "e2e-mod"); r.Code != 2 || !strings.Contains(r.Stderr, "--seq") {
		t.Errorf("timq enqueue modify without --seq: exit %d, stderr %q; want exit 2 naming --seq", r.Code, r.Stderr)
	}

	// timq bulk: a file with bad lines queues nothing, and says which.
	dir := t.TempDir()
	file := filepath.Join(dir, "ops.jsonl")
	lines := []string{
		`# cleanup of 2026-06-11`,
		`{"op":"recall","GroupId":"@TGS#e2eA","MsgSeqList":[{"MsgSeq":20},{"MsgSeq":21}]}`,
		`{"op":"explode","GroupId":"e2e-b"}`,
		`{"op":"modify","GroupId":"e2e-mod","MsgSeq":3,"CloudCustomData":"bulk"}`,
		``,
		`{"op":"recall","GroupId":"@TGS#e2eA","MsgSeqList":[]}`,
		`{"op":"clear","GroupId":"e2e-c2","MsgSeq":2}`,
		`not json at all`,
	}
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := c.stats()
	rb := c.run("bulk", file)
	if rb.Code != 1 {
		t.Errorf("timq bulk with bad lines: exit %d, want 1", rb.Code)
	}
	for _, n := range []string{"line 3", "line 6", "line 8"} {
		if !strings.Contains(rb.Stderr, n) {
			t.Errorf("timq bulk did not report %s: stderr %q", n, rb.Stderr)
		}
	}
	if !strings.Contains(rb.Stdout, "rejected lines: 3") || !strings.Contains(rb.Stdout, "enqueued tasks: 0") {
		t.Errorf("timq bulk summary %q: want 3 rejected and 0 enqueued", rb.Stdout)
	}
	if after := c.stats(); fmt.Sprint(after.Queues) != fmt.Sprint(before.Queues) && totalPending(after) > totalPending(before) {
		t.Errorf("timq bulk with bad lines queued something: before %+v, after %+v", before, after)
	}
	rb = c.must("bulk", "--skip-invalid", "--json", file)
	var sum struct {
		Lines, Skipped, Rejected int64
		Enqueued                 map[string]int64
		Duplicates               int64
		Job                      struct{ ID string }
	}
	if err := json.Unmarshal([]byte(rb.Stdout), &sum); err != nil {
		t.Fatalf("timq bulk --json printed %q: %v", rb.Stdout, err)
	}
	if sum.Lines != 8 || sum.Skipped != 2 || sum.Rejected != 3 || sum.Duplicates != 0 ||
		sum.Enqueued["timq:recall"] != 1 || sum.Enqueued["timq:modify"] != 1 || sum.Enqueued["timq:clear"] != 1 {
		t.Errorf("timq bulk --skip-invalid summary = %+v; want 8 lines, 2 skipped, 3 rejected, one task of each type", sum)
	}

	// The file's 3 operations are a job, run in the job lane and counted
	// by the job (its lane keeps no completed task).
	testenv.Eventually(t, time.Minute, "the bulk job done", func() (bool, string) {
		r := testenv.RunQuiet(t, c.env, nil, 30*time.Second, bin, "jobs", "show", "--json", sum.Job.ID)
		var j struct {
			State  string
			Counts struct{ Applied, Total int }
		}
		_ = json.Unmarshal([]byte(r.Stdout), &j)
		return j.State == "done" && j.Counts.Applied == 3 && j.Counts.Total == 3, r.Stdout + r.Stderr
	})
	// 4 CLI operations (5 tasks); the clear of a missing group is
	// dead-lettered.
	s := c.settle(5)
	if s.DeadLetters != 1 {
		t.Fatalf("dead letters = %d, want 1", s.DeadLetters)
	}

	// timq dlq ls --json: the entry with its reason.
	var listing struct {
		Total     int              `json:"total"`
		Truncated bool             `json:"truncated"`
		Entries   []map[string]any `json:"entries"`
	}
	ls := c.must("dlq", "ls", "--json")
	if err := json.Unmarshal([]byte(ls.Stdout), &listing); err != nil {
		t.Fatalf("timq dlq ls --json printed %q: %v", ls.Stdout, err)
	}
	entries := listing.Entries
	if len(entries) != 1 || listing.Total != 1 || listing.Truncated {
		t.Fatalf("timq dlq ls --json: %d entries, total %d, truncated %v; want 1, 1, false", len(entries), listing.Total, listing.Truncated)
	}
	e := entries[0]
	for _, k := range []string{"id", "type", "payload", "code", "info", "attempts", "failed_at"} {
		if _, ok := e[k]; !ok {
			t.Errorf("dead letter has no %q: %v", k, e)
		}
	}
	payload, _ := json.Marshal(e["payload"])
	if e["id"] != doomedID[0] || e["type"] != "timq:clear" || e["code"] != float64(sim.CodeGroupMissing) ||
		e["attempts"] != float64(1) || string(payload) != `{"GroupId":"e2e-later"}` || !strings.Contains(fmt.Sprint(e["info"]), "e2e-later") {
		t.Errorf("dead letter = %v; want id %s, type timq:clear, code 10010 after 1 attempt, payload {\"GroupId\":\"e2e-later\"}", e, doomedID[0])
	}
	if _, err := time.Parse(time.RFC3339, fmt.Sprint(e["failed_at"])); err != nil {
		t.Errorf("failed_at %v: %v", e["failed_at"], err)
	}
	if r := c.must("dlq", "show", doomedID[0]); !strings.Contains(r.Stdout, `"code": 10010`) {
		t.Errorf("timq dlq show: %q", r.Stdout)
	}

	// The operator fixes the cause in the emulator, then requeues.
	resp, err := http.Post(c.simURL+"/_sim/groups", "application/json", bytes.NewReader([]byte(`{"GroupId":"e2e-later","Type":"Public","Messages":3}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /_sim/groups: HTTP %d", resp.StatusCode)
	}
	rq := c.must("dlq", "requeue", doomedID[0])
	if !strings.Contains(rq.Stdout, "requeued 1 of 1") || !strings.Contains(rq.Stdout, doomedID[0]+" -> ") {
		t.Errorf("timq dlq requeue printed %q", rq.Stdout)
	}
	s = c.settle(6)

	// timq stats --json: exact numbers. The archived clear stays in asynq's
	// archive; timq's store is empty after the requeue.
	want := map[string]queueCounts{
		"timq-clear":      {Completed: 2, Archived: 1},
		"timq-recall":     {Completed: 2},
		"timq-modify":     {Completed: 1},
		"timq-job-clear":  {},
		"timq-job-recall": {},
		"timq-job-modify": {},
	}
	if fmt.Sprint(s.Queues) != fmt.Sprint(want) || s.DeadLetters != 0 {
		t.Errorf("timq stats --json = %+v, want queues %+v and 0 dead letters", s, want)
	}
	if r := c.must("dlq", "ls"); !strings.Contains(r.Stdout, "no dead letters") {
		t.Errorf("timq dlq ls after requeue: %q", r.Stdout)
	}

	// The emulator's state is exactly what the operations asked for.
	for seq := uint64(1); seq <= 10; seq++ {
		if got := c.message("e2e-b", seq).Cleared; got != (seq <= 4) {
			t.Errorf("e2e-b/%d cleared = %v", seq, got)
		}
	}
	for seq := uint64(1); seq <= 30; seq++ {
		want := seq <= 12 || seq == 20 || seq == 21
		if got := c.message("@TGS#e2eA", seq).Recalled; got != want {
			t.Errorf("@TGS#e2eA/%d recalled = %v, want %v", seq, got, want)
		}
	}
	m2, m3 := c.message("e2e-mod", 2), c.message("e2e-mod", 3)
	if m2.Modified != 1 || m2.CloudCustomData != "cd1" || len(m2.MsgBody) != 1 || !strings.Contains(string(m2.MsgBody[0].MsgContent), "edited by e2e") {
		t.Errorf("e2e-mod/2 = %+v; want modified once to \"edited by e2e\" with custom data cd1", m2)
	}
	if m3.Modified != 1 || m3.CloudCustomData != "bulk" || !strings.Contains(string(m3.MsgBody[0].MsgContent), "seed message 3") {
		t.Errorf("e2e-mod/3 = %+v; want its custom data set to bulk and its body kept", m3)
	}
	for _, seq := range []uint64{1, 4, 5} {
		if c.message("e2e-mod", seq).Modified != 0 {
			t.Errorf("e2e-mod/%d modified", seq)
		}
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if got := c.message("e2e-c2", seq).Cleared; got != (seq <= 2) {
			t.Errorf("e2e-c2/%d cleared = %v", seq, got)
		}
		if !c.message("e2e-later", seq).Cleared {
			t.Errorf("e2e-later/%d not cleared after the requeue", seq)
		}
	}
	st := c.simStats()
	t.Logf("emulator: %d recalled, %d modified, %d cleared", st.MessagesRecalled, st.MessagesModified, st.MessagesCleared)
	if st.MessagesRecalled != 14 || st.MessagesModified != 2 || st.MessagesCleared != 4+2+3 {
		t.Errorf("emulator totals: %d recalled (want 14), %d modified (want 2), %d cleared (want 9)", st.MessagesRecalled, st.MessagesModified, st.MessagesCleared)
	}

	// Both long-running processes stop cleanly on SIGTERM.
	for _, p := range []*testenv.Proc{worker, simProc} {
		p.Signal(syscall.SIGTERM)
		code, err := p.Wait(15 * time.Second)
		if err != nil || code != 0 {
			t.Errorf("%s after SIGTERM: exit %d, %v; want 0", p.Name, code, err)
		}
	}
	if out := strings.Join(simProc.Stderr(), "\n"); !strings.Contains(out, "timq sim: stopped after") {
		t.Errorf("timq sim did not say it stopped: %q", out)
	}
}

func totalPending(s stats) int {
	n := 0
	for _, q := range s.Queues {
		n += q.Pending + q.Scheduled
	}
	return n
}
