package dlq_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

type bundle struct {
	db    *testenv.RedisDB
	rdb   *redis.Client
	store *dlq.Store
}

func setup(t *testing.T) bundle {
	t.Helper()
	db := testenv.Redis(t)
	rdb := db.Client(t)
	return bundle{db: db, rdb: rdb, store: dlq.New(rdb)}
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)

func recallPayload(t *testing.T, group string, seq uint64) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(tasks.Recall{GroupId: group, MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: seq}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func entry(t *testing.T, id string, code int, at time.Time) dlq.Entry {
	return dlq.Entry{
		ID:       id,
		Type:     tasks.TypeRecall,
		Queue:    tasks.QueueRecall,
		TaskID:   strings.SplitN(id, "/", 2)[0],
		Payload:  recallPayload(t, "@TGS#2J4SZEAEL", 7),
		Code:     code,
		Info:     fmt.Sprintf("error %d", code),
		Reason:   dlq.ReasonPermanent,
		Attempts: 1,
		FailedAt: at,
		GroupId:  "@TGS#2J4SZEAEL",
	}
}

func ids(es []dlq.Entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func mustAdd(t *testing.T, s *dlq.Store, es ...dlq.Entry) {
	t.Helper()
	for _, e := range es {
		if err := s.Add(context.Background(), e); err != nil {
			t.Fatalf("Add(%s): %v", e.ID, err)
		}
	}
}

func mustCount(t *testing.T, s *dlq.Store, want int64) {
	t.Helper()
	n, err := s.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("Count = %d, want %d", n, want)
	}
}

func TestAddGetListDeleteCount(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	mustCount(t, b.store, 0)

	// Added out of order: List sorts by FailedAt.
	c := entry(t, "c", 10010, t0.Add(2*time.Second))
	a := entry(t, "a", 10010, t0)
	bb := entry(t, "b/3", 0, t0.Add(time.Second).In(time.FixedZone("CST", 8*3600)))
	mustAdd(t, b.store, c, a, bb)
	mustCount(t, b.store, 3)

	got, err := b.store.Get(ctx, "b/3")
	if err != nil {
		t.Fatal(err)
	}
	want := bb
	want.FailedAt = bb.FailedAt.UTC()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Get:\n got %+v\nwant %+v", got, want)
	}
	if got.FailedAt.Location() != time.UTC {
		t.Fatalf("FailedAt location = %v, want UTC", got.FailedAt.Location())
	}

	list, err := b.store.List(ctx, dlq.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g := ids(list); !reflect.DeepEqual(g, []string{"a", "b/3", "c"}) {
		t.Fatalf("List ids = %v", g)
	}
	page, err := b.store.List(ctx, dlq.ListOptions{Offset: 1, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if g := ids(page); !reflect.DeepEqual(g, []string{"b/3"}) {
		t.Fatalf("List page = %v", g)
	}
	if _, err := b.store.List(ctx, dlq.ListOptions{Offset: -1}); err == nil {
		t.Fatal("List with a negative offset: no error")
	}

	n, err := b.store.Delete(ctx, "a", "nope", "c")
	if err != nil || n != 2 {
		t.Fatalf("Delete = %d, %v; want 2, nil", n, err)
	}
	mustCount(t, b.store, 1)
	if _, err := b.store.Get(ctx, "a"); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("Get deleted: err = %v, want ErrNotFound", err)
	} else if !strings.Contains(err.Error(), `"a"`) {
		t.Fatalf("Get error %q does not name the id", err)
	}
	byCode, err := b.store.CountByCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(byCode, map[int]int64{0: 1}) {
		t.Fatalf("CountByCode = %v", byCode)
	}
	n, err = b.store.Delete(ctx, "b/3")
	if err != nil || n != 1 {
		t.Fatalf("Delete = %d, %v; want 1, nil", n, err)
	}
	// Nothing is left behind in any key.
	keys, err := b.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("keys left after deleting everything: %v", keys)
	}
	empty, err := b.store.List(ctx, dlq.ListOptions{})
	if err != nil || empty == nil || len(empty) != 0 {
		t.Fatalf("List of empty store = %#v, %v; want empty non-nil", empty, err)
	}
}

func TestAddIsIdempotentByID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	mustAdd(t, b.store, entry(t, "x", 10010, t0), entry(t, "x", 10010, t0))
	mustCount(t, b.store, 1)

	// Re-adding with another code and time moves it between indexes.
	e := entry(t, "x", 10030, t0.Add(time.Hour))
	e.Attempts = 2
	mustAdd(t, b.store, e)
	mustCount(t, b.store, 1)
	got, err := b.store.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if got.Code != 10030 || got.Attempts != 2 || !got.FailedAt.Equal(e.FailedAt) {
		t.Fatalf("after overwrite: %+v", got)
	}
	old, err := b.store.List(ctx, dlq.ListOptions{Code: 10010})
	if err != nil || len(old) != 0 {
		t.Fatalf("code 10010 still lists %v (%v)", ids(old), err)
	}
	byCode, err := b.store.CountByCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(byCode, map[int]int64{10030: 1}) {
		t.Fatalf("CountByCode = %v", byCode)
	}
}

func TestAddValidatesAndNormalizes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, e := range []dlq.Entry{{Type: tasks.TypeClear}, {ID: "x"}} {
		if err := b.store.Add(ctx, e); err == nil {
			t.Fatalf("Add(%+v): no error", e)
		}
		if err := b.store.AddMany(ctx, []dlq.Entry{entry(t, "ok", 1, t0), e}); err == nil {
			t.Fatalf("AddMany with %+v: no error", e)
		}
	}
	mustCount(t, b.store, 0) // AddMany writes nothing when one entry is bad

	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := dlq.New(b.rdb, dlq.WithClock(func() time.Time { return now }))
	bad := dlq.Entry{ID: "t1", Type: tasks.TypeClear, Payload: json.RawMessage(`{"GroupId":`), Reason: dlq.ReasonInvalidPayload, Info: strings.Repeat("é", dlq.MaxInfoBytes)}
	if err := s.Add(ctx, bad); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	var str string
	if err := json.Unmarshal(got.Payload, &str); err != nil || str != `{"GroupId":` {
		t.Fatalf("invalid payload stored as %s (%v), want the JSON string of the bytes", got.Payload, err)
	}
	if !got.Invalid {
		t.Fatal("Invalid not set for a payload that is not JSON")
	}
	if !got.FailedAt.Equal(now) {
		t.Fatalf("FailedAt = %v, want the clock's %v", got.FailedAt, now)
	}
	if len(got.Info) > dlq.MaxInfoBytes || !strings.HasSuffix(got.Info, "...") || !utf8Valid(got.Info) {
		t.Fatalf("Info not capped cleanly: %d bytes, suffix %q", len(got.Info), got.Info[len(got.Info)-5:])
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestListAndIDsByCode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	mustAdd(t, b.store,
		entry(t, "p1", 10010, t0),
		entry(t, "q1", 10030, t0.Add(time.Second)),
		entry(t, "p2", 10010, t0.Add(2*time.Second)),
		entry(t, "n1", 0, t0.Add(3*time.Second)),
	)
	list, err := b.store.List(ctx, dlq.ListOptions{Code: 10010})
	if err != nil {
		t.Fatal(err)
	}
	if g := ids(list); !reflect.DeepEqual(g, []string{"p1", "p2"}) {
		t.Fatalf("List code 10010 = %v", g)
	}
	got, err := b.store.IDs(ctx, 10030)
	if err != nil || !reflect.DeepEqual(got, []string{"q1"}) {
		t.Fatalf("IDs(10030) = %v, %v", got, err)
	}
	got, err = b.store.IDs(ctx, 0)
	if err != nil || !reflect.DeepEqual(got, []string{"p1", "q1", "p2", "n1"}) {
		t.Fatalf("IDs(0) = %v, %v", got, err)
	}
	got, err = b.store.IDs(ctx, 404)
	if err != nil || len(got) != 0 {
		t.Fatalf("IDs(404) = %v, %v", got, err)
	}
	byCode, err := b.store.CountByCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]int64{10010: 2, 10030: 1, 0: 1}; !reflect.DeepEqual(byCode, want) {
		t.Fatalf("CountByCode = %v, want %v", byCode, want)
	}
}

// The store has no cap: asynq's archive would have dropped entries past
// 10,000; the store keeps all of them.
func TestNoCap(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	const n = 12000
	es := make([]dlq.Entry, n)
	for i := range es {
		es[i] = entry(t, fmt.Sprintf("task-%05d", i), 10010+i%3, t0.Add(time.Duration(i)*time.Millisecond))
	}
	if err := b.store.AddMany(ctx, es); err != nil {
		t.Fatal(err)
	}
	mustCount(t, b.store, n)

	seen := make(map[string]bool, n)
	const limit = 700 // not a divisor of the internal page size
	for off := 0; ; off += limit {
		page, err := b.store.List(ctx, dlq.ListOptions{Offset: off, Limit: limit})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			if seen[e.ID] {
				t.Fatalf("id %s listed twice", e.ID)
			}
			seen[e.ID] = true
		}
		if len(page) < limit {
			break
		}
	}
	if len(seen) != n {
		t.Fatalf("paging listed %d distinct ids, want %d", len(seen), n)
	}
	all, err := b.store.List(ctx, dlq.ListOptions{})
	if err != nil || len(all) != n {
		t.Fatalf("List all = %d entries, %v", len(all), err)
	}
	if all[0].ID != "task-00000" || all[n-1].ID != fmt.Sprintf("task-%05d", n-1) {
		t.Fatalf("List all not oldest first: %s ... %s", all[0].ID, all[n-1].ID)
	}
	allIDs, err := b.store.IDs(ctx, 0)
	if err != nil || len(allIDs) != n {
		t.Fatalf("IDs = %d, %v", len(allIDs), err)
	}
	deleted, err := b.store.Delete(ctx, allIDs...)
	if err != nil || deleted != n {
		t.Fatalf("Delete all = %d, %v", deleted, err)
	}
	mustCount(t, b.store, 0)
}

// asynqEnqueuer requeues the way the CLI does: parse, build with the task
// defaults and no uniqueness, enqueue.
func asynqEnqueuer(c *asynq.Client) dlq.Enqueuer {
	return dlq.EnqueuerFunc(func(ctx context.Context, typ string, payload []byte, queue string) (string, error) {
		p, err := tasks.Parse(typ, payload)
		if err != nil {
			return "", err
		}
		var opts []asynq.Option
		if queue != "" {
			opts = append(opts, asynq.Queue(queue))
		}
		task, err := tasks.NewTask(p, opts...)
		if err != nil {
			return "", err
		}
		info, err := c.EnqueueContext(ctx, task)
		if err != nil {
			return "", err
		}
		return info.ID, nil
	})
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}

func TestRequeueEnqueuesFreshTaskAndRemovesEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	client := asynq.NewClient(b.db.ConnOpt())
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(b.db.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })

	e := entry(t, "orig-task/7", 10002, t0)
	e.Queue = "timq-recall-custom"
	e.Reason = dlq.ReasonRetriesExhausted
	keep := entry(t, "other", 10010, t0)
	mustAdd(t, b.store, e, keep)

	res, err := b.store.Requeue(ctx, asynqEnqueuer(client), e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Requeued) != 1 || len(res.Failed) != 0 || res.Requeued[0].ID != e.ID {
		t.Fatalf("result = %+v", res)
	}
	newID := res.Requeued[0].TaskID
	if newID == "" || newID == "orig-task" {
		t.Fatalf("new task id %q is not fresh", newID)
	}
	info, err := insp.GetTaskInfo(e.Queue, newID)
	if err != nil {
		t.Fatalf("new task not in queue %s: %v", e.Queue, err)
	}
	if info.Type != tasks.TypeRecall || info.State != asynq.TaskStatePending || !jsonEqual(t, info.Payload, e.Payload) {
		t.Fatalf("new task: type %s state %v payload %s", info.Type, info.State, info.Payload)
	}
	if _, err := b.store.Get(ctx, e.ID); !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("entry still there after requeue: %v", err)
	}
	mustCount(t, b.store, 1)

	// Requeueing the same payload twice makes two tasks: no dedup.
	mustAdd(t, b.store, e)
	res2, err := b.store.Requeue(ctx, asynqEnqueuer(client), e.ID)
	if err != nil || res2.Requeued[0].TaskID == newID {
		t.Fatalf("second requeue = %+v, %v", res2, err)
	}
	qi, err := insp.GetQueueInfo(e.Queue)
	if err != nil || qi.Pending != 2 {
		t.Fatalf("queue %s: %+v, %v; want 2 pending", e.Queue, qi, err)
	}
	// The lock key is released.
	if n, _ := b.rdb.Exists(ctx, "{timq:dlq}:lock:"+e.ID).Result(); n != 0 {
		t.Fatal("requeue lock left behind")
	}
}

func TestRequeueFailureKeepsEntry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	mustAdd(t, b.store, entry(t, "a", 10010, t0), entry(t, "b", 10010, t0.Add(time.Second)))
	var calls atomic.Int32
	enq := dlq.EnqueuerFunc(func(_ context.Context, _ string, _ []byte, _ string) (string, error) {
		if calls.Add(1) == 1 {
			return "", errors.New("redis down")
		}
		return "new-b", nil
	})
	res, err := b.store.Requeue(ctx, enq, "a", "missing", "b")
	if err == nil {
		t.Fatal("no error when an enqueue failed")
	}
	for _, want := range []string{`"a"`, "redis down", `"missing"`} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %s", err, want)
		}
	}
	if !errors.Is(err, dlq.ErrNotFound) {
		t.Fatalf("error %v does not wrap ErrNotFound", err)
	}
	if len(res.Requeued) != 1 || res.Requeued[0] != (dlq.Requeued{ID: "b", TaskID: "new-b"}) {
		t.Fatalf("Requeued = %+v", res.Requeued)
	}
	if len(res.Failed) != 2 || res.Failed[0].ID != "a" || res.Failed[1].ID != "missing" {
		t.Fatalf("Failed = %+v", res.Failed)
	}
	if _, err := b.store.Get(ctx, "a"); err != nil {
		t.Fatalf("entry a lost after a failed enqueue: %v", err)
	}
	mustCount(t, b.store, 1)
}

func TestRequeueRefusesInvalidPayload(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	bad := dlq.Entry{ID: "bad", Type: tasks.TypeClear, Payload: json.RawMessage("\x00not json"), Reason: dlq.ReasonInvalidPayload}
	unparsable := dlq.Entry{ID: "unparsable", Type: tasks.TypeClear, Payload: json.RawMessage(`{"Group":"x"}`), Reason: dlq.ReasonInvalidPayload}
	mustAdd(t, b.store, bad, unparsable)
	enq := dlq.EnqueuerFunc(func(context.Context, string, []byte, string) (string, error) {
		t.Error("enqueuer called for an invalid entry")
		return "", nil
	})
	res, err := b.store.Requeue(ctx, enq, "bad", "unparsable")
	if !errors.Is(err, dlq.ErrInvalidPayload) || !strings.Contains(err.Error(), `"bad"`) || !strings.Contains(err.Error(), `"unparsable"`) {
		t.Fatalf("err = %v, want ErrInvalidPayload naming both ids", err)
	}
	if len(res.Requeued) != 0 || len(res.Failed) != 2 {
		t.Fatalf("result = %+v", res)
	}
	mustCount(t, b.store, 2)
}

func TestRequeueBusyEntryIsLeftAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	mustAdd(t, b.store, entry(t, "a", 10010, t0))
	if err := b.rdb.Set(ctx, "{timq:dlq}:lock:a", "someone-else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	enq := dlq.EnqueuerFunc(func(context.Context, string, []byte, string) (string, error) {
		t.Error("enqueuer called for a locked entry")
		return "", nil
	})
	if _, err := b.store.Requeue(ctx, enq, "a"); !errors.Is(err, dlq.ErrBusy) {
		t.Fatalf("err = %v, want ErrBusy", err)
	}
	if v, _ := b.rdb.Get(ctx, "{timq:dlq}:lock:a").Result(); v != "someone-else" {
		t.Fatalf("another process's lock was touched: %q", v)
	}
	mustCount(t, b.store, 1)
}

// The key layout is what operators and other tools see: pin it, and check
// that every key of a store shares one hash tag (one cluster slot).
func TestKeyLayout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	s := dlq.New(b.rdb, dlq.WithPrefix("acme:dlq"))
	mustAdd(t, s, entry(t, "a", 10010, t0))
	keys, err := b.rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{
		"{acme:dlq}:entries": true, "{acme:dlq}:codes": true, "{acme:dlq}:index": true,
		"{acme:dlq}:code:10010": true, "{acme:dlq}:codeset": true,
	}
	if len(keys) != len(want) {
		t.Fatalf("keys = %v", keys)
	}
	for _, k := range keys {
		if !want[k] {
			t.Fatalf("unexpected key %s (all: %v)", k, keys)
		}
	}
	mustCount(t, b.store, 0) // the default prefix is another store
}

func TestRecallEntryID(t *testing.T) {
	t.Parallel()
	if got := dlq.RecallEntryID("abc", 42); got != "abc/42" {
		t.Fatalf("RecallEntryID = %q", got)
	}
}

// A payload that is not UTF-8 is kept byte for byte, as base64, and the
// stored entry reads back as valid UTF-8 JSON.
func TestAddKeepsNonUTF8PayloadAsBase64(t *testing.T) {
	t.Parallel()
	s := setup(t).store
	raw := "{\"GroupId\":\"g-f-\xff\xfe\"}"
	if err := s.Add(t.Context(), dlq.Entry{ID: "f", Type: tasks.TypeClear, Payload: json.RawMessage(raw), Reason: dlq.ReasonInvalidPayload}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(t.Context(), "f")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Invalid || got.PayloadEncoding != "base64" {
		t.Fatalf("entry: invalid %v, encoding %q; want true, base64", got.Invalid, got.PayloadEncoding)
	}
	var b64 string
	if err := json.Unmarshal(got.Payload, &b64); err != nil {
		t.Fatalf("payload %s is not a JSON string: %v", got.Payload, err)
	}
	if dec, err := base64.StdEncoding.DecodeString(b64); err != nil || string(dec) != raw {
		t.Fatalf("payload decodes to %q (%v), want %q", dec, err, raw)
	}
	out, err := json.Marshal(got)
	if err != nil || !utf8.Valid(out) || !json.Valid(out) {
		t.Fatalf("entry marshals to %q (%v), want valid UTF-8 JSON", out, err)
	}
}
