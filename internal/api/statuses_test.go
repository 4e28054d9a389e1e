package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/api"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/tasks"
)

// documented is one operation of openapi.json.
type documented struct {
	method, path, scope string
	responses           map[string]any
}

func documentedOps(t *testing.T) []documented {
	t.Helper()
	doc, err := description()
	if err != nil {
		t.Fatal(err)
	}
	var out []documented
	for path, item := range doc["paths"].(map[string]any) {
		for method, o := range item.(map[string]any) {
			op := o.(map[string]any)
			scope, _ := op["x-timq-scope"].(string)
			out = append(out, documented{strings.ToUpper(method), path, scope, op["responses"].(map[string]any)})
		}
	}
	return out
}

// validBody is a body each operation accepts.
func validBody(d documented) string {
	switch d.path {
	case "/v1/clear":
		return `{"GroupId":"@TGS#s"}`
	case "/v1/recall":
		return `{"GroupId":"@TGS#s","MsgSeqList":[{"MsgSeq":1}]}`
	case "/v1/modify":
		return `{"GroupId":"@TGS#s","MsgSeq":1,"CloudCustomData":"x"}`
	case "/v1/jobs":
		if d.method == http.MethodPost {
			return `{"op":"clear","GroupId":"@TGS#s"}` + "\n"
		}
	case "/v1/purges":
		return `{"sender":"nobody","dry_run":true}`
	}
	return ""
}

func (d documented) with(id string) string { return strings.ReplaceAll(d.path, "{id}", id) }

// Every operation answers 401 without a token, 403 (admin ones) to an
// enqueue token, 400 to a bad parameter, 404 to an unknown ID and 503
// while Redis is down, each with a problem body.
func TestEveryOperationAnswersItsErrors(t *testing.T) {
	t.Parallel()
	g := newRig(t)
	down := newRig(t, func(c *api.Config) { c.Redis = asynq.RedisClientOpt{Addr: "127.0.0.1:1"} })
	for _, d := range documentedOps(t) {
		if d.scope == "" {
			continue // the webhook receiver has no bearer token: see TestCallbacks
		}
		send := func(r *rig, path, token, body string) reply {
			t.Helper()
			return r.do(d.method, path, token, strings.NewReader(body))
		}
		check := func(p reply, want int, what string) {
			t.Helper()
			if p.status != want {
				t.Errorf("%s %s %s: %d, want %d: %s", d.method, d.path, what, p.status, want, p.body)
				return
			}
			p.problem(t)
		}
		check(send(g, d.with("x"), "", validBody(d)), 401, "without a token")
		if d.scope == string(api.ScopeAdmin) {
			check(send(g, d.with("x"), enqueueToken, validBody(d)), 403, "with the enqueue token")
		}
		check(send(down, d.with("x"), adminToken, validBody(d)), 503, "with Redis down")
		switch {
		case strings.Contains(d.path, "{id}"):
			check(send(g, d.with(strings.Repeat("x", 400)), adminToken, ""), 400, "with a 400-character ID")
			check(send(g, d.with("nosuch"), adminToken, validBody(d)), 404, "with an unknown ID")
		case d.method == http.MethodGet:
			check(send(g, d.path+"?limit=many", adminToken, ""), 400, "with limit=many")
		case d.path == "/v1/jobs":
			check(send(g, d.path+"?priority=0", adminToken, validBody(d)), 400, "with priority=0")
		case d.path == "/v1/purges":
			check(send(g, d.path, adminToken, `{"sender":""}`), 400, "without a sender")
		default:
			check(send(g, d.path, adminToken, `{"GroupId":""}`), 400, "with an empty GroupId")
			check(send(g, d.path, adminToken, `{"GroupId":"`+strings.Repeat("g", 70<<10)+`"}`), 413, "with a 70 KB body")
			// 409: an Idempotency-Key reused for another request.
			send(g, d.path, adminToken, validBody(d))
			p := g.do(d.method, d.path, adminToken, strings.NewReader(validBody(d)), "Idempotency-Key", "k-"+d.path)
			if p.status != 202 && p.status != 200 {
				t.Fatalf("%s %s with a key: %d %s", d.method, d.path, p.status, p.body)
			}
			check(g.do(d.method, d.path, adminToken, strings.NewReader(strings.Replace(validBody(d), "@TGS#s", "@TGS#t", 1)), "Idempotency-Key", "k-"+d.path), 409, "reusing a key")
		}
	}
	// 409 for the job controls: an ended job takes none of them.
	p := g.post("/v1/jobs", enqueueToken, validBody(documented{method: http.MethodPost, path: "/v1/jobs"}))
	var created api.CreatedJob
	p.json(t, &created)
	if p := g.post("/v1/jobs/"+created.Job.ID+"/cancel", adminToken, ""); p.status != 200 {
		t.Fatalf("cancel: %d %s", p.status, p.body)
	}
	for _, action := range []string{"pause", "resume", "cancel"} {
		if p := g.post("/v1/jobs/"+created.Job.ID+"/"+action, adminToken, ""); p.status != 409 {
			t.Errorf("%s of a cancelled job: %d, want 409", action, p.status)
		} else {
			p.problem(t)
		}
	}
	// 409 for a requeue of an entry whose payload cannot be enqueued, and
	// 200 for a clear already waiting (a duplicate).
	if err := dlq.New(g.redis.Client(t)).Add(context.Background(), dlq.Entry{ID: "bad", Type: tasks.TypeClear, TaskID: "bad",
		Payload: []byte("not json"), Reason: dlq.ReasonInvalidPayload}); err != nil {
		t.Fatal(err)
	}
	if p := g.post("/v1/dead-letters/bad/requeue", adminToken, ""); p.status != 409 {
		t.Errorf("requeue of an invalid payload: %d, want 409: %s", p.status, p.body)
	}
	g.post("/v1/clear", enqueueToken, `{"GroupId":"@TGS#dup"}`)
	if p := g.post("/v1/clear", enqueueToken, `{"GroupId":"@TGS#dup"}`); p.status != 200 {
		t.Errorf("a duplicate clear: %d, want 200", p.status)
	}
	// A job body over its limit.
	small := newRig(t, func(c *api.Config) { c.MaxJobBody = 100 })
	if p := small.post("/v1/jobs", enqueueToken, strings.Repeat(validBody(documented{method: http.MethodPost, path: "/v1/jobs"}), 10)); p.status != 413 {
		t.Errorf("a job body over 100 bytes: %d, want 413", p.status)
	}
}
