package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// TestForeignProducerBadInputIsDeadLettered puts malformed and oversized
// payloads straight into Redis the way a foreign producer could (an
// asynq.Client with raw bytes, and a raw LPUSH of a message asynq cannot
// decode). Each payload must be dead-lettered at once with reason
// invalid_payload and a reason naming what is wrong, never reach the API,
// and never panic or stop the worker: good work queued after it is applied.
func TestForeignProducerBadInputIsDeadLettered(t *testing.T) {
	t.Parallel()
	g := newRig(t, sim.Config{})
	big := `{"GroupId":"g","MsgSeq":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"` + strings.Repeat("x", 1<<20) + `"}}]}`
	cases := []struct {
		name, typ, payload, info string
	}{
		{"truncated JSON", tasks.TypeClear, `{"GroupId":`, "payload: is not a valid JSON object"},
		{"empty", tasks.TypeRecall, ``, "payload: is not a valid JSON object"},
		{"binary", tasks.TypeModify, "\x00\xff\xfe\x01garbage", "payload: is not a valid JSON object"},
		{"array", tasks.TypeClear, `[]`, "payload: is not a valid JSON object"},
		{"null", tasks.TypeClear, `null`, "GroupId: is required"},
		{"trailing data", tasks.TypeClear, `{"GroupId":"g"}{"GroupId":"h"}`, "payload: has data after the JSON object"},
		{"another type's payload", tasks.TypeClear, `{"GroupId":"g","MsgSeq":1,"MsgBody":[]}`, `unknown field "MsgBody"`},
		{"number overflow", tasks.TypeModify, `{"GroupId":"g","MsgSeq":1e30,"CloudCustomData":"x"}`, "MsgSeq"},
		{"negative seq", tasks.TypeRecall, `{"GroupId":"g","MsgSeqList":[{"MsgSeq":-1}]}`, "MsgSeq"},
		{"deep nesting", tasks.TypeModify, strings.Repeat("[", 100_000), "payload"},
		{"oversized", tasks.TypeModify, big, "more than the 65536 allowed"},
		{"oversized and not UTF-8", tasks.TypeClear, strings.Repeat("\xff", 1<<20), "more than the 65536 allowed"},
		{"control character in GroupId", tasks.TypeClear, `{"GroupId":"g\u0000x"}`, "GroupId: has a control character"},
		{"too many recalls", tasks.TypeRecall, `{"GroupId":"g","MsgSeqList":[` + strings.Repeat(`{"MsgSeq":1},`, 11)[:13*11-1] + `]}`, "MsgSeqList"},
		{"unknown task type in a timq queue", "timq:bogus", `{"GroupId":"g"}`, "timq:bogus"},
		// encoding/json would take the second, in another case, as GroupId.
		{"repeated key in another case", tasks.TypeClear, `{"GroupId":"g","groupid":"h"}`, `payload: duplicate key "groupid" (also "GroupId")`},
		{"GroupId not UTF-8", tasks.TypeClear, "{\"GroupId\":\"g\xffx\"}", "GroupId: is not valid UTF-8"},
	}
	ids := map[string]int{}
	for i, c := range cases {
		q := tasks.QueueFor(c.typ)
		if q == "" {
			q = tasks.QueueClear
		}
		info, err := g.client.Enqueue(asynq.NewTask(c.typ, []byte(c.payload)), asynq.Queue(q), asynq.MaxRetry(5), asynq.Retention(time.Hour))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		ids[info.ID] = i
	}

	// A message asynq itself cannot decode, pushed with raw Redis commands
	// as a broken producer would: asynq's Dequeue fails on it, so no
	// handler ever sees it (it stays "active" with a lease; see below).
	rdb := g.redis.Client(t)
	ctx := context.Background()
	const garbageID = "garbage-not-protobuf"
	if err := rdb.SAdd(ctx, "asynq:queues", tasks.QueueModify).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, "asynq:{"+tasks.QueueModify+"}:t:"+garbageID, "msg", "\xff\xff\xff\xff\xff\xff\xff\xff not protobuf", "state", "pending").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.LPush(ctx, "asynq:{"+tasks.QueueModify+"}:pending", garbageID).Err(); err != nil {
		t.Fatal(err)
	}

	w := g.startWorker(g.workerConfig())
	_ = w
	// Good work after the bad: it must all be applied.
	plan := NewPlan(Mix{Prefix: "after-bad", Modify: 30, Recall: 10, Clear: 10})
	plan.Seed(t, g.emu.Seed)
	if _, err := plan.Produce(ctx, g.client, plan.Ops, 4, time.Minute); err != nil {
		t.Fatal(err)
	}
	total := len(cases) + len(plan.Ops)
	var c testenv.Counts
	testenv.Eventually(t, time.Minute, "bad tasks archived and good ones completed", func() (bool, string) {
		c = g.counts()
		return c.Completed+c.Archived >= total && c.Pending+c.Scheduled+c.Retry == 0, c.String()
	})
	t.Logf("queues: %v (the undecodable message is the one active)", c)

	entries, err := g.store.List(ctx, dlq.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]dlq.Entry{}
	for _, e := range entries {
		got[e.ID] = e
	}
	deadLettered := 0
	for id, i := range ids {
		cs := cases[i]
		e, ok := got[id]
		if !ok {
			ti, _ := g.insp.GetTaskInfo(tasks.QueueFor(cs.typ)+map[bool]string{true: tasks.QueueClear}[tasks.QueueFor(cs.typ) == ""], id)
			state, lastErr := "?", ""
			if ti != nil {
				state, lastErr = ti.State.String(), ti.LastErr
			}
			t.Errorf("%s: not in the dead-letter store (asynq state %s, retried %v, last error %q)", cs.name, state, retriedOf(ti), lastErr)
			continue
		}
		deadLettered++
		if e.Reason != dlq.ReasonInvalidPayload || e.Attempts != 1 || !strings.Contains(e.Info, cs.info) {
			t.Errorf("%s: dead letter reason %q attempts %d info %.200q; want invalid_payload after 1 attempt, info with %q", cs.name, e.Reason, e.Attempts, e.Info, cs.info)
		}
		t.Logf("%-35s -> dead-lettered: %s, %d-byte payload kept (%.120s)", cs.name, e.Reason, len(e.Payload), e.Info)
	}
	for _, e := range entries {
		if _, ok := ids[e.ID]; !ok {
			t.Errorf("unexpected dead letter %s: %s", e.ID, e.Info)
		}
	}
	// Nothing bad reached the API (recalls may share calls, so at most one
	// call per good task, every one answered OK); the good work did.
	st := g.emu.Stats()
	var calls, ok int64
	for _, ep := range chatapi.Endpoints {
		calls += st.Endpoints[ep].Calls
		ok += st.Endpoints[ep].Codes[0]
	}
	if calls > int64(len(plan.Ops)) || ok != calls {
		t.Errorf("%d API calls, %d answered OK; want at most %d (one per good task), all OK", calls, ok, len(plan.Ops))
	}
	acc := plan.Count(g.emu)
	t.Logf("accounting: %d bad payloads, %d dead-lettered; good work after them: %d tasks, %d of %d operations applied",
		len(cases), deadLettered, len(plan.Ops), acc.Applied, plan.Units())
	if acc.Applied != plan.Units() || acc.Stray != 0 {
		t.Errorf("good work after the bad payloads: %v", acc)
	}
	// No handler panicked (asynq turns a panic into an error "panic: ...").
	for _, q := range tasks.Queues() {
		arch, _ := g.insp.ListArchivedTasks(q, asynq.PageSize(100))
		for _, ti := range arch {
			if strings.Contains(ti.LastErr, "panic") {
				t.Errorf("task %s: a handler panicked: %s", ti.ID, ti.LastErr)
			}
		}
	}
	// The undecodable message: asynq moved it to active and cannot hand it
	// to a handler; it is reported, not dead-lettered (see the report).
	if n, _ := rdb.LLen(ctx, "asynq:{"+tasks.QueueModify+"}:active").Result(); n != 1 {
		t.Logf("undecodable message: %d tasks active in %s", n, tasks.QueueModify)
	}
}

func retriedOf(ti *asynq.TaskInfo) any {
	if ti == nil {
		return "?"
	}
	return ti.Retried
}
