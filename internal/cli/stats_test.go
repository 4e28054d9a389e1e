package cli_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/cli"
	"github.com/timq/timq/tasks"
)

// statsSeed queues two clears (one scheduled), three recalls (one of them
// archived afterwards) and one task in a queue of its own, plus two dead
// letters.
func statsSeed(t *testing.T, f dlqFixture) {
	t.Helper()
	client := asynq.NewClient(f.db.ConnOpt())
	t.Cleanup(func() { _ = client.Close() })
	enqueue := func(p tasks.Payload, opts ...asynq.Option) *asynq.TaskInfo {
		t.Helper()
		task, err := tasks.NewTask(p, opts...)
		if err != nil {
			t.Fatal(err)
		}
		info, err := client.Enqueue(task)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	enqueue(tasks.Clear{GroupId: "g1"})
	enqueue(tasks.Clear{GroupId: "g2"}, asynq.ProcessIn(time.Hour))
	var archive *asynq.TaskInfo
	for seq := uint64(1); seq <= 3; seq++ {
		info := enqueue(tasks.Recall{GroupId: "g1", MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: seq}}})
		if seq == 2 {
			archive = info
		}
	}
	enqueue(tasks.Clear{GroupId: "g3"}, asynq.Queue("timq-extra"))

	insp := asynq.NewInspector(f.db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	if err := insp.ArchiveTask(archive.Queue, archive.ID); err != nil {
		t.Fatal(err)
	}
	f.add(t, dlqEntry(t, "x", 10010, 1), dlqEntry(t, "y/1", 10031, 2))
}

func TestStatsJSON(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)

	// Before anything is queued: the three default queues, all zeros.
	code, out, errOut := f.run(t, "stats", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `{"queues":{"timq-clear":{"pending":0,"active":0,"scheduled":0,"retry":0,"archived":0,"completed":0},` +
		`"timq-modify":{"pending":0,"active":0,"scheduled":0,"retry":0,"archived":0,"completed":0},` +
		`"timq-recall":{"pending":0,"active":0,"scheduled":0,"retry":0,"archived":0,"completed":0}},"dead_letters":0}`
	assertJSON(t, out, want)

	statsSeed(t, f)
	code, out, errOut = f.run(t, "stats", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want = `{"queues":{"timq-clear":{"pending":1,"active":0,"scheduled":1,"retry":0,"archived":0,"completed":0},` +
		`"timq-extra":{"pending":1,"active":0,"scheduled":0,"retry":0,"archived":0,"completed":0},` +
		`"timq-modify":{"pending":0,"active":0,"scheduled":0,"retry":0,"archived":0,"completed":0},` +
		`"timq-recall":{"pending":2,"active":0,"scheduled":0,"retry":0,"archived":1,"completed":0}},"dead_letters":2}`
	assertJSON(t, out, want)
}

// assertJSON compares got and want as JSON values, and checks that got
// has exactly want's keys (no extra fields).
func assertJSON(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", strings.TrimSpace(got), want)
	}
}

func TestStatsTable(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	statsSeed(t, f)
	code, out, errOut := f.run(t, "stats")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "" +
		"QUEUE         PENDING    ACTIVE SCHEDULED     RETRY  ARCHIVED COMPLETED\n" +
		"timq-clear          1         0         1         0         0         0\n" +
		"timq-extra          1         0         0         0         0         0\n" +
		"timq-modify         0         0         0         0         0         0\n" +
		"timq-recall         2         0         0         0         1         0\n" +
		"\n" +
		"dead letters: 2\n"
	if out != want {
		t.Fatalf("got:\n%s\nwant:\n%s", out, want)
	}
	if code, _, _ := f.run(t, "stats", "extra"); code != 2 {
		t.Fatalf("stats extra: exit %d, want 2", code)
	}
}

func TestStatsBadRedisURL(t *testing.T) {
	t.Parallel()
	var out, errOut strings.Builder
	env := &cli.Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string {
		if k == "TIMQ_REDIS_URL" {
			return "http://nope"
		}
		return ""
	}}
	if code := cli.Main(context.Background(), env, []string{"stats"}); code != 1 || !strings.Contains(errOut.String(), "TIMQ_REDIS_URL") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}
