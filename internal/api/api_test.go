package api_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/api"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

func TestOpenAPIFileIsCurrent(t *testing.T) {
	r := testenv.Redis(t)
	s, err := api.New(api.Config{Redis: r.ConnOpt()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var pretty bytes.Buffer
	if err := jsonIndent(&pretty, got); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("openapi.json", pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, pretty.Bytes()) {
		t.Fatal("openapi.json is not the server's description: run go test ./internal/api -run TestOpenAPIFileIsCurrent -update")
	}
	// The server serves the same description, without a token.
	g := newRig(t)
	p := g.get("/openapi.json", "")
	if p.status != 200 || !strings.Contains(string(p.body), `"openapi":"3.1.0"`) {
		t.Fatalf("GET /openapi.json: %d %.200s", p.status, p.body)
	}
}

func TestEnqueueIsAppliedAndItsTaskReadable(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	if err := g.emu.CreateGroup("@TGS#api", sim.GroupPublic); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.emu.AddMessages("@TGS#api", "", 30); err != nil {
		t.Fatal(err)
	}
	g.startWorker()
	p := g.post("/v1/modify", enqueueToken, `{"GroupId":"@TGS#api","MsgSeq":3,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"edited"}}]}`)
	var res api.EnqueueResult
	p.json(t, &res)
	if p.status != http.StatusAccepted || len(res.TaskIDs) != 1 || res.Duplicate {
		t.Fatalf("modify: %d %s", p.status, p.body)
	}
	// A recall of 12 messages is two tasks, and every ID comes back.
	seqs := make([]string, 12)
	for i := range seqs {
		seqs[i] = fmt.Sprintf(`{"MsgSeq":%d}`, 11+i)
	}
	p = g.post("/v1/recall", enqueueToken, `{"GroupId":"@TGS#api","MsgSeqList":[`+strings.Join(seqs, ",")+`]}`)
	var rec api.EnqueueResult
	p.json(t, &rec)
	if p.status != http.StatusAccepted || len(rec.TaskIDs) != 2 {
		t.Fatalf("recall of 12: %d %s", p.status, p.body)
	}
	p = g.post("/v1/clear?delay=0s&max_retry=3", enqueueToken, `{"GroupId":"@TGS#api","MsgSeq":2}`)
	var clr api.EnqueueResult
	p.json(t, &clr)
	if p.status != http.StatusAccepted || len(clr.TaskIDs) != 1 {
		t.Fatalf("clear: %d %s", p.status, p.body)
	}
	testenv.WaitFor(t, 30*time.Second, "the operations applied in the emulator", func() bool {
		m3, _ := g.emu.Message("@TGS#api", "", 3)
		m22, _ := g.emu.Message("@TGS#api", "", 22)
		m1, _ := g.emu.Message("@TGS#api", "", 1)
		return m3.Modified == 1 && m22.Recalled && m1.Cleared
	})
	testenv.WaitFor(t, 10*time.Second, "the modify task completed", func() bool {
		var st api.TaskStatus
		p := g.get("/v1/tasks/"+res.TaskIDs[0], enqueueToken)
		p.json(t, &st)
		return st.State == "completed"
	})
	var st api.TaskStatus
	g.get("/v1/tasks/"+clr.TaskIDs[0], enqueueToken).json(t, &st)
	if st.Type != tasks.TypeClear || st.MaxRetry != 3 || st.Queue != tasks.QueueClear {
		t.Errorf("clear task = %+v, want a clear with max_retry 3 in %s", st, tasks.QueueClear)
	}
	if p := g.get("/v1/tasks/no-such-task", enqueueToken); p.status != 404 {
		t.Errorf("unknown task: %d", p.status)
	}
}

func TestIdempotencyKeyQueuesOnce(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	insp := asynq.NewInspector(g.redis.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })
	body := `{"GroupId":"@TGS#idem","MsgSeqList":[{"MsgSeq":1}]}`
	first := g.post("/v1/recall", enqueueToken, body, "Idempotency-Key", "order-42")
	again := g.post("/v1/recall", enqueueToken, body, "Idempotency-Key", "order-42")
	if first.status != 202 || again.status != 202 || string(first.body) != string(again.body) {
		t.Fatalf("first %d %s, again %d %s; want the same answer", first.status, first.body, again.status, again.body)
	}
	if first.header.Get("Idempotent-Replayed") != "" || again.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed: %q then %q, want none then true", first.header.Get("Idempotent-Replayed"), again.header.Get("Idempotent-Replayed"))
	}
	info, err := insp.GetQueueInfo(tasks.QueueRecall)
	if err != nil || info.Size != 1 {
		t.Fatalf("recall queue holds %v tasks (%v), want 1", info, err)
	}
	// The same key for another request is refused, not answered wrongly.
	p := g.post("/v1/recall", enqueueToken, `{"GroupId":"@TGS#idem","MsgSeqList":[{"MsgSeq":2}]}`, "Idempotency-Key", "order-42")
	if p.status != 409 || !strings.Contains(p.problem(t).Detail, "used for another request") {
		t.Fatalf("reused key: %d %s", p.status, p.body)
	}
	// The key is not kept in clear in Redis.
	if keys := g.redis.Client(t).Keys(context.Background(), "*order-42*").Val(); len(keys) != 0 {
		t.Errorf("the idempotency key is stored in clear: %v", keys)
	}
	// Without a key, an identical modify already waiting is a duplicate.
	m := `{"GroupId":"@TGS#idem","MsgSeq":5,"CloudCustomData":"x"}`
	if p := g.post("/v1/modify", enqueueToken, m); p.status != 202 {
		t.Fatalf("modify: %d %s", p.status, p.body)
	}
	p = g.post("/v1/modify", enqueueToken, m)
	var dup api.EnqueueResult
	p.json(t, &dup)
	if p.status != 200 || !dup.Duplicate || len(dup.TaskIDs) != 0 {
		t.Fatalf("identical modify: %d %s, want 200 duplicate", p.status, p.body)
	}
}

func TestTokensAndScopes(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	for _, tc := range []struct {
		token  string
		status int
	}{{"", 401}, {"not-a-token-of-this-server", 401}, {enqueueToken, 202}} {
		p := g.post("/v1/clear", tc.token, `{"GroupId":"@TGS#auth"}`)
		if p.status != tc.status {
			t.Errorf("clear with token %q: %d, want %d", tc.token, p.status, tc.status)
		}
		if tc.status == 401 {
			p.problem(t)
			if p.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		}
	}
	p := g.post("/v1/jobs?name=auth", enqueueToken, `{"op":"clear","GroupId":"@TGS#auth"}`+"\n")
	var created api.CreatedJob
	p.json(t, &created)
	if p.status != 201 {
		t.Fatalf("create job: %d %s", p.status, p.body)
	}
	id := created.Job.ID
	// Cancelling needs the admin scope.
	if p := g.post("/v1/jobs/"+id+"/cancel", enqueueToken, ""); p.status != 403 || !strings.Contains(p.problem(t).Detail, "scope admin") {
		t.Fatalf("cancel with the enqueue token: %d %s", p.status, p.body)
	}
	if p := g.post("/v1/jobs/"+id+"/cancel", adminToken, ""); p.status != 200 {
		t.Fatalf("cancel with the admin token: %d %s", p.status, p.body)
	}
	// Requests are counted by route and status, without IDs.
	if got := counterValue(t, g.metrics, "timq_api_requests_total", "POST /v1/jobs/{id}/cancel", "403"); got != 1 {
		t.Errorf("timq_api_requests_total{POST /v1/jobs/{id}/cancel,403} = %v, want 1", got)
	}
	// The admin token does everything the enqueue one does.
	if p := g.get("/v1/jobs/"+id, adminToken); p.status != 200 {
		t.Fatalf("read with the admin token: %d", p.status)
	}
	// No token shows in the access log, which names the route and the job.
	if out := g.logs.String(); strings.Contains(out, enqueueToken) || strings.Contains(out, adminToken) ||
		!strings.Contains(out, `"route":"POST /v1/jobs/{id}/cancel","status":403`) || !strings.Contains(out, `"id":"`+id+`"`) {
		t.Errorf("access log leaks a token or lacks the route:\n%s", out)
	}
}

func TestBadRequestsGetProblemsNamingTheField(t *testing.T) {
	t.Parallel()
	g := newRig(t, func(c *api.Config) { c.MaxJobBody = 1000 })
	for _, tc := range []struct {
		path, body, location string
	}{
		{"/v1/recall", `{"GroupId":"g","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":0}]}`, "body.MsgSeqList[1].MsgSeq"},
		{"/v1/modify", `{"GroupId":"g","MsgSeq":1,"CloudCustomData":"x","Extra":1}`, "body.Extra"},
		{"/v1/clear", `{"GroupId":"g","groupid":"h"}`, "body"},
		{"/v1/clear", "{\"GroupId\":\"\xff\"}", "body"},
		{"/v1/clear", `{"GroupId":`, "body"},
		{"/v1/clear?delay=soon", `{"GroupId":"g"}`, "query.delay"},
		{"/v1/clear?max_retry=5000", `{"GroupId":"g"}`, "query.max_retry"},
	} {
		p := g.post(tc.path, enqueueToken, tc.body)
		if p.status != 400 {
			t.Errorf("%s %s: %d, want 400", tc.path, tc.body, p.status)
			continue
		}
		pr := p.problem(t)
		if len(pr.Errors) == 0 || !strings.HasPrefix(pr.Errors[0].Location, tc.location) {
			t.Errorf("%s %s: problem %+v, want the location %s", tc.path, tc.body, pr, tc.location)
		}
	}
	if p := g.post("/v1/clear", enqueueToken, `{"GroupId":"`+strings.Repeat("g", 70<<10)+`"}`); p.status != 413 {
		t.Errorf("a 70 KB operation: %d, want 413", p.status)
	}
	var lines strings.Builder
	for i := range 40 {
		fmt.Fprintf(&lines, "{\"op\":\"clear\",\"GroupId\":\"g%d\"}\n", i)
	}
	if p := g.post("/v1/jobs", enqueueToken, lines.String()); p.status != 413 {
		t.Errorf("a job body over its 1000 bytes: %d, want 413 (%s)", p.status, p.body)
	}
	if p := g.get("/v1/jobs/nosuchjob", enqueueToken); p.status != 404 {
		t.Errorf("unknown job: %d", p.status)
	}
}

// While Redis does not answer, requests get 503 with Retry-After.
func TestRedisDownIs503(t *testing.T) {
	t.Parallel()
	g := newRig(t, func(c *api.Config) {
		c.Redis = asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond}
	})
	for _, p := range []reply{g.get("/v1/jobs", enqueueToken), g.post("/v1/clear", enqueueToken, `{"GroupId":"g"}`)} {
		if p.status != 503 || p.header.Get("Retry-After") == "" {
			t.Errorf("with Redis down: %d (Retry-After %q) %s", p.status, p.header.Get("Retry-After"), p.body)
		}
		p.problem(t)
	}
}

func TestJobOverHTTPRunsToDoneWithExactCounts(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	if err := g.emu.CreateGroup("@TGS#jobs", sim.GroupPublic); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g.emu.AddMessages("@TGS#jobs", "", 40); err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	for s := 1; s <= 30; s++ {
		fmt.Fprintf(&body, "{\"op\":\"modify\",\"GroupId\":\"@TGS#jobs\",\"MsgSeq\":%d,\"CloudCustomData\":\"j\"}\n", s)
	}
	body.WriteString("# a comment\n{\"op\":\"recall\",\"GroupId\":\"@TGS#jobs\",\"MsgSeqList\":[{\"MsgSeq\":31},{\"MsgSeq\":32},{\"MsgSeq\":999}]}\n")
	// A bad line: nothing is stored, every bad line is named.
	bad := body.String() + "{\"op\":\"clear\",\"GroupId\":\"\"}\n{\"op\":\"frob\"}\n"
	p := g.post("/v1/jobs", enqueueToken, bad)
	pr := p.problem(t)
	if p.status != 400 || len(pr.Errors) != 2 || pr.Errors[0].Location != "body[33].GroupId" || pr.Errors[1].Location != "body[34].op" {
		t.Fatalf("bad body: %d %+v", p.status, pr)
	}
	var list api.JobList
	g.get("/v1/jobs", enqueueToken).json(t, &list)
	if len(list.Jobs) != 0 {
		t.Fatalf("jobs after a refused body: %+v", list.Jobs)
	}
	// A dry run counts and stores nothing.
	p = g.post("/v1/jobs?dry_run=true", enqueueToken, body.String())
	var dry api.CreatedJob
	p.json(t, &dry)
	if p.status != 200 || dry.Job != nil || dry.Summary.Tasks[tasks.TypeModify] != 30 {
		t.Fatalf("dry run: %d %s", p.status, p.body)
	}
	p = g.post("/v1/jobs?name=cleanup&priority=2", enqueueToken, body.String())
	var created api.CreatedJob
	p.json(t, &created)
	if p.status != 201 || created.Job.Counts.Total != 31 || created.Job.Name != "cleanup" || created.Job.Weight != 2 {
		t.Fatalf("create: %d %s", p.status, p.body)
	}
	id := created.Job.ID
	if p := g.post("/v1/jobs/"+id+"/pause", adminToken, ""); p.status != 200 {
		t.Fatalf("pause: %d %s", p.status, p.body)
	}
	g.startWorker()
	if p := g.post("/v1/jobs/"+id+"/resume", adminToken, ""); p.status != 200 {
		t.Fatalf("resume: %d %s", p.status, p.body)
	}
	var j struct {
		State    string
		Finished bool
		Counts   struct {
			Total, Applied int64
			DeadLettered   int64 `json:"dead_lettered"`
		} `json:"counts"`
		RecallMessages *struct {
			Total, Applied int64
			DeadLettered   int64 `json:"dead_lettered"`
		} `json:"recall_messages"`
	}
	testenv.Eventually(t, 60*time.Second, "the job ended", func() (bool, string) {
		p := g.get("/v1/jobs/"+id, enqueueToken)
		p.json(t, &j)
		return j.Finished, string(p.body)
	})
	if j.State != "done" || j.Counts.Applied != 30 || j.Counts.DeadLettered != 1 || j.RecallMessages.Applied != 2 || j.RecallMessages.DeadLettered != 1 {
		t.Fatalf("ended job %+v, want done with 30 applied, 1 dead (2 of its 3 messages recalled)", j)
	}
	var fails api.FailureList
	g.get("/v1/jobs/"+id+"/failures", enqueueToken).json(t, &fails)
	if len(fails.Failures) != 1 || fails.Failures[0].Op != "recall" {
		t.Fatalf("failures: %+v", fails)
	}
	if p := g.post("/v1/jobs/"+id+"/cancel", adminToken, ""); p.status != 409 {
		t.Errorf("cancel of a done job: %d, want 409", p.status)
	}
	// Its dead letter is listed by job.
	var dl api.DeadLetterList
	g.get("/v1/dead-letters?job="+id, enqueueToken).json(t, &dl)
	if len(dl.Entries) != 1 || dl.Entries[0].Code != sim.CodeMsgMissing {
		t.Fatalf("the job's dead letters: %+v", dl)
	}
	for s := uint64(1); s <= 30; s++ {
		if m, _ := g.emu.Message("@TGS#jobs", "", s); m.Modified != 1 {
			t.Fatalf("seq %d modified %d times", s, m.Modified)
		}
	}
}

func TestDeadLettersOverHTTP(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	store := dlq.New(g.redis.Client(t))
	ctx := context.Background()
	for i, code := range []int{10010, 10010, 80001} {
		e := dlq.Entry{ID: fmt.Sprintf("t%d", i), Type: tasks.TypeClear, Queue: tasks.QueueClear, TaskID: fmt.Sprintf("t%d", i),
			Payload: []byte(fmt.Sprintf(`{"GroupId":"g%d"}`, i)), Code: code, Info: "gone", Reason: dlq.ReasonPermanent, Attempts: 1}
		if err := store.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	var all api.DeadLetterList
	g.get("/v1/dead-letters", enqueueToken).json(t, &all)
	var coded api.DeadLetterList
	g.get("/v1/dead-letters?code=10010&limit=1&offset=1", enqueueToken).json(t, &coded)
	if all.Total != 3 || len(all.Entries) != 3 || len(coded.Entries) != 1 || coded.Entries[0].ID != "t1" {
		t.Fatalf("all %+v; code 10010 from 1 %+v", all, coded)
	}
	if p := g.get("/v1/dead-letters/t2", enqueueToken); p.status != 200 || !strings.Contains(string(p.body), `"code":80001`) {
		t.Fatalf("show: %d %s", p.status, p.body)
	}
	if p := g.post("/v1/dead-letters/t0/requeue", enqueueToken, ""); p.status != 403 {
		t.Fatalf("requeue with the enqueue token: %d", p.status)
	}
	p := g.post("/v1/dead-letters/t0/requeue", adminToken, "")
	var rq api.Requeued
	p.json(t, &rq)
	if p.status != 200 || rq.TaskID == "" {
		t.Fatalf("requeue: %d %s", p.status, p.body)
	}
	var st api.TaskStatus
	g.get("/v1/tasks/"+rq.TaskID, enqueueToken).json(t, &st)
	if st.State != "pending" || string(st.Payload) != `{"GroupId":"g0"}` {
		t.Fatalf("the requeued task: %+v", st)
	}
	if p := g.do(http.MethodDelete, "/v1/dead-letters/t1", adminToken, nil); p.status != 204 {
		t.Fatalf("purge: %d %s", p.status, p.body)
	}
	for _, id := range []string{"t0", "t1"} {
		if p := g.get("/v1/dead-letters/"+id, enqueueToken); p.status != 404 {
			t.Errorf("%s after requeue or purge: %d, want 404", id, p.status)
		}
	}
	if p := g.do(http.MethodDelete, "/v1/dead-letters/t1", adminToken, nil); p.status != 404 {
		t.Errorf("second purge: %d, want 404", p.status)
	}
	if p := g.post("/v1/dead-letters/nope/requeue", adminToken, ""); p.status != 404 {
		t.Errorf("requeue of an unknown entry: %d, want 404 (%s)", p.status, p.body)
	}
}

func TestCheckAddr(t *testing.T) {
	if err := api.CheckAddr("0.0.0.0:8090", nil); err == nil || !strings.Contains(err.Error(), api.EnvToken) {
		t.Errorf("open address without tokens: %v", err)
	}
	if err := api.CheckAddr("127.0.0.1:8090", nil); err != nil {
		t.Errorf("loopback without tokens: %v", err)
	}
	if err := api.CheckAddr("0.0.0.0:8090", []api.Token{{Secret: enqueueToken, Scope: api.ScopeEnqueue}}); err != nil {
		t.Errorf("open address with a token: %v", err)
	}
	if _, err := api.New(api.Config{Redis: asynq.RedisClientOpt{Addr: "127.0.0.1:1"}, Tokens: []api.Token{{Secret: "short", Scope: api.ScopeAdmin}}}); err == nil || strings.Contains(err.Error(), "short") {
		t.Errorf("a short token: %v (and the error must not show it)", err)
	}
}
