package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
	"github.com/timq/timq/worker"
)

// bundle is what a worker test works with.
type bundle struct {
	t      *testing.T
	redis  *testenv.RedisDB
	emu    *testenv.Emulator
	client *asynq.Client
	insp   *asynq.Inspector
	dlq    *dlq.Store
	logs   *testenv.LogBuffer
	cfg    worker.Config
}

// setup starts an emulator and a Redis database; the worker is started by
// startWorker so tests can change the config first.
func setup(t *testing.T, simCfg sim.Config) *bundle {
	t.Helper()
	log, logs := testenv.Logger(t)
	t.Cleanup(logs.Stop)
	r := testenv.Redis(t)
	emu := testenv.StartEmulator(t, simCfg)
	b := &bundle{t: t, redis: r, emu: emu, logs: logs}
	b.client = asynq.NewClient(r.ConnOpt())
	t.Cleanup(func() { b.client.Close() })
	b.insp = asynq.NewInspector(r.ConnOpt())
	t.Cleanup(func() { b.insp.Close() })
	b.dlq = dlq.New(r.Client(t))
	b.cfg = testConfig(r.ConnOpt(), emu, log)
	return b
}

// testConfig is a worker configuration for tests: the emulator's
// credentials, short retry and poll intervals, and a 5 s shutdown.
func testConfig(conn asynq.RedisConnOpt, emu *testenv.Emulator, log *slog.Logger) worker.Config {
	return worker.Config{
		Redis:           conn,
		API:             worker.API{SDKAppID: emu.SDKAppID, SecretKey: emu.SecretKey, BaseURL: emu.URL, Timeout: 2 * time.Second},
		Concurrency:     20,
		RetryBase:       20 * time.Millisecond,
		RetryCap:        200 * time.Millisecond,
		ThrottleDelay:   50 * time.Millisecond,
		PollInterval:    100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
		Logger:          log,
	}
}

// startWorker starts a worker for cfg, shut down when the test ends.
func startWorker(t *testing.T, cfg worker.Config) *worker.Worker {
	t.Helper()
	w, err := worker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	return w
}

func (b *bundle) startWorker() *worker.Worker {
	b.t.Helper()
	return startWorker(b.t, b.cfg)
}

func (b *bundle) group(id string, typ sim.GroupType, n int) {
	b.t.Helper()
	if err := b.emu.CreateGroup(id, typ); err != nil {
		b.t.Fatal(err)
	}
	if n > 0 {
		if _, _, err := b.emu.AddMessages(id, "", n); err != nil {
			b.t.Fatal(err)
		}
	}
}

func (b *bundle) enqueue(p tasks.Payload, opts ...asynq.Option) string {
	b.t.Helper()
	task, err := tasks.NewTask(p, opts...)
	if err != nil {
		b.t.Fatal(err)
	}
	info, err := b.client.Enqueue(task)
	if err != nil {
		b.t.Fatal(err)
	}
	return info.ID
}

// counts sums asynq's queue sizes over timq's queues.
type counts struct{ pending, active, scheduled, retry, archived, completed int }

func (b *bundle) counts() counts {
	var c counts
	for _, q := range tasks.Queues() {
		info, err := b.insp.GetQueueInfo(q)
		if err != nil {
			continue // queue not created yet
		}
		c.pending += info.Pending
		c.active += info.Active
		c.scheduled += info.Scheduled
		c.retry += info.Retry
		c.archived += info.Archived
		c.completed += info.Completed
	}
	return c
}

// waitSettled waits until every task is completed or archived and returns
// the final counts.
func (b *bundle) waitSettled(total int, within time.Duration) counts {
	b.t.Helper()
	var c counts
	testenv.Eventually(b.t, within, "every task settled", func() (bool, string) {
		c = b.counts()
		return c.completed+c.archived >= total && c.pending+c.active+c.scheduled+c.retry == 0,
			fmt.Sprintf("%+v (want %d completed+archived)", c, total)
	})
	return c
}

func (b *bundle) msg(group string, seq uint64) sim.MessageState {
	b.t.Helper()
	m, ok := b.emu.Message(group, "", seq)
	if !ok {
		b.t.Fatalf("no message %s/%d in the emulator", group, seq)
	}
	return m
}

func (b *bundle) deadLetters() []dlq.Entry {
	b.t.Helper()
	es, err := b.dlq.List(context.Background(), dlq.ListOptions{Limit: 100000})
	if err != nil {
		b.t.Fatal(err)
	}
	return es
}

func seqList(seqs ...uint64) []tasks.MsgSeqItem {
	out := make([]tasks.MsgSeqItem, len(seqs))
	for i, s := range seqs {
		out[i] = tasks.MsgSeqItem{MsgSeq: s}
	}
	return out
}

func u64(v uint64) *uint64 { return &v }

func TestEveryOperationLandsInTheEmulator(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.group("@TGS#2J4SZEAEL", sim.GroupPublic, 30)
	b.group("ops-custom-1", sim.GroupPrivate, 5)
	b.startWorker()

	b.enqueue(tasks.Clear{GroupId: "@TGS#2J4SZEAEL", MsgSeq: u64(5)})
	b.enqueue(tasks.Clear{GroupId: "ops-custom-1"})
	recallID := b.enqueue(tasks.Recall{GroupId: "@TGS#2J4SZEAEL", MsgSeqList: seqList(10, 11, 12)})
	cd := "custom-data"
	b.enqueue(tasks.Modify{GroupId: "@TGS#2J4SZEAEL", MsgSeq: 20, MsgBody: tasks.TextBody("edited"), CloudCustomData: &cd})

	c := b.waitSettled(4, 20*time.Second)
	if c.completed != 4 || c.archived != 0 {
		t.Fatalf("counts = %+v, want 4 completed, 0 archived", c)
	}
	for seq := uint64(1); seq <= 30; seq++ {
		m := b.msg("@TGS#2J4SZEAEL", seq)
		if m.Cleared != (seq <= 5) {
			t.Errorf("seq %d cleared = %v", seq, m.Cleared)
		}
		if m.Recalled != (seq >= 10 && seq <= 12) {
			t.Errorf("seq %d recalled = %v", seq, m.Recalled)
		}
		if (m.Modified == 1) != (seq == 20) {
			t.Errorf("seq %d modified %d times", seq, m.Modified)
		}
	}
	m := b.msg("@TGS#2J4SZEAEL", 20)
	if m.CloudCustomData != cd || len(m.MsgBody) != 1 || !strings.Contains(string(m.MsgBody[0].MsgContent), "edited") {
		t.Errorf("modified message = %+v", m)
	}
	for seq := uint64(1); seq <= 5; seq++ {
		if !b.msg("ops-custom-1", seq).Cleared {
			t.Errorf("ops-custom-1 seq %d not cleared", seq)
		}
	}
	if n := len(b.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters, want 0", n)
	}
	if info, err := b.insp.GetTaskInfo(tasks.QueueRecall, recallID); err != nil || info.State != asynq.TaskStateCompleted {
		t.Fatalf("recall task: %+v, %v; want completed", info, err)
	}
}

// recallResultOf reads a recall task's per-message result.
func (b *bundle) recallResultOf(queue, id string) (statuses map[uint64]string, raw []byte) {
	b.t.Helper()
	info, err := b.insp.GetTaskInfo(queue, id)
	if err != nil {
		b.t.Fatal(err)
	}
	if len(info.Result) == 0 {
		return nil, nil
	}
	var res struct {
		Messages []struct {
			MsgSeq uint64
			Status string `json:"status"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(info.Result, &res); err != nil {
		b.t.Fatalf("recall result %q: %v", info.Result, err)
	}
	statuses = map[uint64]string{}
	for _, m := range res.Messages {
		statuses[m.MsgSeq] = m.Status
	}
	return statuses, info.Result
}

// An applied task has no result unless AppliedResults asks for one: its
// completed state says it all, and the write costs a Redis command per
// task. A recall not applied in full always has its per-message result.
func TestAppliedResultsOnlyWhenAskedFor(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("AppliedResults=", on), func(t *testing.T) {
			t.Parallel()
			b := setup(t, sim.Config{})
			b.group("@TGS#results", sim.GroupPublic, 6)
			b.cfg.AppliedResults = on
			b.startWorker()
			clearID := b.enqueue(tasks.Clear{GroupId: "@TGS#results", MsgSeq: u64(1)})
			modifyID := b.enqueue(tasks.Modify{GroupId: "@TGS#results", MsgSeq: 6, MsgBody: tasks.TextBody("edited")})
			recallID := b.enqueue(tasks.Recall{GroupId: "@TGS#results", MsgSeqList: seqList(2, 3)})
			// Seq 99 does not exist: that message is dead-lettered, so
			// the task is archived and its result is always written.
			partialID := b.enqueue(tasks.Recall{GroupId: "@TGS#results", MsgSeqList: seqList(4, 99)})
			if c := b.waitSettled(4, 20*time.Second); c.completed != 3 || c.archived != 1 {
				t.Fatalf("counts = %+v, want 3 completed, 1 archived", c)
			}
			if got, raw := b.recallResultOf(tasks.QueueRecall, partialID); got[4] != "recalled" || got[99] != "dead_lettered" || len(got) != 2 {
				t.Errorf("partly failed recall's result = %s, want seq 4 recalled and 99 dead_lettered", raw)
			}
			got, raw := b.recallResultOf(tasks.QueueRecall, recallID)
			if on && (got[2] != "recalled" || got[3] != "recalled" || len(got) != 2) {
				t.Errorf("recall result = %s, want seqs 2 and 3 recalled", raw)
			}
			if !on && raw != nil {
				t.Errorf("recall result = %s, want none", raw)
			}
			for _, tc := range []struct{ queue, id, endpoint string }{
				{tasks.QueueClear, clearID, "clear_group_msg"},
				{tasks.QueueModify, modifyID, "modify_group_msg"},
			} {
				info, err := b.insp.GetTaskInfo(tc.queue, tc.id)
				if err != nil {
					t.Fatal(err)
				}
				if !on {
					if len(info.Result) != 0 {
						t.Errorf("%s result = %q, want none", tc.endpoint, info.Result)
					}
					continue
				}
				var res struct{ Status, Endpoint string }
				if err := json.Unmarshal(info.Result, &res); err != nil || res.Status != "applied" || res.Endpoint != tc.endpoint {
					t.Errorf("%s result = %q (%v), want applied by %s", tc.endpoint, info.Result, err, tc.endpoint)
				}
			}
		})
	}
}

func TestTransientFaultsAreRetriedUntilTheySucceed(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{Seed: 7, Faults: map[chatapi.Endpoint]sim.Faults{
		chatapi.EndpointClear:  {Codes: map[int]float64{10002: 0.3}, HTTP502: 0.2},
		chatapi.EndpointRecall: {Codes: map[int]float64{10002: 0.5}},
		chatapi.EndpointModify: {Codes: map[int]float64{20004: 0.15, 20005: 0.15, 91000: 0.2}},
	}})
	const n = 20
	for i := range n {
		b.group(fmt.Sprintf("transient-%d", i), sim.GroupPublic, 3)
	}
	// 26 attempts each (the worker caps a task's retries at its own
	// MaxRetry): at a fault rate of 0.5 none is left to chance.
	b.cfg.MaxRetry = 25
	b.startWorker()
	for i := range n {
		g := fmt.Sprintf("transient-%d", i)
		b.enqueue(tasks.Clear{GroupId: g, MsgSeq: u64(1)}, asynq.MaxRetry(25))
		b.enqueue(tasks.Recall{GroupId: g, MsgSeqList: seqList(2)}, asynq.MaxRetry(25))
		b.enqueue(tasks.Modify{GroupId: g, MsgSeq: 3, MsgBody: tasks.TextBody("x")}, asynq.MaxRetry(25))
	}
	c := b.waitSettled(3*n, 60*time.Second)
	if c.completed != 3*n || c.archived != 0 {
		t.Fatalf("counts = %+v, want %d completed and none archived", c, 3*n)
	}
	for i := range n {
		g := fmt.Sprintf("transient-%d", i)
		if !b.msg(g, 1).Cleared || !b.msg(g, 2).Recalled || b.msg(g, 3).Modified != 1 {
			t.Errorf("group %s: %+v %+v %+v", g, b.msg(g, 1), b.msg(g, 2), b.msg(g, 3))
		}
	}
	st := b.emu.Stats()
	faulted := st.Endpoints[chatapi.EndpointClear].Codes[10002] + st.Endpoints[chatapi.EndpointRecall].Codes[10002] +
		st.Endpoints[chatapi.EndpointModify].Codes[91000]
	if faulted == 0 {
		t.Fatal("the emulator injected no faults; the test proves nothing")
	}
	if n := len(b.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters, want 0", n)
	}
}

func TestPermanentFailuresAreDeadLetteredWithTheirCodes(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.group("perm-ok", sim.GroupPublic, 3)
	b.group("perm-av", sim.GroupAVChatRoom, 3)
	b.startWorker()

	missing := b.enqueue(tasks.Clear{GroupId: "perm-missing"})
	malformed := b.enqueue(tasks.Clear{GroupId: "@TGS#!!bad id!!"})
	avModify := b.enqueue(tasks.Modify{GroupId: "perm-av", MsgSeq: 1, MsgBody: tasks.TextBody("x")})
	noMsg := b.enqueue(tasks.Modify{GroupId: "perm-ok", MsgSeq: 99, MsgBody: tasks.TextBody("x")})
	partial := b.enqueue(tasks.Recall{GroupId: "perm-ok", MsgSeqList: seqList(1, 77, 2)})

	c := b.waitSettled(5, 20*time.Second)
	if c.archived != 5 {
		t.Fatalf("counts = %+v, want all 5 archived", c)
	}
	want := map[string]int{
		missing:                        10010,
		malformed:                      10015,
		avModify:                       0, // checked below: the emulator's code for "not supported"
		noMsg:                          10030,
		dlq.RecallEntryID(partial, 77): 10030,
	}
	got := map[string]dlq.Entry{}
	for _, e := range b.deadLetters() {
		got[e.ID] = e
	}
	if len(got) != len(want) {
		t.Fatalf("dead letters = %v, want exactly the ids %v", got, want)
	}
	for id, code := range want {
		e, ok := got[id]
		if !ok {
			t.Errorf("no dead letter %s", id)
			continue
		}
		if code != 0 && e.Code != code {
			t.Errorf("dead letter %s: code %d, want %d (info %q)", id, e.Code, code, e.Info)
		}
		if e.Reason != dlq.ReasonPermanent || e.Attempts != 1 {
			t.Errorf("dead letter %s: reason %q attempts %d, want permanent after 1 attempt", id, e.Reason, e.Attempts)
		}
	}
	if e := got[avModify]; e.Code == 0 {
		t.Errorf("modify on AVChatRoom dead-lettered without a code: %+v", e)
	}
	// The recall's other messages were recalled; only message 77 is a dead letter,
	// with a single-message payload to requeue.
	if !b.msg("perm-ok", 1).Recalled || !b.msg("perm-ok", 2).Recalled {
		t.Error("the recall's good messages were not recalled")
	}
	var one tasks.Recall
	if err := json.Unmarshal(got[dlq.RecallEntryID(partial, 77)].Payload, &one); err != nil || len(one.MsgSeqList) != 1 || one.MsgSeqList[0].MsgSeq != 77 {
		t.Errorf("recall dead letter payload = %s", got[dlq.RecallEntryID(partial, 77)].Payload)
	}
	// asynq's archive holds each task with its error, code included.
	ti, err := b.insp.GetTaskInfo(tasks.QueueClear, missing)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ti.LastErr, "10010") {
		t.Errorf("archived task's LastErr = %q, want the code 10010", ti.LastErr)
	}
}

func TestRateLimitAnswersDoNotUseAttempts(t *testing.T) {
	t.Parallel()
	// The emulator allows 20 calls a second; the worker paces at 197/s, so
	// it is answered 60007 often and must not dead-letter anything although
	// each task may be retried only once.
	b := setup(t, sim.Config{Rate: 20})
	b.group("throttled", sim.GroupPublic, 60)
	b.startWorker()
	const n = 60
	for i := 1; i <= n; i++ {
		b.enqueue(tasks.Modify{GroupId: "throttled", MsgSeq: uint64(i), MsgBody: tasks.TextBody("x")}, asynq.MaxRetry(1))
	}
	c := b.waitSettled(n, 60*time.Second)
	if c.completed != n || c.archived != 0 {
		t.Fatalf("counts = %+v, want %d completed, none archived", c, n)
	}
	if got := b.emu.Stats().Endpoints[chatapi.EndpointModify].Codes[60007]; got == 0 {
		t.Fatal("the emulator never answered 60007; the test proves nothing")
	}
	for i := 1; i <= n; i++ {
		if m := b.msg("throttled", uint64(i)); m.Modified != 1 {
			t.Fatalf("seq %d modified %d times", i, m.Modified)
		}
	}
	if n := len(b.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters, want 0", n)
	}
}

func TestBadPayloadIsDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.startWorker()
	bad := []struct {
		typ, payload, field string
	}{
		{tasks.TypeModify, `{"GroupId":`, "payload"},
		{tasks.TypeRecall, `{"GroupId":"g","MsgSeqList":[]}`, "MsgSeqList"},
		{tasks.TypeClear, `{"GroupId":"g","Bogus":1}`, "payload"},
		{tasks.TypeClear, "\xff\xfe not json", "payload"},
		{tasks.TypeModify, `{"GroupId":"g","MsgSeq":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{}}]}`, "MsgBody[0].MsgContent.Text"},
	}
	ids := map[string]string{}
	for _, c := range bad {
		info, err := b.client.Enqueue(asynq.NewTask(c.typ, []byte(c.payload), asynq.Queue(tasks.QueueFor(c.typ)), asynq.MaxRetry(5)))
		if err != nil {
			t.Fatal(err)
		}
		ids[info.ID] = c.field
	}
	cnt := b.waitSettled(len(bad), 20*time.Second)
	if cnt.archived != len(bad) {
		t.Fatalf("counts = %+v, want %d archived", cnt, len(bad))
	}
	es := b.deadLetters()
	if len(es) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(es), len(bad))
	}
	for _, e := range es {
		field, ok := ids[e.ID]
		if !ok {
			t.Fatalf("unexpected dead letter %+v", e)
		}
		if e.Reason != dlq.ReasonInvalidPayload || e.Attempts != 1 || !strings.Contains(e.Info, field) {
			t.Errorf("dead letter %s = reason %q attempts %d info %q, want invalid_payload after 1 attempt naming %s", e.ID, e.Reason, e.Attempts, e.Info, field)
		}
	}
	if calls := b.emu.Stats().Endpoints; calls[chatapi.EndpointClear].Calls+calls[chatapi.EndpointModify].Calls+calls[chatapi.EndpointRecall].Calls != 0 {
		t.Fatal("a bad payload reached the API")
	}
}

func TestRetriesExhaustedAreDeadLettered(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{Faults: map[chatapi.Endpoint]sim.Faults{
		chatapi.EndpointClear: {Codes: map[int]float64{10002: 1}},
	}})
	b.group("always-failing", sim.GroupPublic, 1)
	b.startWorker()
	id := b.enqueue(tasks.Clear{GroupId: "always-failing"}, asynq.MaxRetry(2))
	c := b.waitSettled(1, 20*time.Second)
	if c.archived != 1 {
		t.Fatalf("counts = %+v", c)
	}
	es := b.deadLetters()
	if len(es) != 1 || es[0].ID != id || es[0].Code != 10002 || es[0].Reason != dlq.ReasonRetriesExhausted || es[0].Attempts != 3 {
		t.Fatalf("dead letters = %+v, want one with code 10002 after 3 attempts", es)
	}
	if calls := b.emu.Stats().Endpoints[chatapi.EndpointClear].Calls; calls != 3 {
		t.Fatalf("%d calls, want exactly 3 (1 + 2 retries)", calls)
	}
	if b.msg("always-failing", 1).Cleared {
		t.Fatal("a dead-lettered clear was applied")
	}
}

func TestRequeueAppliesADeadLetter(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.startWorker()
	id := b.enqueue(tasks.Recall{GroupId: "requeue-later", MsgSeqList: seqList(1, 2)})
	b.waitSettled(1, 20*time.Second)
	if es := b.deadLetters(); len(es) != 2 {
		t.Fatalf("dead letters = %+v, want 2 (one per message of a recall to a missing group)", es)
	}
	// The operator fixes the cause, then requeues.
	b.group("requeue-later", sim.GroupPublic, 2)
	ctx := context.Background()
	res, err := b.dlq.Requeue(ctx, asynqRequeuer{b.client}, dlq.RecallEntryID(id, 1), dlq.RecallEntryID(id, 2))
	if err != nil {
		t.Fatal(err)
	}
	_ = res
	b.waitSettled(3, 20*time.Second)
	if !b.msg("requeue-later", 1).Recalled || !b.msg("requeue-later", 2).Recalled {
		t.Fatal("requeued recalls were not applied")
	}
	if n := len(b.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters left after requeue", n)
	}
}

// asynqRequeuer requeues with asynq directly (package enqueue is tested on its own).
type asynqRequeuer struct{ c *asynq.Client }

func (r asynqRequeuer) Requeue(ctx context.Context, typ string, payload []byte, queue string) (string, error) {
	p, err := tasks.Parse(typ, payload)
	if err != nil {
		return "", err
	}
	task, err := tasks.NewTask(p, asynq.Queue(queue))
	if err != nil {
		return "", err
	}
	info, err := r.c.EnqueueContext(ctx, task)
	if err != nil {
		return "", err
	}
	return info.ID, nil
}

func TestShutdownMidBacklogLosesNothing(t *testing.T) {
	t.Parallel()
	// Each call takes 20-40 ms, so the backlog is still running when the
	// first worker stops; a second worker finishes it.
	b := setup(t, sim.Config{Faults: map[chatapi.Endpoint]sim.Faults{
		chatapi.EndpointModify: {Latency: 20 * time.Millisecond, Jitter: 20 * time.Millisecond},
	}})
	const n = 300
	b.group("backlog", sim.GroupPublic, n)
	for i := 1; i <= n; i++ {
		b.enqueue(tasks.Modify{GroupId: "backlog", MsgSeq: uint64(i), MsgBody: tasks.TextBody("v2")})
	}
	w1, err := worker.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w1.Start(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "20 modifies completed", func() bool { return b.counts().completed >= 20 })
	w1.Shutdown()
	mid := b.counts()
	if mid.completed >= n {
		t.Fatalf("the backlog finished before shutdown (%+v); the test proves nothing", mid)
	}
	if mid.active != 0 {
		t.Fatalf("%d tasks still active after shutdown", mid.active)
	}
	b.startWorker()
	c := b.waitSettled(n, 60*time.Second)
	if c.completed != n || c.archived != 0 {
		t.Fatalf("counts = %+v, want %d completed", c, n)
	}
	for i := 1; i <= n; i++ {
		if m := b.msg("backlog", uint64(i)); m.Modified < 1 {
			t.Fatalf("seq %d never modified", i)
		}
	}
	t.Logf("stopped after %d of %d; all %d applied after restart", mid.completed, n, n)
}

func TestRecallsOfAGroupShareCalls(t *testing.T) {
	t.Parallel()
	// At 20 calls a second, 200 one-message recalls over 4 groups queue up
	// behind the token and fill each other's calls.
	b := setup(t, sim.Config{})
	b.cfg.Rate = 20
	const groups, per = 4, 50
	for g := range groups {
		b.group(fmt.Sprintf("coalesce-%d", g), sim.GroupPublic, per)
	}
	for g := range groups {
		for s := 1; s <= per; s++ {
			b.enqueue(tasks.Recall{GroupId: fmt.Sprintf("coalesce-%d", g), MsgSeqList: seqList(uint64(s))})
		}
	}
	b.startWorker()
	c := b.waitSettled(groups*per, 60*time.Second)
	if c.completed != groups*per {
		t.Fatalf("counts = %+v, want %d completed", c, groups*per)
	}
	for g := range groups {
		for s := 1; s <= per; s++ {
			if !b.msg(fmt.Sprintf("coalesce-%d", g), uint64(s)).Recalled {
				t.Fatalf("coalesce-%d seq %d not recalled", g, s)
			}
		}
	}
	st := b.emu.Stats()
	calls := st.Endpoints[chatapi.EndpointRecall].Calls
	if st.MessagesRecalled != groups*per {
		t.Fatalf("emulator recalled %d messages, want %d", st.MessagesRecalled, groups*per)
	}
	// 200 messages need at least 20 calls; one call per task would be 200.
	if calls > groups*per/4 {
		t.Fatalf("%d recall calls for %d one-message tasks: recalls were not coalesced", calls, groups*per)
	}
	t.Logf("%d one-message recalls in %d calls", groups*per, calls)
}

func TestCoalescedRecallFailureStaysWithItsTask(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.cfg.Rate = 5
	b.group("coalesce-fail", sim.GroupPublic, 9)
	ids := map[uint64]string{}
	for s := uint64(1); s <= 10; s++ { // message 10 does not exist
		ids[s] = b.enqueue(tasks.Recall{GroupId: "coalesce-fail", MsgSeqList: seqList(s)})
	}
	b.startWorker()
	c := b.waitSettled(10, 30*time.Second)
	if c.completed != 9 || c.archived != 1 {
		t.Fatalf("counts = %+v, want 9 completed and 1 archived", c)
	}
	es := b.deadLetters()
	if len(es) != 1 || es[0].ID != dlq.RecallEntryID(ids[10], 10) || es[0].Code != 10030 {
		t.Fatalf("dead letters = %+v, want only message 10 of its own task, code 10030", es)
	}
	if calls := b.emu.Stats().Endpoints[chatapi.EndpointRecall].Calls; calls >= 10 {
		t.Fatalf("%d calls for 10 recalls: not coalesced", calls)
	}
}

func TestTasksAsynqArchivesOnItsOwnAreDeadLettered(t *testing.T) {
	t.Parallel()
	// asynq archives a task without running a handler when the worker dies
	// during its last attempt ("task lease expired"); an operator can also
	// archive one from the dashboard. Archiving by hand stands in for both.
	b := setup(t, sim.Config{})
	b.cfg.ReconcileInterval = 50 * time.Millisecond
	b.group("archived-by-hand", sim.GroupPublic, 5)
	clearID := b.enqueue(tasks.Clear{GroupId: "archived-by-hand"}, asynq.ProcessIn(time.Hour))
	recallID := b.enqueue(tasks.Recall{GroupId: "archived-by-hand", MsgSeqList: seqList(1, 2)}, asynq.ProcessIn(time.Hour))
	// The worker's own dead letter: archived after it wrote its entry.
	permID := b.enqueue(tasks.Clear{GroupId: "no-such-group"})
	for _, c := range []struct{ q, id string }{{tasks.QueueClear, clearID}, {tasks.QueueRecall, recallID}} {
		if err := b.insp.ArchiveTask(c.q, c.id); err != nil {
			t.Fatal(err)
		}
	}
	w := b.startWorker()
	want := map[string]string{
		clearID:                        dlq.ReasonArchived,
		dlq.RecallEntryID(recallID, 1): dlq.ReasonArchived,
		dlq.RecallEntryID(recallID, 2): dlq.ReasonArchived,
		permID:                         dlq.ReasonPermanent,
	}
	var got map[string]dlq.Entry
	testenv.WaitFor(t, 20*time.Second, "four dead letters", func() bool {
		got = map[string]dlq.Entry{}
		for _, e := range b.deadLetters() {
			got[e.ID] = e
		}
		return len(got) >= len(want)
	})
	if len(got) != len(want) {
		t.Fatalf("dead letters %v, want exactly %v", got, want)
	}
	for id, reason := range want {
		if got[id].Reason != reason {
			t.Errorf("dead letter %s: reason %q, want %q", id, got[id].Reason, reason)
		}
	}
	var one tasks.Recall
	if err := json.Unmarshal(got[dlq.RecallEntryID(recallID, 2)].Payload, &one); err != nil || len(one.MsgSeqList) != 1 || one.MsgSeqList[0].MsgSeq != 2 {
		t.Fatalf("recall message dead letter payload = %s", got[dlq.RecallEntryID(recallID, 2)].Payload)
	}
	// The operator purges everything; neither this worker nor a new one
	// brings the entries back.
	ctx := context.Background()
	if _, err := b.dlq.Delete(ctx, clearID, permID, dlq.RecallEntryID(recallID, 1), dlq.RecallEntryID(recallID, 2)); err != nil {
		t.Fatal(err)
	}
	w.Shutdown()
	b.startWorker()
	// A task archived by hand in each queue after the restart is the
	// synchronisation point: once its dead letter exists, the new worker's
	// reconciler has read that queue's archive, purged entries included.
	b.group("archived-later", sim.GroupPublic, 1)
	later := map[string]string{
		tasks.QueueClear:  b.enqueue(tasks.Clear{GroupId: "archived-later"}, asynq.ProcessIn(time.Hour)),
		tasks.QueueRecall: b.enqueue(tasks.Recall{GroupId: "archived-later", MsgSeqList: seqList(1)}, asynq.ProcessIn(time.Hour)),
	}
	for q, id := range later {
		if err := b.insp.ArchiveTask(q, id); err != nil {
			t.Fatal(err)
		}
	}
	wantLater := []string{later[tasks.QueueClear], dlq.RecallEntryID(later[tasks.QueueRecall], 1)}
	testenv.Eventually(t, 20*time.Second, "the new worker dead-letters the tasks archived after its start", func() (bool, string) {
		es := b.deadLetters()
		ids := make([]string, 0, len(es))
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		slices.Sort(ids)
		want := slices.Clone(wantLater)
		slices.Sort(want)
		return slices.Equal(ids, want), fmt.Sprintf("dead letters %v, want exactly %v", ids, want)
	})
}

func TestMoreThanTenThousandDeadLettersAreAllKept(t *testing.T) {
	t.Parallel()
	// asynq keeps at most 10,000 archived tasks per queue and silently drops
	// the oldest; the dead-letter store keeps every one. Bad payloads are the
	// quickest dead letters: no API call is made.
	b := setup(t, sim.Config{})
	b.cfg.Concurrency = 100
	const n = 10_050
	const producers = 8
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += producers {
				payload := fmt.Sprintf(`{"GroupId":"g-%d","MsgSeq":0}`, i) // MsgSeq 0 is invalid
				if _, err := b.client.Enqueue(asynq.NewTask(tasks.TypeClear, []byte(payload), asynq.Queue(tasks.QueueClear))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	b.startWorker()
	testenv.Eventually(t, 4*time.Minute, "every task settled", func() (bool, string) {
		c := b.counts()
		return c.pending+c.active+c.retry == 0, fmt.Sprintf("%+v", c)
	})
	held, err := b.dlq.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	archived := b.counts().archived
	t.Logf("%d dead letters held; asynq's archive holds %d", held, archived)
	if held != n {
		t.Fatalf("dead-letter store holds %d, want all %d", held, n)
	}
	if archived > 10_000 {
		t.Fatalf("asynq's archive holds %d: it no longer trims at 10,000, so this test proves nothing", archived)
	}
}
