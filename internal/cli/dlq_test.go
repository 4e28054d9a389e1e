package cli_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/cli"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// dlqFixture is a test's own Redis, its dead-letter store and a way to run
// timq against it in-process.
type dlqFixture struct {
	db    *testenv.RedisDB
	store *dlq.Store
}

func newDLQFixture(t *testing.T) dlqFixture {
	t.Helper()
	db := testenv.Redis(t)
	return dlqFixture{db: db, store: dlq.New(db.Client(t))}
}

// run runs timq with args and returns the exit status, stdout and stderr.
func (f dlqFixture) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env := &cli.Env{
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(k string) string {
			if k == "TIMQ_REDIS_URL" {
				return f.db.URL()
			}
			return ""
		},
	}
	code := cli.Main(context.Background(), env, args)
	return code, out.String(), errOut.String()
}

func (f dlqFixture) add(t *testing.T, es ...dlq.Entry) {
	t.Helper()
	if err := f.store.AddMany(context.Background(), es); err != nil {
		t.Fatal(err)
	}
}

func (f dlqFixture) count(t *testing.T) int64 {
	t.Helper()
	n, err := f.store.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

var dlqT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func dlqEntry(t *testing.T, id string, code int, seq uint64) dlq.Entry {
	t.Helper()
	p, err := json.Marshal(tasks.Recall{GroupId: "@TGS#2J4SZEAEL", MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: seq}}})
	if err != nil {
		t.Fatal(err)
	}
	return dlq.Entry{
		ID: id, Type: tasks.TypeRecall, Queue: tasks.QueueRecall, TaskID: strings.Split(id, "/")[0],
		Payload: p, Code: code, Info: fmt.Sprintf("failed with\n%d", code), Reason: dlq.ReasonPermanent,
		Attempts: 1, FailedAt: dlqT0.Add(time.Duration(seq) * time.Second), GroupId: "@TGS#2J4SZEAEL",
	}
}

// listing decodes what dlq ls --json printed, strictly: valid UTF-8, one
// JSON object, no field the listing does not define.
func listing(t *testing.T, out string) (l struct {
	Total     int64            `json:"total"`
	Offset    int              `json:"offset"`
	Limit     int              `json:"limit"`
	Code      int              `json:"code"`
	Truncated bool             `json:"truncated"`
	Entries   []map[string]any `json:"entries"`
}) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("ls --json printed invalid UTF-8: %q", out)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		t.Fatalf("ls --json is not the listing object: %v\n%s", err, out)
	}
	return l
}

func TestDLQListJSON(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)

	code, out, errOut := f.run(t, "dlq", "ls", "--json")
	if l := listing(t, out); code != 0 || l.Total != 0 || l.Truncated || l.Entries == nil || len(l.Entries) != 0 {
		t.Fatalf("empty ls --json: exit %d, stdout %q, stderr %q; want total 0 and entries []", code, out, errOut)
	}

	f.add(t, dlqEntry(t, "t1/1", 10031, 1), dlqEntry(t, "t2", 10010, 2), dlqEntry(t, "t3", 10031, 3))
	code, out, errOut = f.run(t, "dlq", "ls", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	l := listing(t, out)
	if len(l.Entries) != 3 || l.Total != 3 || l.Truncated || l.Limit != 100 {
		t.Fatalf("ls --json: %d entries, total %d, truncated %v, limit %d; want 3, 3, false, 100", len(l.Entries), l.Total, l.Truncated, l.Limit)
	}
	list := l.Entries
	for _, e := range list {
		for _, k := range []string{"id", "type", "payload", "code", "info", "attempts", "failed_at"} {
			if _, ok := e[k]; !ok {
				t.Fatalf("entry %v has no %q", e, k)
			}
		}
	}
	if list[0]["id"] != "t1/1" || list[0]["code"] != float64(10031) || list[0]["failed_at"] != "2025-03-01T12:00:01Z" {
		t.Fatalf("first entry = %v", list[0])
	}
	if p, ok := list[0]["payload"].(map[string]any); !ok || p["GroupId"] != "@TGS#2J4SZEAEL" {
		t.Fatalf("payload is not the JSON object: %v", list[0]["payload"])
	}

	code, out, _ = f.run(t, "dlq", "ls", "--json", "--code", "10031", "--limit", "1")
	l = listing(t, out)
	if code != 0 || len(l.Entries) != 1 || l.Entries[0]["id"] != "t1/1" || l.Total != 2 || !l.Truncated || l.Code != 10031 {
		t.Fatalf("ls --code --limit: exit %d, %s", code, out)
	}
	code, out, _ = f.run(t, "dlq", "ls", "--json", "--offset", "1", "--limit", "1")
	if l = listing(t, out); code != 0 || len(l.Entries) != 1 || l.Entries[0]["id"] != "t2" || l.Total != 3 || !l.Truncated {
		t.Fatalf("ls --offset 1 --limit 1: exit %d, %s", code, out)
	}
	code, out, _ = f.run(t, "dlq", "ls", "--json", "--offset", "2", "--limit", "1")
	if l = listing(t, out); code != 0 || len(l.Entries) != 1 || l.Total != 3 || l.Truncated {
		t.Fatalf("last page: exit %d, %s; want truncated false", code, out)
	}
}

// The table says how many entries it left out, and how to see them.
func TestDLQListTableSaysWhatIsCut(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	f.add(t, dlqEntry(t, "t1/1", 10031, 1), dlqEntry(t, "t2", 10010, 2), dlqEntry(t, "t3", 10031, 3))
	code, out, errOut := f.run(t, "dlq", "ls", "--limit", "2")
	if code != 0 || !strings.Contains(out, "2 of 3 dead letters") || !strings.Contains(out, "1 more not shown: --offset 2") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want it to say 1 more is not shown", code, out, errOut)
	}
}

// A foreign producer's payload that is not UTF-8 is kept, byte for byte, as
// base64, and the listing stays valid JSON for a strict decoder.
func TestDLQListJSONWithNonUTF8Payload(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	raw := "{\"GroupId\":\"g-f-\xff\xfe\"}"
	f.add(t, dlq.Entry{ID: "bad", Type: tasks.TypeClear, Queue: "default", Payload: json.RawMessage(raw),
		Reason: dlq.ReasonInvalidPayload, Info: "GroupId: is not valid UTF-8", GroupId: "g-f-\xff\xfe"})
	for _, args := range [][]string{{"dlq", "ls", "--json"}, {"dlq", "show", "bad"}} {
		code, out, errOut := f.run(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		if !utf8.ValidString(out) || !json.Valid([]byte(out)) {
			t.Fatalf("%v printed invalid JSON or UTF-8: %q", args, out)
		}
	}
	_, out, _ := f.run(t, "dlq", "ls", "--json")
	e := listing(t, out).Entries[0]
	if e["invalid_payload"] != true || e["payload_encoding"] != "base64" {
		t.Fatalf("entry %v: want invalid_payload true and payload_encoding base64", e)
	}
	got, err := base64.StdEncoding.DecodeString(e["payload"].(string))
	if err != nil || string(got) != raw {
		t.Fatalf("payload decodes to %q (%v), want the original bytes %q", got, err, raw)
	}
}

func TestDLQListTable(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	e := dlqEntry(t, "t1", 10010, 1)
	e.Info = strings.Repeat("x", 100)
	f.add(t, e, dlqEntry(t, "t2", 10031, 2))
	code, out, errOut := f.run(t, "dlq", "ls", "--limit", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("want header, one row, summary, the note on the rest; got:\n%s", out)
	}
	for _, want := range []string{"ID", "TYPE", "GROUP", "CODE", "ATTEMPTS", "FAILED_AT", "INFO"} {
		if !strings.Contains(lines[0], want) {
			t.Fatalf("header %q lacks %s", lines[0], want)
		}
	}
	row := strings.Fields(lines[1])
	want := []string{"t1", tasks.TypeRecall, "@TGS#2J4SZEAEL", "10010", "1", "2025-03-01T12:00:01Z", strings.Repeat("x", 57) + "..."}
	if !reflect.DeepEqual(row, want) {
		t.Fatalf("row = %q\nwant  %q", row, want)
	}
	if lines[2] != "1 of 2 dead letters, from #1" {
		t.Fatalf("summary = %q", lines[2])
	}
}

func TestDLQShow(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	e := dlqEntry(t, "t1/5", 10031, 5)
	f.add(t, e)
	code, out, errOut := f.run(t, "dlq", "show", "t1/5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got dlq.Entry
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("show is not an entry: %v\n%s", err, out)
	}
	if !strings.Contains(out, "\n  \"id\": \"t1/5\"") {
		t.Fatalf("show is not pretty-printed:\n%s", out)
	}
	if got.ID != e.ID || got.Code != e.Code || got.Info != e.Info || !got.FailedAt.Equal(e.FailedAt) {
		t.Fatalf("show = %+v", got)
	}

	code, _, errOut = f.run(t, "dlq", "show", "nope")
	if code != 1 || !strings.Contains(errOut, `"nope"`) {
		t.Fatalf("show unknown: exit %d, %q", code, errOut)
	}
	if code, _, _ = f.run(t, "dlq", "show"); code != 2 {
		t.Fatalf("show without id: exit %d, want 2", code)
	}
}

func TestDLQRequeueByCode(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	f.add(t, dlqEntry(t, "a/1", 10002, 1), dlqEntry(t, "b", 10010, 2), dlqEntry(t, "a/3", 10002, 3))

	code, out, errOut := f.run(t, "dlq", "requeue", "--code", "10002")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || lines[0] != "requeued 2 of 2" {
		t.Fatalf("output:\n%s", out)
	}
	insp := asynq.NewInspector(f.db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	for i, id := range []string{"a/1", "a/3"} {
		old, newID, ok := strings.Cut(lines[i+1], " -> ")
		if !ok || old != id || newID == "" {
			t.Fatalf("line %q: want %q -> NEWID", lines[i+1], id)
		}
		info, err := insp.GetTaskInfo(tasks.QueueRecall, newID)
		if err != nil {
			t.Fatalf("task %s not queued: %v", newID, err)
		}
		r, err := tasks.ParseRecall(info.Payload)
		if err != nil || info.Type != tasks.TypeRecall || !reflect.DeepEqual(r.Seqs(), []uint64{uint64(2*i + 1)}) {
			t.Fatalf("task %s: type %s payload %s (%v)", newID, info.Type, info.Payload, err)
		}
	}
	if n := f.count(t); n != 1 {
		t.Fatalf("%d entries left, want 1 (b)", n)
	}
}

func TestDLQRequeueKeepsWhatFails(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	bad := dlq.Entry{ID: "bad", Type: tasks.TypeClear, Payload: json.RawMessage(`{"GroupId":""}`), Code: 0, Reason: dlq.ReasonRetriesExhausted}
	f.add(t, bad, dlqEntry(t, "good", 10002, 1))
	code, out, errOut := f.run(t, "dlq", "requeue", "bad", "good", "ghost")
	if code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if !strings.HasPrefix(out, "requeued 1 of 3\ngood -> ") {
		t.Fatalf("stdout:\n%s", out)
	}
	for _, want := range []string{"bad: ", "GroupId", "ghost: ", "2 of 3 not requeued"} {
		if !strings.Contains(errOut, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if _, err := f.store.Get(context.Background(), "bad"); err != nil {
		t.Fatalf("entry whose payload failed validation was removed: %v", err)
	}
	if n := f.count(t); n != 1 {
		t.Fatalf("%d entries left, want 1", n)
	}
}

func TestDLQSelectionIsRequired(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	f.add(t, dlqEntry(t, "a", 10010, 1))
	for _, args := range [][]string{
		{"dlq"},
		{"dlq", "nope"},
		{"dlq", "requeue"},
		{"dlq", "purge"},
		{"dlq", "purge", "--all", "a"},
		{"dlq", "purge", "--all", "--code", "10010"},
		{"dlq", "requeue", "--code", "0"},
		{"dlq", "purge", "a", "--all"},
		{"dlq", "ls", "extra"},
	} {
		code, _, errOut := f.run(t, args...)
		if code != 2 || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q; want 2 and one line", args, code, errOut)
		}
	}
	if n := f.count(t); n != 1 {
		t.Fatalf("a usage error changed the store: %d entries", n)
	}
}

func TestDLQPurge(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	f.add(t, dlqEntry(t, "a", 10010, 1), dlqEntry(t, "b", 10031, 2), dlqEntry(t, "c", 10031, 3), dlqEntry(t, "d", 10004, 4))

	code, out, errOut := f.run(t, "dlq", "purge", "a", "ghost")
	if code != 1 || out != "purged 1\n" || !strings.Contains(errOut, "unknown id ghost\n") {
		t.Fatalf("purge a ghost: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = f.run(t, "dlq", "purge", "--code", "10031")
	if code != 0 || out != "purged 2\n" {
		t.Fatalf("purge --code: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = f.run(t, "dlq", "purge", "--all")
	if code != 0 || out != "purged 1\n" {
		t.Fatalf("purge --all: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if n := f.count(t); n != 0 {
		t.Fatalf("%d entries left after purge --all", n)
	}
	code, out, _ = f.run(t, "dlq", "purge", "--all")
	if code != 0 || out != "purged 0\n" {
		t.Fatalf("purge --all of nothing: exit %d, stdout %q", code, out)
	}
}

// asynq keeps the unique lock of a dead-lettered clear until its TTL ends;
// a requeue must not be refused as a duplicate of it.
func TestDLQRequeueIgnoresDedupLock(t *testing.T) {
	t.Parallel()
	f := newDLQFixture(t)
	ctx := context.Background()
	c := enqueue.New(f.db.ConnOpt())
	t.Cleanup(func() { _ = c.Close() })
	op := tasks.Clear{GroupId: "g1"}
	orig, err := c.Clear(ctx, op) // takes the unique lock
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Clear(ctx, op); !errors.Is(err, enqueue.ErrDuplicate) {
		t.Fatalf("second clear: %v, want ErrDuplicate (the lock is held)", err)
	}
	p, _ := json.Marshal(op)
	f.add(t, dlq.Entry{ID: orig, Type: tasks.TypeClear, Queue: tasks.QueueClear, TaskID: orig, Payload: p, Code: 10002, Reason: dlq.ReasonRetriesExhausted})
	code, out, errOut := f.run(t, "dlq", "requeue", orig)
	if code != 0 || !strings.HasPrefix(out, "requeued 1 of 1\n"+orig+" -> ") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	newID := strings.TrimSpace(strings.SplitN(out, " -> ", 2)[1])
	if newID == orig {
		t.Fatal("requeue reused the task ID")
	}
	insp := asynq.NewInspector(f.db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	qi, err := insp.GetQueueInfo(tasks.QueueClear)
	if err != nil || qi.Pending != 2 {
		t.Fatalf("queue %s: %+v, %v; want 2 pending", tasks.QueueClear, qi, err)
	}
}
