package bulk_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/bulk"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

type bundle struct {
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
	return bundle{client: c, insp: insp}
}

// sizes returns how many tasks wait in each queue that has any.
func (b bundle) sizes(t *testing.T) map[string]int {
	return testenv.QueueSizes(t, b.insp)
}

const mixed = `# timq bulk test file
{"op":"clear","GroupId":"@TGS#A"}
{"op":"recall","GroupId":"@TGS#A","MsgSeqList":[{"MsgSeq":100},{"MsgSeq":101}]}

{"op":"recall","GroupId":"@TGS#A","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2},{"MsgSeq":0}]}
{"op":"modify","GroupId":"@TGS#A","MsgSeq":7,"CloudCustomData":"x"}
{"op":"clear","GroupId":"@TGS#B","MsgSeqs":5}
{"op":"drop","GroupId":"@TGS#B"}
   # an indented comment
{"op":"recall","GroupId":"@TGS#B","MsgSeqList":[` + "{\"MsgSeq\":1},{\"MsgSeq\":2},{\"MsgSeq\":3},{\"MsgSeq\":4},{\"MsgSeq\":5},{\"MsgSeq\":6},{\"MsgSeq\":7},{\"MsgSeq\":8},{\"MsgSeq\":9},{\"MsgSeq\":10},{\"MsgSeq\":11},{\"MsgSeq\":12}" + `]}
not json
`

func TestRunRejectsFileWithBadLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var errs bytes.Buffer
	s, err := bulk.Run(context.Background(), strings.NewReader(mixed), b.client, bulk.Options{Errors: &errs})
	if !errors.Is(err, bulk.ErrRejected) || err.Error() != "4 lines rejected" {
		t.Fatalf("Run = %v, want 4 lines rejected", err)
	}
	wantErrs := `line 5: MsgSeqList[2].MsgSeq: must be at least 1
line 7: MsgSeqs: is not a field of this operation
line 8: op: must be "clear", "recall" or "modify", not "drop"
line 11: JSON: invalid character 'o' in literal null (expecting 'u')
`
	if errs.String() != wantErrs {
		t.Errorf("errors written:\n%s\nwant:\n%s", errs.String(), wantErrs)
	}
	if len(s.Errors) != 4 || s.Errors[0] != (bulk.ErrorLine{Line: 5, Field: "MsgSeqList[2].MsgSeq", Reason: "must be at least 1"}) {
		t.Errorf("Summary.Errors = %+v", s.Errors)
	}
	if s.Lines != 11 || s.Skipped != 3 || s.Rejected != 4 || bulk.Total(s.Enqueued) != 0 {
		t.Errorf("summary %+v, want 11 lines, 3 skipped, 4 rejected, none enqueued", s)
	}
	if got := b.sizes(t); len(got) != 0 {
		t.Errorf("queues hold %v, want nothing enqueued", got)
	}
}

func TestRunSkipInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s, err := bulk.Run(context.Background(), strings.NewReader(mixed), b.client, bulk.Options{SkipInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{tasks.QueueClear: 1, tasks.QueueRecall: 3, tasks.QueueModify: 1}
	if got := b.sizes(t); !maps.Equal(got, want) {
		t.Errorf("queues hold %v, want %v", got, want)
	}
	if s.Rejected != 4 || s.Enqueued[tasks.TypeRecall] != 3 || s.Enqueued[tasks.TypeClear] != 1 || s.Enqueued[tasks.TypeModify] != 1 || s.Duplicates != 0 {
		t.Errorf("summary %+v", s)
	}
}

func TestRunDuplicatesAndQueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	in := strings.Repeat(`{"op":"clear","GroupId":"@TGS#A"}`+"\n", 3) +
		strings.Repeat(`{"op":"modify","GroupId":"@TGS#A","MsgSeq":1,"CloudCustomData":"x"}`+"\n", 2) +
		strings.Repeat(`{"op":"recall","GroupId":"@TGS#A","MsgSeqList":[{"MsgSeq":1}]}`+"\n", 2)
	s, err := bulk.Run(context.Background(), strings.NewReader(in), b.client, bulk.Options{Queue: "bulk-q"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Duplicates != 3 || bulk.Total(s.Enqueued) != 4 {
		t.Errorf("duplicates %d, enqueued %v; want 3 and 4 (recalls are not de-duplicated)", s.Duplicates, s.Enqueued)
	}
	if got, want := b.sizes(t), map[string]int{"bulk-q": 4}; !maps.Equal(got, want) {
		t.Errorf("queues hold %v, want %v", got, want)
	}
	// Again with de-duplication off: everything is enqueued.
	s, err = bulk.Run(context.Background(), strings.NewReader(in), b.client, bulk.Options{Queue: "bulk-q", NoDedup: true})
	if err != nil || s.Duplicates != 0 || bulk.Total(s.Enqueued) != 7 {
		t.Errorf("NoDedup: %+v, %v; want 7 enqueued", s, err)
	}
}

func TestRunDryRunAndEstimate(t *testing.T) {
	t.Parallel()
	var in strings.Builder
	for i := range 400 {
		fmt.Fprintf(&in, `{"op":"recall","GroupId":"g","MsgSeqList":[%s]}`+"\n", seqList(i*20+1, 20)) // 2 tasks each
	}
	for i := range 100 {
		fmt.Fprintf(&in, `{"op":"clear","GroupId":"g%d"}`+"\n", i)
	}
	q := &fakeEnqueuer{}
	s, err := bulk.Run(context.Background(), strings.NewReader(in.String()), q, bulk.Options{DryRun: true, Rate: 100})
	if err != nil {
		t.Fatal(err)
	}
	if q.calls() != 0 {
		t.Errorf("dry run enqueued %d tasks", q.calls())
	}
	if s.Tasks[tasks.TypeRecall] != 800 || s.Tasks[tasks.TypeClear] != 100 || !s.DryRun {
		t.Errorf("Tasks = %v", s.Tasks)
	}
	// 800 recall calls at 100/s; the 100 clears run alongside.
	if s.Estimate != 8*time.Second || s.EstimateSeconds != 8 {
		t.Errorf("Estimate = %v, want 8s", s.Estimate)
	}

	s, err = bulk.Run(context.Background(), strings.NewReader(in.String()), q, bulk.Options{})
	if err != nil || q.calls() != 900 || s.Estimate != 4*time.Second || s.Rate != bulk.DefaultRate {
		t.Errorf("Run: %d calls, estimate %v, %v; want 900 calls, 4s at 200/s", q.calls(), s.Estimate, err)
	}
}

func TestRunCapsErrors(t *testing.T) {
	t.Parallel()
	in := strings.Repeat(`{"op":"clear"}`+"\n", 150)
	var errs bytes.Buffer
	s, err := bulk.Run(context.Background(), strings.NewReader(in), &fakeEnqueuer{}, bulk.Options{Errors: &errs})
	if !errors.Is(err, bulk.ErrRejected) || s.Rejected != 150 || len(s.Errors) != bulk.DefaultMaxErrors {
		t.Fatalf("Run = %+v, %v", s, err)
	}
	lines := strings.Split(strings.TrimSuffix(errs.String(), "\n"), "\n")
	if len(lines) != 101 || lines[0] != "line 1: GroupId: is required" || lines[99] != "line 100: GroupId: is required" ||
		lines[100] != "... and 50 more rejected lines" {
		t.Errorf("errors written: %d lines, first %q, last %q", len(lines), lines[0], lines[len(lines)-1])
	}
}

func TestRunLineEnds(t *testing.T) {
	t.Parallel()
	long := `{"op":"clear","GroupId":"g","x":"` + strings.Repeat("a", bulk.MaxLineBytes) + `"}`
	in := "\xEF\xBB\xBF" + `{"op":"clear","GroupId":"a"}` + "\r\n" +
		long + "\n" +
		`{"op":"clear","GroupId":"b"}` + "\r\n" +
		`{"op":"clear","GroupId":""}` + "\n" +
		`{"op":"clear","GroupId":"c"}` // no final newline
	var errs bytes.Buffer
	q := &fakeEnqueuer{}
	s, err := bulk.Run(context.Background(), strings.NewReader(in), q, bulk.Options{Errors: &errs, SkipInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Lines != 5 || s.Rejected != 2 || q.calls() != 3 {
		t.Errorf("lines %d rejected %d enqueued %d; want 5, 2, 3", s.Lines, s.Rejected, q.calls())
	}
	want := fmt.Sprintf("line 2: JSON: the line is %d bytes, more than the %d allowed\nline 4: GroupId: is required\n", len(long), bulk.MaxLineBytes)
	if errs.String() != want {
		t.Errorf("errors:\n%s\nwant:\n%s", errs.String(), want)
	}
	groups := q.groups()
	slices.Sort(groups) // lines are enqueued in no particular order
	if got := strings.Join(groups, ","); got != "a,b,c" {
		t.Errorf("groups enqueued %s, want a,b,c", got)
	}
}

func TestRunStopsOnEnqueueError(t *testing.T) {
	t.Parallel()
	in := strings.Repeat(`{"op":"recall","GroupId":"g","MsgSeqList":[{"MsgSeq":1}]}`+"\n", 1000)
	boom := errors.New("redis is down")
	q := &fakeEnqueuer{failAt: 10, err: boom}
	s, err := bulk.Run(context.Background(), strings.NewReader(in), q, bulk.Options{})
	if !errors.Is(err, boom) || !strings.HasPrefix(err.Error(), "line ") {
		t.Fatalf("Run = %v, want the enqueue error with its line", err)
	}
	if n := bulk.Total(s.Enqueued); n < 9 || n >= 1000 {
		t.Errorf("enqueued %d, want it to stop soon after the failure", n)
	}
}

func TestRunCanceled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := bulk.Run(ctx, strings.NewReader(`{"op":"clear","GroupId":"g"}`), &fakeEnqueuer{}, bulk.Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
}

// changing returns a on the first read and b after a Seek.
type changing struct {
	io.Reader
	b string
}

func (c *changing) Seek(int64, int) (int64, error) {
	c.Reader = strings.NewReader(c.b)
	return 0, nil
}

func TestRunInputChanged(t *testing.T) {
	t.Parallel()
	in := &changing{Reader: strings.NewReader(`{"op":"clear","GroupId":"g"}` + "\n"), b: "{}\n{}\n"}
	_, err := bulk.Run(context.Background(), in, &fakeEnqueuer{}, bulk.Options{})
	if err == nil || !strings.Contains(err.Error(), "changed between the passes") {
		t.Errorf("Run = %v, want an input-changed error", err)
	}
}

func TestRunProgress(t *testing.T) {
	t.Parallel()
	var progress syncBuffer
	in := strings.Repeat(`{"op":"clear","GroupId":"g"}`+"\n", 5)
	if _, err := bulk.Run(context.Background(), strings.NewReader(in), &fakeEnqueuer{}, bulk.Options{Progress: &progress}); err != nil {
		t.Fatal(err)
	}
	out := progress.String()
	if !strings.Contains(out, "\rvalidating: 5 lines") || !strings.Contains(out, "\renqueued 5/5 tasks") || !strings.HasSuffix(out, "\n") {
		t.Errorf("progress = %q", out)
	}
}

// TestRunLargeFile enqueues 20,000 lines (26,000 tasks) into Redis.
func TestRunLargeFile(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("enqueues 26,000 tasks")
	}
	b := setup(t)
	var in strings.Builder
	for i := range 20000 {
		switch i % 10 {
		case 0, 1, 2: // 6000 recalls of 12 messages: 12000 tasks
			fmt.Fprintf(&in, `{"op":"recall","GroupId":"@TGS#%d","MsgSeqList":[%s]}`+"\n", i, seqList(1, 12))
		case 3:
			fmt.Fprintf(&in, `{"op":"modify","GroupId":"@TGS#%d","MsgSeq":%d,"CloudCustomData":"c"}`+"\n", i, i+1)
		default:
			fmt.Fprintf(&in, `{"op":"clear","GroupId":"@TGS#%d","MsgSeq":%d}`+"\n", i, i+1)
		}
	}
	s, err := bulk.Run(context.Background(), strings.NewReader(in.String()), b.client, bulk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{tasks.QueueRecall: 12000, tasks.QueueModify: 2000, tasks.QueueClear: 12000}
	if got := b.sizes(t); !maps.Equal(got, want) {
		t.Errorf("queues hold %v, want %v", got, want)
	}
	if s.Lines != 20000 || bulk.Total(s.Enqueued) != 26000 || s.Duplicates != 0 || s.Rejected != 0 {
		t.Errorf("summary %+v", s)
	}
}

// fakeEnqueuer records what it is asked to enqueue, failing from the
// failAt-th call (counting from 1) when err is set.
type fakeEnqueuer struct {
	mu     sync.Mutex
	got    []tasks.Payload
	failAt int
	err    error
	n      int
}

func (f *fakeEnqueuer) Enqueue(ctx context.Context, p tasks.Payload, _ ...enqueue.Option) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.err != nil && f.n >= f.failAt {
		return nil, f.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f.got = append(f.got, p)
	return []string{fmt.Sprint(f.n)}, nil
}

func (f *fakeEnqueuer) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func (f *fakeEnqueuer) groups() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, p := range f.got {
		out = append(out, p.(tasks.Clear).GroupId)
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// changedText mixes good lines with lines encoding/json would quietly
// change: invalid UTF-8, a lone surrogate, and repeated keys.
const changedText = "{\"op\":\"clear\",\"GroupId\":\"@TGS#good1\"}\n" +
	"{\"op\":\"clear\",\"GroupId\":\"@TGS#inv\xffalid\"}\n" +
	"{\"op\":\"clear\",\"GroupId\":\"@TGS#\xc0\xaf\"}\n" +
	"{\"op\":\"clear\",\"GroupId\":\"@TGS#中文群\"}\n" +
	`{"op":"clear","OP":"recall","GroupId":"@TGS#Op2","MsgSeqList":[{"MsgSeq":1}]}` + "\n" +
	`{"op":"clear","GroupId":"a","groupid":"b"}` + "\n" +
	`{"op":"recall","GroupId":"g","MsgSeqList":[{"MsgSeq":1,"MsgSeq":2}]}` + "\n" +
	`{"op":"clear","GroupId":"@TGS#\ud800"}` + "\n" +
	"# a comment that is not UTF-8: caf\xe9\n" +
	`{"op":"clear","GroupId":"@TGS#good2"}` + "\n"

func TestRunChangedText(t *testing.T) {
	t.Parallel()
	wantErrs := `line 2: GroupId: is not valid UTF-8
line 3: GroupId: is not valid UTF-8
line 5: JSON: duplicate key "OP" (also "op")
line 6: JSON: duplicate key "groupid" (also "GroupId")
line 7: MsgSeqList[0]: duplicate key "MsgSeq" (also "MsgSeq")
line 8: GroupId: has \ud800: half a UTF-16 surrogate pair without the other half, which is not a character
`
	// Without SkipInvalid nothing is enqueued.
	var errs bytes.Buffer
	q := &fakeEnqueuer{}
	s, err := bulk.Run(context.Background(), strings.NewReader(changedText), q, bulk.Options{Errors: &errs})
	if !errors.Is(err, bulk.ErrRejected) || err.Error() != "6 lines rejected" {
		t.Fatalf("Run = %v, want 6 lines rejected", err)
	}
	if errs.String() != wantErrs {
		t.Errorf("errors written:\n%s\nwant:\n%s", errs.String(), wantErrs)
	}
	if s.Lines != 10 || s.Skipped != 1 || s.Rejected != 6 || s.Tasks[tasks.TypeClear] != 3 || q.calls() != 0 {
		t.Errorf("summary %+v with %d calls; want 10 lines, 1 skipped, 6 rejected, 3 clears, none enqueued", s, q.calls())
	}
	if len(s.Errors) != 6 || s.Errors[2] != (bulk.ErrorLine{Line: 5, Field: "JSON", Reason: `duplicate key "OP" (also "op")`}) {
		t.Errorf("Summary.Errors = %+v", s.Errors)
	}

	// With SkipInvalid the good lines are enqueued, their text unchanged.
	errs.Reset()
	s, err = bulk.Run(context.Background(), strings.NewReader(changedText), q, bulk.Options{Errors: &errs, SkipInvalid: true})
	if err != nil {
		t.Fatal(err)
	}
	if errs.String() != wantErrs {
		t.Errorf("errors written:\n%s\nwant:\n%s", errs.String(), wantErrs)
	}
	if s.Rejected != 6 || !maps.Equal(s.Enqueued, map[string]int64{tasks.TypeClear: 3}) {
		t.Errorf("summary %+v; want 6 rejected, 3 clears enqueued", s)
	}
	groups := q.groups()
	slices.Sort(groups)
	if got, want := strings.Join(groups, ","), "@TGS#good1,@TGS#good2,@TGS#中文群"; got != want {
		t.Errorf("groups enqueued %s, want %s", got, want)
	}
}

// A bulk run across a lost Redis answer (a stall past the read timeout,
// then a retry of a write that went through) queues each line once and
// counts it once, as enqueued by this run, not as a duplicate.
func TestRunCountsExactlyAcrossALostReply(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	proxy := testenv.NewLostReplyProxy(t, rdb.Addr)
	c := enqueue.New(asynq.RedisClientOpt{Addr: proxy.Addr, DB: rdb.DB})
	t.Cleanup(func() { _ = c.Close() })
	insp := asynq.NewInspector(rdb.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	b := bundle{client: c, insp: insp}

	const n = 200
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, `{"op":"clear","GroupId":"@TGS#stall-%d"}`+"\n", i)
	}
	// Load the script first, so that every enqueue of the run is one EVALSHA.
	if _, err := c.Enqueue(t.Context(), tasks.Clear{GroupId: "warm-up"}); err != nil {
		t.Fatal(err)
	}
	proxy.LoseReplyTo("EVALSHA")
	s, err := bulk.Run(t.Context(), strings.NewReader(in.String()), b.client, bulk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if proxy.Lost() != 1 {
		t.Fatalf("proxy lost %d replies, want 1", proxy.Lost())
	}
	if s.Enqueued[tasks.TypeClear] != n || s.Duplicates != 0 {
		t.Fatalf("summary: enqueued %d, duplicates %d; want %d and 0", s.Enqueued[tasks.TypeClear], s.Duplicates, n)
	}
	if got := b.sizes(t)[tasks.QueueClear]; got != n+1 {
		t.Fatalf("%d clears queued, want %d (the run's and the warm-up)", got, n+1)
	}
}
