package cli_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/tasks"
)

const bulkFile = `# two good lines, two bad ones
{"op":"clear","GroupId":"@TGS#A","MsgSeq":9}
{"op":"recall","GroupId":"@TGS#A","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2},{"MsgSeq":3},{"MsgSeq":4},{"MsgSeq":5},{"MsgSeq":6},{"MsgSeq":7},{"MsgSeq":8},{"MsgSeq":9},{"MsgSeq":10},{"MsgSeq":11}]}

{"op":"recall","GroupId":"@TGS#A","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2},{"MsgSeq":0}]}
{"op":"modify","GroupId":"@TGS#A","MsgSeq":7,"CloudCustomData":"x","Extra":true}
`

func writeBulkFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ops.jsonl")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBulkRejectsBadFile(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	code, out, errOut := f.run(t, "", "bulk", writeBulkFile(t, bulkFile))
	wantErr := `line 5: MsgSeqList[2].MsgSeq: must be at least 1
line 6: Extra: is not a field of this operation
timq bulk: 2 lines rejected; nothing queued (fix them, or pass --skip-invalid to queue the rest)
`
	if code != 1 || errOut != wantErr {
		t.Errorf("exit %d, stderr:\n%s\nwant 1 and:\n%s", code, errOut, wantErr)
	}
	wantOut := `lines read:     6 (2 blank or comment)
rejected lines: 2
valid tasks:    3 (clear 1, recall 2)
enqueued tasks: 0 (bad lines)
duplicates:     0
estimated time: 1s at 200 calls/s per endpoint
`
	if out != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, wantOut)
	}
	if got := f.sizes(t); len(got) != 0 {
		t.Errorf("queues hold %v, want nothing", got)
	}
}

func TestBulkSkipInvalidJSON(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	code, out, errOut := f.run(t, "", "bulk", "--tasks", "--skip-invalid", "--json", writeBulkFile(t, bulkFile))
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var s struct {
		Lines, Skipped, Rejected, Duplicates int
		Enqueued                             map[string]int
		EstimateSeconds                      float64 `json:"estimate_seconds"`
		Errors                               []struct {
			Line          int
			Field, Reason string
		}
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, out)
	}
	if s.Lines != 6 || s.Skipped != 2 || s.Rejected != 2 || s.Enqueued[tasks.TypeClear] != 1 || s.Enqueued[tasks.TypeRecall] != 2 ||
		len(s.Errors) != 2 || s.Errors[1].Line != 6 || s.Errors[1].Field != "Extra" {
		t.Errorf("summary %s", out)
	}
	if got, want := f.sizes(t), map[string]int{tasks.QueueClear: 1, tasks.QueueRecall: 2}; !maps.Equal(got, want) {
		t.Errorf("queues hold %v, want %v", got, want)
	}
}

func TestBulkStdinDuplicatesAndRate(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	f.env[config.EnvRate] = "2"
	var in strings.Builder
	for i := range 10 {
		fmt.Fprintf(&in, `{"op":"clear","GroupId":"@TGS#%d"}`+"\n", i%4) // 6 duplicates
	}
	code, out, errOut := f.run(t, in.String(), "bulk", "--tasks", "--queue", "bulk-q", "-")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	wantOut := `lines read:     10 (0 blank or comment)
rejected lines: 0
enqueued tasks: 4 (clear 4)
duplicates:     6
estimated time: 2s at 2 calls/s per endpoint
`
	if out != wantOut {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, wantOut)
	}
	if got, want := f.sizes(t), map[string]int{"bulk-q": 4}; !maps.Equal(got, want) {
		t.Errorf("queues hold %v, want %v", got, want)
	}

	// --retention reaches every task; a negative one is refused.
	code, out, errOut = f.run(t, `{"op":"clear","GroupId":"@TGS#kept"}`+"\n", "bulk", "--tasks", "--queue", "bulk-r", "--retention", "0s", "--json", "-")
	if code != 0 {
		t.Fatalf("--retention 0s: exit %d, stderr %q", code, errOut)
	}
	pending, err := f.insp.ListPendingTasks("bulk-r")
	if err != nil || len(pending) != 1 || pending[0].Retention != 0 {
		t.Errorf("--retention 0s: pending %+v, %v; want one task with no retention", pending, err)
	}
	if code, _, errOut = f.run(t, "", "bulk", "--tasks", "--retention", "-1s", "-"); code != 2 || !strings.Contains(errOut, "--retention: must be 0 or at least 1s, got -1s") {
		t.Errorf("--retention -1s: exit %d, stderr %q; want 2 naming --retention", code, errOut)
	}
}

func TestBulkDryRun(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	good := strings.Repeat(`{"op":"modify","GroupId":"g","MsgSeq":1,"CloudCustomData":"x"}`+"\n", 3)
	code, out, errOut := f.run(t, good, "bulk", "--dry-run", "-")
	if code != 0 || !strings.Contains(out, "valid tasks:    3 (modify 3)\nenqueued tasks: 0 (dry run)\n") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := f.sizes(t); len(got) != 0 {
		t.Errorf("dry run enqueued %v", got)
	}
}

func TestBulkUsageErrors(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bulk"}, 2, "timq bulk: missing FILE (a path, or - for stdin)\n"},
		{[]string{"bulk", "a", "b"}, 2, "timq bulk: unexpected argument \"b\": give one FILE\n"},
		{[]string{"bulk", "--nope", "a"}, 2, "timq bulk: flag provided but not defined: -nope\n"},
		{[]string{"bulk", "--tasks", "--queue", " ", "a"}, 2, "timq bulk: --queue: the queue name must not be blank\n"},
		{[]string{"bulk", filepath.Join(t.TempDir(), "missing.jsonl")}, 1, "no such file or directory"},
	} {
		code, _, errOut := f.run(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	f.env[config.EnvRate] = "fast"
	if code, _, errOut := f.run(t, "", "bulk", "-"); code != 1 || !strings.HasPrefix(errOut, "timq bulk: TIMQ_RATE: ") {
		t.Errorf("bad TIMQ_RATE: exit %d, stderr %q", code, errOut)
	}
}
