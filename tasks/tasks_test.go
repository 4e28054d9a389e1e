package tasks_test

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

func TestNewTaskRefusesInvalid(t *testing.T) {
	t.Parallel()
	task, err := tasks.NewTask(tasks.Recall{GroupId: group, MsgSeqList: seqs(1, 0)})
	var ve *tasks.ValidationError
	if task != nil || !errors.As(err, &ve) || ve.Field != "MsgSeqList[1].MsgSeq" {
		t.Fatalf("NewTask = %v, %v; want nil and a MsgSeqList[1].MsgSeq error", task, err)
	}
}

// TestNewTaskOptions enqueues tasks into a Redis of the test's own and reads
// back the options asynq stored: the defaults, and a caller's overrides.
func TestNewTaskOptions(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	client := asynq.NewClient(rdb.ConnOpt())
	t.Cleanup(func() { _ = client.Close() })
	insp := asynq.NewInspector(rdb.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	ctx := context.Background()

	for _, tc := range []struct {
		name      string
		p         tasks.Payload
		opts      []asynq.Option
		queue     string
		maxRetry  int
		timeout   time.Duration
		retention time.Duration
	}{
		{"clear defaults", tasks.Clear{GroupId: group}, nil, tasks.QueueClear, tasks.DefaultMaxRetry, tasks.DefaultTimeout, tasks.DefaultRetention},
		{"recall defaults", tasks.Recall{GroupId: group, MsgSeqList: seqs(1)}, nil, tasks.QueueRecall, tasks.DefaultMaxRetry, tasks.DefaultTimeout, tasks.DefaultRetention},
		{"modify defaults", tasks.Modify{GroupId: group, MsgSeq: 1, CloudCustomData: str("x")}, nil, tasks.QueueModify, tasks.DefaultMaxRetry, tasks.DefaultTimeout, tasks.DefaultRetention},
		{"overrides", tasks.Clear{GroupId: "other"}, []asynq.Option{
			asynq.Queue("elsewhere"), asynq.MaxRetry(2), asynq.Timeout(time.Minute), asynq.Retention(time.Hour),
		}, "elsewhere", 2, time.Minute, time.Hour},
	} {
		task, err := tasks.NewTask(tc.p, tc.opts...)
		if err != nil {
			t.Fatalf("%s: NewTask: %v", tc.name, err)
		}
		if task.Type() != tc.p.TaskType() {
			t.Errorf("%s: Type() = %q, want %q", tc.name, task.Type(), tc.p.TaskType())
		}
		info, err := client.EnqueueContext(ctx, task)
		if err != nil {
			t.Fatalf("%s: enqueue: %v", tc.name, err)
		}
		got, err := insp.GetTaskInfo(tc.queue, info.ID)
		if err != nil {
			t.Fatalf("%s: task not in queue %s: %v", tc.name, tc.queue, err)
		}
		if got.MaxRetry != tc.maxRetry || got.Timeout != tc.timeout || got.Retention != tc.retention || got.State != asynq.TaskStatePending {
			t.Errorf("%s: stored MaxRetry=%d Timeout=%v Retention=%v State=%v; want %d %v %v pending",
				tc.name, got.MaxRetry, got.Timeout, got.Retention, got.State, tc.maxRetry, tc.timeout, tc.retention)
		}
		if _, err := tasks.Parse(got.Type, got.Payload); err != nil {
			t.Errorf("%s: stored payload does not parse: %v", tc.name, err)
		}
	}
}

func TestSplitRecall(t *testing.T) {
	t.Parallel()
	base := tasks.Recall{GroupId: group, TopicId: "topic", Reason: "spam"}
	for _, tc := range []struct {
		n     int
		sizes []int
	}{
		{0, nil},
		{1, []int{1}},
		{10, []int{10}},
		{11, []int{10, 1}},
		{25, []int{10, 10, 5}},
		{30, []int{10, 10, 10}},
	} {
		r := base
		r.MsgSeqList = seqRange(1000, tc.n)
		parts := tasks.SplitRecall(r)
		var sizes []int
		var all []uint64
		for _, p := range parts {
			sizes = append(sizes, len(p.MsgSeqList))
			all = append(all, p.Seqs()...)
			if p.GroupId != base.GroupId || p.TopicId != base.TopicId || p.Reason != base.Reason {
				t.Errorf("n=%d: part %+v lost GroupId, TopicId or Reason", tc.n, p)
			}
			if err := p.Validate(); err != nil {
				t.Errorf("n=%d: part is invalid: %v", tc.n, err)
			}
		}
		if !reflect.DeepEqual(sizes, tc.sizes) {
			t.Errorf("n=%d: part sizes %v, want %v", tc.n, sizes, tc.sizes)
		}
		if want := r.Seqs(); tc.n > 0 && !reflect.DeepEqual(all, want) {
			t.Errorf("n=%d: parts hold %v, want %v in order", tc.n, all, want)
		}
	}
}

func TestSplitRecallCopies(t *testing.T) {
	t.Parallel()
	r := tasks.Recall{GroupId: group, MsgSeqList: seqRange(1, 12)}
	parts := tasks.SplitRecall(r)
	parts[0].MsgSeqList[0].MsgSeq = 99
	parts[1].MsgSeqList = append(parts[1].MsgSeqList, seqs(50)...)
	if r.MsgSeqList[0].MsgSeq != 1 || len(r.MsgSeqList) != 12 {
		t.Fatalf("changing a part changed the original: %v", r.Seqs())
	}
}

// NewTask refuses a nil payload, or a nil pointer to one, with an error
// rather than a panic.
func TestNewTaskRefusesANilPayload(t *testing.T) {
	for _, p := range []tasks.Payload{nil, (*tasks.Clear)(nil), (*tasks.Recall)(nil), (*tasks.Modify)(nil)} {
		task, err := tasks.NewTask(p)
		if task != nil || err == nil || err.Error() != "tasks: no payload (nil)" {
			t.Errorf("NewTask(%#v) = %v, %v; want the nil payload named", p, task, err)
		}
	}
}

func TestCheckName(t *testing.T) {
	for name, want := range map[string]string{
		"timq-clear":             "",
		"队列-1":                   "",
		strings.Repeat("q", 256): "",
		"":                       "must not be blank",
		" \t":                    "must not be blank",
		" timq-clear":            `must not start or end with white space, got " timq-clear"`,
		"timq-clear\n":           "must not start or end with white space",
		"q\xff":                  "is not valid UTF-8",
		"q\x00q":                 `must not contain control characters, got "q\x00q"`,
		"q\u0085q":               "must not contain control characters",
		strings.Repeat("q", 257): "must be at most 256 bytes, got 257",
	} {
		err := tasks.CheckName(name)
		switch {
		case want == "" && err != nil:
			t.Errorf("CheckName(%q) = %v, want nil", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("CheckName(%q) = %v, want %q", name, err, want)
		}
	}
}

func TestDueAt(t *testing.T) {
	at := time.UnixMilli(1767225600123)
	for _, c := range []struct {
		headers map[string]string
		want    time.Time
		ok      bool
	}{
		{map[string]string{tasks.EnqueuedHeader: "1767225600123"}, at, true},
		{nil, time.Time{}, false},
		{map[string]string{tasks.EnqueuedHeader: "soon"}, time.Time{}, false},
		{map[string]string{tasks.EnqueuedHeader: "-5"}, time.Time{}, false},
	} {
		got, ok := tasks.DueAt(asynq.NewTaskWithHeaders(tasks.TypeClear, nil, c.headers))
		if ok != c.ok || !got.Equal(c.want) {
			t.Errorf("DueAt with headers %v = %v, %v; want %v, %v", c.headers, got, ok, c.want, c.ok)
		}
	}
}
