package enqueue_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

const group = "@TGS#2J4SZEAEL"

type bundle struct {
	rdb    *testenv.RedisDB
	client *enqueue.Client
	insp   *asynq.Inspector
}

func setup(t *testing.T) bundle {
	t.Helper()
	rdb := testenv.Redis(t)
	c := enqueue.New(rdb.ConnOpt())
	t.Cleanup(func() { _ = c.Close() })
	insp := asynq.NewInspector(rdb.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	return bundle{rdb: rdb, client: c, insp: insp}
}

// task returns the stored task with the given ID, failing the test when it
// is not in queue.
func (b bundle) task(t *testing.T, queue, id string) *asynq.TaskInfo {
	t.Helper()
	info, err := b.insp.GetTaskInfo(queue, id)
	if err != nil {
		t.Fatalf("task %s not in queue %s: %v", id, queue, err)
	}
	return info
}

// requireEmpty fails the test when any task was enqueued.
func (b bundle) requireEmpty(t *testing.T) {
	t.Helper()
	qs, err := b.insp.Queues()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		info, err := b.insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		if info.Size > 0 {
			t.Fatalf("queue %s holds %d tasks, want none", q, info.Size)
		}
	}
}

func seqs(from uint64, n int) []tasks.MsgSeqItem {
	out := make([]tasks.MsgSeqItem, n)
	for i := range out {
		out[i] = tasks.MsgSeqItem{MsgSeq: from + uint64(i)}
	}
	return out
}

func ptr[T any](v T) *T { return &v }

func TestClearStoresTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	id, err := b.client.Clear(ctx, tasks.Clear{GroupId: group, MsgSeq: ptr(uint64(42))})
	if err != nil || id == "" {
		t.Fatalf("Clear = %q, %v", id, err)
	}
	info := b.task(t, tasks.QueueClear, id)
	if info.Type != tasks.TypeClear || info.Queue != tasks.QueueClear || info.State != asynq.TaskStatePending {
		t.Errorf("stored type %q queue %q state %v; want %q %q pending", info.Type, info.Queue, info.State, tasks.TypeClear, tasks.QueueClear)
	}
	if info.MaxRetry != tasks.DefaultMaxRetry || info.Timeout != tasks.DefaultTimeout || info.Retention != tasks.DefaultRetention {
		t.Errorf("stored MaxRetry=%d Timeout=%v Retention=%v; want the tasks defaults", info.MaxRetry, info.Timeout, info.Retention)
	}
	p, err := tasks.ParseClear(info.Payload)
	if err != nil || p.GroupId != group || p.MsgSeq == nil || *p.MsgSeq != 42 {
		t.Errorf("stored payload %s parses to %+v, %v", info.Payload, p, err)
	}
}

func TestModifyStoresTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	want := tasks.Modify{GroupId: group, MsgSeq: 9, MsgBody: tasks.TextBody("edited"), CloudCustomData: ptr("cc"), TopicId: "topic"}
	id, err := b.client.Modify(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	info := b.task(t, tasks.QueueModify, id)
	got, err := tasks.ParseModify(info.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if got.GroupId != want.GroupId || got.MsgSeq != 9 || *got.CloudCustomData != "cc" || got.TopicId != "topic" ||
		string(got.MsgBody[0].MsgContent) != `{"Text":"edited"}` || info.Type != tasks.TypeModify {
		t.Errorf("stored %s %s, want %+v", info.Type, info.Payload, want)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	before := time.Now()
	id, err := b.client.Clear(ctx, tasks.Clear{GroupId: "g1"}, enqueue.Queue("custom"), enqueue.MaxRetry(3), enqueue.Delay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	info := b.task(t, "custom", id)
	if info.MaxRetry != 3 || info.State != asynq.TaskStateScheduled {
		t.Errorf("MaxRetry=%d State=%v, want 3 scheduled", info.MaxRetry, info.State)
	}
	if at := info.NextProcessAt; at.Before(before.Add(time.Hour).Truncate(time.Second)) || at.After(time.Now().Add(time.Hour)) {
		t.Errorf("NextProcessAt = %v, want about an hour after %v", at, before)
	}
	// The due time the worker measures enqueue-to-call latency from is the
	// scheduled time, not the enqueue time.
	due := dueOf(t, info)
	if due.Before(before.Add(time.Hour).Truncate(time.Millisecond)) || due.After(time.Now().Add(time.Hour)) {
		t.Errorf("due header = %v, want an hour after %v", due, before)
	}

	at := time.Now().Add(3 * time.Hour).Truncate(time.Second)
	ids, err := b.client.Recall(ctx, tasks.Recall{GroupId: "g2", MsgSeqList: seqs(1, 2)}, enqueue.Delay(time.Minute), enqueue.ProcessAt(at))
	if err != nil {
		t.Fatal(err)
	}
	if info := b.task(t, tasks.QueueRecall, ids[0]); !info.NextProcessAt.Equal(at) || info.MaxRetry != tasks.DefaultMaxRetry {
		t.Errorf("ProcessAt after Delay: NextProcessAt=%v MaxRetry=%d, want %v %d", info.NextProcessAt, info.MaxRetry, at, tasks.DefaultMaxRetry)
	}

	id, err = b.client.Clear(ctx, tasks.Clear{GroupId: "g4"}, enqueue.Retention(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if info := b.task(t, tasks.QueueClear, id); info.Retention != time.Hour {
		t.Errorf("Retention(time.Hour): task retention %v", info.Retention)
	}
	id, err = b.client.Clear(ctx, tasks.Clear{GroupId: "g5"})
	if err != nil {
		t.Fatal(err)
	}
	info = b.task(t, tasks.QueueClear, id)
	if info.Retention != tasks.DefaultRetention {
		t.Errorf("default task retention %v, want %v", info.Retention, tasks.DefaultRetention)
	}
	if due := dueOf(t, info); due.Before(before.Truncate(time.Millisecond)) || due.After(time.Now()) {
		t.Errorf("due header of a task for now = %v, want its enqueue time (after %v)", due, before)
	}

	id, err = b.client.Modify(ctx, tasks.Modify{GroupId: "g3", MsgSeq: 1, CloudCustomData: ptr("")}, enqueue.ProcessAt(at), enqueue.Delay(0))
	if err != nil {
		t.Fatal(err)
	}
	if info := b.task(t, tasks.QueueModify, id); info.State != asynq.TaskStatePending {
		t.Errorf("Delay(0) after ProcessAt: state %v, want pending", info.State)
	}
}

func TestInvalidOptionsEnqueueNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, tc := range []struct {
		opt  enqueue.Option
		want string
	}{
		{enqueue.Queue(" "), "option Queue: "},
		{enqueue.Queue(" timq-clear "), "option Queue: the queue name must not start or end with white space"},
		{enqueue.Queue("timq-\xffclear"), "option Queue: the queue name is not valid UTF-8"},
		{enqueue.Queue("timq\x00clear"), "option Queue: the queue name must not contain control characters"},
		{enqueue.Queue(strings.Repeat("q", 257)), "option Queue: the queue name must be at most 256 bytes, got 257"},
		{enqueue.TaskID("id-\xff"), "option TaskID: the ID is not valid UTF-8"},
		{enqueue.MaxRetry(-1), "option MaxRetry: "},
		// asynq keeps the count in 32 bits: these wrapped to -2147483648, 0
		// and -1, and the task was dead-lettered after its first attempt.
		{enqueue.MaxRetry(1 << 31), "option MaxRetry: must be from 0 to 1000, got 2147483648"},
		{enqueue.MaxRetry(1 << 32), "option MaxRetry: must be from 0 to 1000"},
		{enqueue.MaxRetry(math.MaxInt), "option MaxRetry: must be from 0 to 1000"},
		{enqueue.Delay(-time.Second), "option Delay: "},
		// A score this large broke asynq's listing of the queue's
		// scheduled tasks for every task in it.
		{enqueue.ProcessAt(time.Unix(math.MaxInt64/2, 0)), "option ProcessAt: must not be after 9999-12-31T23:59:59Z"},
		{enqueue.Dedup(500 * time.Millisecond), "option Dedup: "},
		{enqueue.Retention(-time.Second), "option Retention: "},
		{enqueue.Retention(500 * time.Millisecond), "option Retention: must be 0 or at least 1s, got 500ms"},
	} {
		ids, err := b.client.Enqueue(context.Background(), tasks.Clear{GroupId: group}, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) || len(ids) != 0 {
			t.Errorf("Enqueue with a bad option = %v, %v; want an error containing %q", ids, err, tc.want)
		}
	}
	b.requireEmpty(t)
}

func TestRecallSplitsInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	r := tasks.Recall{GroupId: group, MsgSeqList: seqs(101, 25), TopicId: "topic", Reason: "spam"}
	ids, err := b.client.Recall(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 3 {
		t.Fatalf("Recall of 25 messages made %d tasks, want 3", len(ids))
	}
	var got [][]uint64
	for _, id := range ids {
		info := b.task(t, tasks.QueueRecall, id)
		p, err := tasks.ParseRecall(info.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if p.GroupId != group || p.TopicId != "topic" || p.Reason != "spam" || info.Type != tasks.TypeRecall {
			t.Errorf("part %s lost fields: %s", id, info.Payload)
		}
		got = append(got, p.Seqs())
	}
	want := [][]uint64{seqsOf(101, 10), seqsOf(111, 10), seqsOf(121, 5)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parts = %v, want %v", got, want)
	}

	// Recalls are not de-duplicated by default.
	again, err := b.client.Recall(context.Background(), r)
	if err != nil || len(again) != 3 {
		t.Fatalf("second identical Recall = %v, %v; want 3 more tasks", again, err)
	}
}

func seqsOf(from uint64, n int) []uint64 {
	var out []uint64
	for _, s := range seqs(from, n) {
		out = append(out, s.MsgSeq)
	}
	return out
}

func TestInvalidRecallEnqueuesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	list := func(f func([]tasks.MsgSeqItem)) []tasks.MsgSeqItem {
		l := seqs(1, 25)
		f(l)
		return l
	}
	for _, tc := range []struct {
		name  string
		r     tasks.Recall
		field string
		want  string
	}{
		{"zero in the second part", tasks.Recall{GroupId: group, MsgSeqList: list(func(l []tasks.MsgSeqItem) { l[13].MsgSeq = 0 })},
			"MsgSeqList[13].MsgSeq", "must be at least 1"},
		{"zero in the last part", tasks.Recall{GroupId: group, MsgSeqList: list(func(l []tasks.MsgSeqItem) { l[24].MsgSeq = 0 })},
			"MsgSeqList[24].MsgSeq", "must be at least 1"},
		{"repeat within a part", tasks.Recall{GroupId: group, MsgSeqList: list(func(l []tasks.MsgSeqItem) { l[15].MsgSeq = 12 })},
			"MsgSeqList[15].MsgSeq", "repeats MsgSeqList[11] (12)"},
		{"repeat across parts", tasks.Recall{GroupId: group, MsgSeqList: list(func(l []tasks.MsgSeqItem) { l[22].MsgSeq = 4 })},
			"MsgSeqList[22].MsgSeq", "repeats MsgSeqList[3] (4)"},
		{"bad group", tasks.Recall{GroupId: " g", MsgSeqList: seqs(1, 25)}, "GroupId", "white space"},
		{"empty list", tasks.Recall{GroupId: group}, "MsgSeqList", "at least one"},
	} {
		ids, err := b.client.Recall(context.Background(), tc.r)
		var ve *tasks.ValidationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: Recall = %v, %v; want a *tasks.ValidationError", tc.name, ids, err)
			continue
		}
		if ve.Field != tc.field || !strings.Contains(ve.Reason, tc.want) || len(ids) != 0 {
			t.Errorf("%s: error %q, want field %s and %q", tc.name, err, tc.field, tc.want)
		}
		if want := "enqueue recall: " + tc.field + ": "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: error %q does not start %q", tc.name, err, want)
		}
	}
	b.requireEmpty(t)
}

func TestInvalidPayloads(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	big := strings.Repeat("<", tasks.MaxCloudCustomDataBytes)
	body := []tasks.MsgElement{{MsgType: "TIMTextElem", MsgContent: []byte(`{"Text":"` + strings.Repeat("<", 7000) + `"}`)}}
	for _, tc := range []struct {
		name  string
		p     tasks.Payload
		field string
	}{
		{"nil", nil, "payload"},
		{"nil pointer", (*tasks.Clear)(nil), "payload"},
		{"clear", tasks.Clear{GroupId: group, MsgSeq: ptr(uint64(0))}, "MsgSeq"},
		{"modify", tasks.Modify{GroupId: group, MsgSeq: 1}, "MsgBody"},
		{"modify body", tasks.Modify{GroupId: group, MsgSeq: 1, MsgBody: []tasks.MsgElement{{MsgType: "TIMTextElem", MsgContent: []byte(`{}`)}}}, "MsgBody[0].MsgContent.Text"},
		// Valid by field, but JSON escaping makes it larger than a worker parses.
		{"encodes too large", tasks.Modify{GroupId: group, MsgSeq: 1, MsgBody: body, CloudCustomData: &big}, "payload"},
	} {
		ids, err := b.client.Enqueue(ctx, tc.p)
		var ve *tasks.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field || len(ids) != 0 {
			t.Errorf("%s: Enqueue = %v, %v; want a %s error", tc.name, ids, err, tc.field)
		}
	}
	b.requireEmpty(t)

	// A pointer to a payload is accepted.
	if ids, err := b.client.Enqueue(ctx, &tasks.Clear{GroupId: group}); err != nil || len(ids) != 1 {
		t.Errorf("Enqueue(&Clear) = %v, %v", ids, err)
	}
}

func TestDedup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	clear := tasks.Clear{GroupId: group}
	modify := tasks.Modify{GroupId: group, MsgSeq: 5, MsgBody: tasks.TextBody("x")}

	first, err := b.client.Clear(ctx, clear)
	if err != nil {
		t.Fatal(err)
	}
	id, err := b.client.Clear(ctx, clear)
	if !errors.Is(err, enqueue.ErrDuplicate) || !errors.Is(err, asynq.ErrDuplicateTask) || id != "" {
		t.Fatalf("second Clear = %q, %v; want ErrDuplicate", id, err)
	}
	if want := "enqueue clear: an identical task is already queued"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if _, err := b.client.Modify(ctx, modify); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Modify(ctx, modify); !errors.Is(err, enqueue.ErrDuplicate) {
		t.Fatalf("second Modify: %v, want ErrDuplicate", err)
	}
	// A different payload, another queue, or NoDedup is not a duplicate.
	if _, err := b.client.Clear(ctx, tasks.Clear{GroupId: group, MsgSeq: ptr(uint64(3))}); err != nil {
		t.Errorf("Clear with a MsgSeq: %v", err)
	}
	if _, err := b.client.Clear(ctx, clear, enqueue.Queue("other")); err != nil {
		t.Errorf("Clear to another queue: %v", err)
	}
	if _, err := b.client.Clear(ctx, clear, enqueue.NoDedup()); err != nil {
		t.Errorf("Clear with NoDedup: %v", err)
	}
	// Recall de-duplicates only when asked, per task.
	r := tasks.Recall{GroupId: group, MsgSeqList: seqs(1, 15)}
	if _, err := b.client.Recall(ctx, r, enqueue.Dedup(time.Minute)); err != nil {
		t.Fatal(err)
	}
	r.MsgSeqList = seqs(1, 20) // the first part repeats, the second differs
	ids, err := b.client.Recall(ctx, r, enqueue.Dedup(time.Minute))
	if !errors.Is(err, enqueue.ErrDuplicate) || len(ids) != 1 || !strings.Contains(err.Error(), "1 of 2 tasks") {
		t.Errorf("Recall with one duplicate part = %v, %v; want 1 ID and ErrDuplicate for 1 of 2 tasks", ids, err)
	}

	// Once the first clear completes, an identical one is accepted again.
	runUntilCompleted(t, b, tasks.QueueClear, first)
	second, err := b.client.Clear(ctx, clear)
	if err != nil || second == "" || second == first {
		t.Fatalf("Clear after the first completed = %q, %v; want a new task", second, err)
	}
	// Deleting a waiting task releases its lock too.
	if err := b.insp.DeleteTask(tasks.QueueClear, second); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Clear(ctx, clear); err != nil {
		t.Errorf("Clear after deleting the waiting one: %v", err)
	}
}

// runUntilCompleted runs a worker with a handler that does nothing until
// the task id of queue has completed.
func runUntilCompleted(t *testing.T, b bundle, queue, id string) {
	t.Helper()
	srv := asynq.NewServer(b.rdb.ConnOpt(), asynq.Config{
		Concurrency:     1,
		Queues:          map[string]int{queue: 1},
		Logger:          testLogger{t},
		LogLevel:        asynq.WarnLevel,
		ShutdownTimeout: 5 * time.Second,
	})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	testenv.Eventually(t, 30*time.Second, "task "+id+" completed", func() (bool, string) {
		info, err := b.insp.GetTaskInfo(queue, id)
		return err == nil && info.State == asynq.TaskStateCompleted, fmt.Sprintf("%+v, %v", info, err)
	})
}

type testLogger struct{ t *testing.T }

func (l testLogger) Debug(args ...any) { l.t.Log(args...) }
func (l testLogger) Info(args ...any)  { l.t.Log(args...) }
func (l testLogger) Warn(args ...any)  { l.t.Log(args...) }
func (l testLogger) Error(args ...any) { l.t.Log(args...) }
func (l testLogger) Fatal(args ...any) { l.t.Fatal(args...) }

func TestNewFromAsynqDoesNotClose(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	ac := asynq.NewClient(rdb.ConnOpt())
	t.Cleanup(func() { _ = ac.Close() })
	c := enqueue.NewFromAsynq(ac)
	if _, err := c.Clear(context.Background(), tasks.Clear{GroupId: group}); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ac.Ping(); err != nil {
		t.Fatalf("Close closed the caller's asynq client: %v", err)
	}
}

func TestSplit(t *testing.T) {
	t.Parallel()
	parts, err := enqueue.Split(&tasks.Recall{GroupId: group, MsgSeqList: seqs(1, 21)})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []string
	for _, p := range parts {
		r, ok := p.(tasks.Recall)
		if !ok {
			t.Fatalf("part is a %T, want tasks.Recall", p)
		}
		sizes = append(sizes, fmt.Sprint(len(r.MsgSeqList)))
	}
	if got := strings.Join(sizes, ","); got != "10,10,1" {
		t.Errorf("part sizes %s, want 10,10,1", got)
	}
	parts, err = enqueue.Split(tasks.Clear{GroupId: group})
	if err != nil || len(parts) != 1 {
		t.Errorf("Split(Clear) = %v, %v", parts, err)
	}
}

func TestContextCanceled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ids, err := b.client.Recall(ctx, tasks.Recall{GroupId: group, MsgSeqList: seqs(1, 12)})
	if !errors.Is(err, context.Canceled) || len(ids) != 0 {
		t.Errorf("Recall with a canceled context = %v, %v; want context.Canceled", ids, err)
	}
}

// A Client made from a nil connection option returns an error naming it
// from every call, rather than panicking in New.
func TestNewWithANilConnectionFailsItsCalls(t *testing.T) {
	t.Parallel()
	for _, conn := range []asynq.RedisConnOpt{nil, (*asynq.RedisClientOpt)(nil)} {
		c := enqueue.New(conn)
		if _, err := c.Clear(context.Background(), tasks.Clear{GroupId: group}); err == nil || err.Error() != "enqueue: New: no Redis connection option (nil)" {
			t.Errorf("New(%#v).Clear: %v, want the nil connection named", conn, err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

// dueOf returns the due time a task's EnqueuedHeader records.
func dueOf(t *testing.T, info *asynq.TaskInfo) time.Time {
	t.Helper()
	due, ok := tasks.DueAt(asynq.NewTaskWithHeaders(info.Type, info.Payload, info.Headers))
	if !ok {
		t.Fatalf("task %s has no %s header: %v", info.ID, tasks.EnqueuedHeader, info.Headers)
	}
	return due
}
