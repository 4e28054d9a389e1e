package cli_test

import (
	"bytes"
	"context"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/timq/timq/internal/cli"
	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// enqFixture runs timq commands in-process against a Redis of the test's own.
type enqFixture struct {
	rdb  *testenv.RedisDB
	insp *asynq.Inspector
	env  map[string]string
}

func newEnqFixture(t *testing.T) *enqFixture {
	t.Helper()
	rdb := testenv.Redis(t)
	insp := asynq.NewInspector(rdb.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	return &enqFixture{rdb: rdb, insp: insp, env: map[string]string{config.EnvRedisURL: rdb.URL()}}
}

// run runs timq with args and stdin, returning the exit status and output.
func (f *enqFixture) run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &cli.Env{
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(k string) string { return f.env[k] },
	}
	code = cli.Main(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

// ids splits the command's stdout into task IDs.
func enqIDs(stdout string) []string { return strings.Fields(stdout) }

// task returns the stored task, failing the test when it is not in queue.
func (f *enqFixture) task(t *testing.T, queue, id string) *asynq.TaskInfo {
	t.Helper()
	info, err := f.insp.GetTaskInfo(queue, id)
	if err != nil {
		t.Fatalf("task %q not in queue %s: %v", id, queue, err)
	}
	return info
}

// sizes returns how many tasks wait in each queue that has any.
func (f *enqFixture) sizes(t *testing.T) map[string]int {
	return testenv.QueueSizes(t, f.insp)
}

func TestEnqueueClear(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	code, out, errOut := f.run(t, "", "enqueue", "clear", "--group", "@TGS#2J4SZEAEL", "--seq", "42")
	ids := enqIDs(out)
	if code != 0 || len(ids) != 1 || errOut != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	info := f.task(t, tasks.QueueClear, ids[0])
	if info.Type != tasks.TypeClear || string(info.Payload) != `{"GroupId":"@TGS#2J4SZEAEL","MsgSeq":42}` || info.MaxRetry != tasks.DefaultMaxRetry {
		t.Errorf("stored %s %s MaxRetry=%d", info.Type, info.Payload, info.MaxRetry)
	}

	// The same clear again is a duplicate: reported, not a failure.
	code, out, errOut = f.run(t, "", "enqueue", "clear", "--group", "@TGS#2J4SZEAEL", "--seq", "42")
	if code != 0 || out != "" || errOut != "duplicate: an identical task is already queued\n" {
		t.Errorf("duplicate: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = f.run(t, "", "enqueue", "clear", "--group", "@TGS#2J4SZEAEL", "--seq", "42", "--no-dedup")
	if code != 0 || len(enqIDs(out)) != 1 {
		t.Errorf("--no-dedup: exit %d, stdout %q", code, out)
	}
	if got := f.sizes(t); !maps.Equal(got, map[string]int{tasks.QueueClear: 2}) {
		t.Errorf("queues hold %v, want 2 clears", got)
	}
	if info := f.task(t, tasks.QueueClear, ids[0]); info.Retention != tasks.DefaultRetention {
		t.Errorf("retention %v, want the default %v", info.Retention, tasks.DefaultRetention)
	}
	code, out, errOut = f.run(t, "", "enqueue", "clear", "--group", "@TGS#short", "--retention", "10m")
	if ids := enqIDs(out); code != 0 || len(ids) != 1 {
		t.Fatalf("--retention 10m: exit %d, stdout %q, stderr %q", code, out, errOut)
	} else if info := f.task(t, tasks.QueueClear, ids[0]); info.Retention != 10*time.Minute {
		t.Errorf("--retention 10m: task retention %v", info.Retention)
	}
}

func TestEnqueueRecall(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	seqs := make([]string, 25)
	for i := range seqs {
		seqs[i] = strings.Repeat(" ", i%2) + strconv.Itoa(i+1) // spaces are allowed
	}
	code, out, errOut := f.run(t, "", "enqueue", "recall", "--group", "g", "--seq", strings.Join(seqs, ","),
		"--topic", "topic", "--reason", "spam", "--queue", "recalls", "--max-retry", "3", "--delay", "1h")
	ids := enqIDs(out)
	if code != 0 || len(ids) != 3 {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 3 task IDs", code, out, errOut)
	}
	want := []string{
		`{"GroupId":"g","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2},{"MsgSeq":3},{"MsgSeq":4},{"MsgSeq":5},{"MsgSeq":6},{"MsgSeq":7},{"MsgSeq":8},{"MsgSeq":9},{"MsgSeq":10}],"TopicId":"topic","Reason":"spam"}`,
		`{"GroupId":"g","MsgSeqList":[{"MsgSeq":11},{"MsgSeq":12},{"MsgSeq":13},{"MsgSeq":14},{"MsgSeq":15},{"MsgSeq":16},{"MsgSeq":17},{"MsgSeq":18},{"MsgSeq":19},{"MsgSeq":20}],"TopicId":"topic","Reason":"spam"}`,
		`{"GroupId":"g","MsgSeqList":[{"MsgSeq":21},{"MsgSeq":22},{"MsgSeq":23},{"MsgSeq":24},{"MsgSeq":25}],"TopicId":"topic","Reason":"spam"}`,
	}
	for i, id := range ids {
		info := f.task(t, "recalls", id)
		if string(info.Payload) != want[i] || info.MaxRetry != 3 || info.State != asynq.TaskStateScheduled ||
			info.NextProcessAt.Before(time.Now().Add(59*time.Minute)) {
			t.Errorf("task %d: %s MaxRetry=%d %v at %v", i, info.Payload, info.MaxRetry, info.State, info.NextProcessAt)
		}
	}
}

func TestEnqueueModify(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	code, out, errOut := f.run(t, "", "enqueue", "modify", "--group", "g", "--seq", "7", "--text", "edited", "--cloud-custom-data", "")
	ids := enqIDs(out)
	if code != 0 || len(ids) != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if info := f.task(t, tasks.QueueModify, ids[0]); string(info.Payload) !=
		`{"GroupId":"g","MsgSeq":7,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"edited"}}],"CloudCustomData":""}` {
		t.Errorf("stored %s", info.Payload)
	}
	code, out, errOut = f.run(t, "", "enqueue", "modify", "--group", "g", "--seq", "8", "--topic", "t",
		"--body", `[{"MsgType":"TIMCustomElem","MsgContent":{"Data":"d"}}]`)
	ids = enqIDs(out)
	if code != 0 || len(ids) != 1 {
		t.Fatalf("--body: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if info := f.task(t, tasks.QueueModify, ids[0]); string(info.Payload) !=
		`{"GroupId":"g","MsgSeq":8,"MsgBody":[{"MsgType":"TIMCustomElem","MsgContent":{"Data":"d"}}],"TopicId":"t"}` {
		t.Errorf("stored %s", info.Payload)
	}
}

func TestEnqueueUsageErrors(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"enqueue"}, "timq enqueue: missing operation: clear, recall or modify (timq enqueue --help)\n"},
		{[]string{"enqueue", "delete"}, "timq enqueue: unknown operation \"delete\": want clear, recall or modify\n"},
		{[]string{"enqueue", "clear"}, "timq enqueue: --group: GroupId: is required\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--seq", "0"}, "timq enqueue: --seq: MsgSeq: must be at least 1 when set (leave it out to clear all)\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--seq", "x"}, "timq enqueue: --seq: \"x\" is not a message seq (a whole number from 1)\n"},
		{[]string{"enqueue", "clear", "--group", "g", "extra"}, "timq enqueue: unexpected argument \"extra\" (flags come after the operation)\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--text", "x"}, "timq enqueue: flag provided but not defined: -text\n"},
		{[]string{"enqueue", "recall", "--group", "g"}, "timq enqueue: --seq: the message seqs to recall are required, e.g. --seq 1,2,3\n"},
		{[]string{"enqueue", "recall", "--group", "g", "--seq", "1,2,0"}, "timq enqueue: --seq: MsgSeqList[2].MsgSeq: must be at least 1\n"},
		{[]string{"enqueue", "recall", "--group", "g", "--seq", "1,,2"}, "timq enqueue: --seq: \"\" is not a message seq (a whole number from 1)\n"},
		{[]string{"enqueue", "recall", "--group", "g", "--seq", "1,2,3,4,5,6,7,8,9,10,11,12,3"}, "timq enqueue: --seq: MsgSeqList[12].MsgSeq: repeats MsgSeqList[2] (3)\n"},
		{[]string{"enqueue", "recall", "--group", " g", "--seq", "1"}, "timq enqueue: --group: GroupId: has leading or trailing white space\n"},
		{[]string{"enqueue", "recall", "--group", "g", "--seq", "1", "--reason", strings.Repeat("r", 300)}, "timq enqueue: --reason: Reason: is 300 bytes, more than 256\n"},
		{[]string{"enqueue", "modify", "--group", "g", "--text", "x"}, "timq enqueue: --seq: MsgSeq: is required and must be at least 1\n"},
		{[]string{"enqueue", "modify", "--group", "g", "--seq", "1"}, "timq enqueue: --text, --body or --cloud-custom-data: MsgBody: or CloudCustomData is required: a modify must change something\n"},
		{[]string{"enqueue", "modify", "--group", "g", "--seq", "1", "--text", "a", "--body", "[]"}, "timq enqueue: --text, --body: give only one of them\n"},
		{[]string{"enqueue", "modify", "--group", "g", "--seq", "1", "--body", `{"MsgType":"TIMTextElem"}`}, "timq enqueue: --body: MsgBody: must be a JSON array of elements\n"},
		{[]string{"enqueue", "modify", "--group", "g", "--seq", "1", "--body", `[{"MsgType":"TIMTextElem","MsgContent":{}}]`}, "timq enqueue: --body: MsgBody[0].MsgContent.Text: is required\n"},
		{[]string{"enqueue", "modify", "--group", "g", "--seq", "1", "--body", `[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"},"Extra":1}]`}, "timq enqueue: --body: MsgBody: unknown field \"Extra\"\n"},
		{[]string{"enqueue", "modify", "--group", "g", "--seq", "1", "--cloud-custom-data", strings.Repeat("c", 9000)}, "timq enqueue: --cloud-custom-data: CloudCustomData: is 9000 bytes, more than 8192\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--max-retry", "-1"}, "timq enqueue: --max-retry: must be from 0 to 1000, got -1\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--max-retry", "2147483648"}, "timq enqueue: --max-retry: must be from 0 to 1000, got 2147483648\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--queue", " timq-clear "}, "timq enqueue: --queue: the queue name must not start or end with white space, got \" timq-clear \"\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--retention", "999ms"}, "timq enqueue: --retention: must be 0 or at least 1s, got 999ms\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--delay", "-1s"}, "timq enqueue: --delay: must not be negative, got -1s\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--delay", "soon"}, "timq enqueue: invalid value \"soon\" for flag -delay: parse error\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--queue", " "}, "timq enqueue: --queue: the queue name must not be blank\n"},
		{[]string{"enqueue", "clear", "--group", "g", "--retention", "-1h"}, "timq enqueue: --retention: must be 0 or at least 1s, got -1h0m0s\n"},
	} {
		code, out, errOut := f.run(t, "", tc.args...)
		if code != 2 || out != "" || errOut != tc.want {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if got := f.sizes(t); len(got) != 0 {
		t.Errorf("queues hold %v after usage errors, want nothing", got)
	}
}

func TestEnqueueHelp(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	code, _, errOut := f.run(t, "", "enqueue", "--help")
	if code != 0 || !strings.Contains(errOut, "Usage: timq enqueue") || !strings.Contains(errOut, "duplicate: an identical task is already queued") {
		t.Errorf("enqueue --help: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = f.run(t, "", "enqueue", "recall", "-h")
	if code != 0 || !strings.Contains(errOut, "Usage: timq enqueue recall") || !strings.Contains(errOut, "-seq seqs") {
		t.Errorf("enqueue recall -h: exit %d, stderr %q", code, errOut)
	}
}

func TestEnqueueRedisErrors(t *testing.T) {
	t.Parallel()
	f := &enqFixture{env: map[string]string{config.EnvRedisURL: "mysql://nope"}}
	code, _, errOut := f.run(t, "", "enqueue", "clear", "--group", "g")
	if code != 1 || !strings.HasPrefix(errOut, "timq enqueue: TIMQ_REDIS_URL: ") {
		t.Errorf("bad URL: exit %d, stderr %q", code, errOut)
	}
	f.env[config.EnvRedisURL] = "redis://127.0.0.1:1/0"
	code, _, errOut = f.run(t, "", "enqueue", "clear", "--group", "g")
	if code != 1 || !strings.HasPrefix(errOut, "timq enqueue: enqueue clear: ") || !strings.Contains(errOut, "(Redis redis://127.0.0.1:1/0)") {
		t.Errorf("no Redis: exit %d, stderr %q", code, errOut)
	}
}

// stats and dlq name the Redis they could not reach, without its password,
// in one line.
func TestReadersNameTheRedisTheyTried(t *testing.T) {
	t.Parallel()
	f := &enqFixture{env: map[string]string{config.EnvRedisURL: "redis://:hunter2@127.0.0.1:1/0"}}
	for _, args := range [][]string{{"stats"}, {"dlq", "ls"}, {"dlq", "show", "x"}, {"dlq", "purge", "--all"}} {
		code, _, errOut := f.run(t, "", args...)
		if code != 1 || !strings.Contains(errOut, "(Redis redis://") || !strings.Contains(errOut, "127.0.0.1:1/0)") ||
			strings.Contains(errOut, "hunter2") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%v: exit %d, stderr %q; want one line naming the Redis without its password", args, code, errOut)
		}
	}
}
