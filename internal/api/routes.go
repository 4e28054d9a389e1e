package api

import (
	"context"
	"net/http"
	"reflect"

	"github.com/danielgtaylor/huma/v2"

	"github.com/timq/timq/internal/bulk"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/tasks"
)

// register declares every operation: its path, scope, statuses and
// handler. huma documents each from its types.
func (s *Server) register() {
	// Every operation may answer 400 (a bad parameter), 401 and 503; only
	// an admin one 403, since an admin token may do everything.
	op := func(id, method, path, summary string, scope Scope, status int, errs ...int) huma.Operation {
		errs = append(errs, 400, 401, 500, 503)
		if scope == ScopeAdmin {
			errs = append(errs, 403)
		}
		return huma.Operation{OperationID: id, Method: method, Path: path, Summary: summary, DefaultStatus: status,
			Errors: errs, Metadata: map[string]any{needs: scope}, Extensions: map[string]any{"x-timq-scope": string(scope)},
			Security: []map[string][]string{{"bearer": {}}}}
	}
	for _, name := range []string{bulk.OpClear, bulk.OpRecall, bulk.OpModify} {
		o := op("enqueue-"+name, http.MethodPost, "/v1/"+name, "Enqueue one "+name, ScopeEnqueue, http.StatusAccepted, 409, 413)
		o.Description = "The body is Tencent's own " + name + " request body (a bulk line without \"op\"). 409 when the Idempotency-Key is in use by another or a running request."
		if name == bulk.OpRecall {
			o.Description += " A recall of more than 10 messages becomes one task per 10; recalls are never de-duplicated."
		} else {
			o.Description += " 200 with duplicate=true when an identical " + name + " is already waiting."
			o.Responses = map[string]*huma.Response{"200": s.jsonResponse("An identical operation was already waiting: nothing queued.", EnqueueResult{})}
		}
		o.MaxBodyBytes = MaxOperationBody
		huma.Register(s.api, o, s.enqueueHandler(name))
		// The handler reads the raw body (strictly, as bulk lines are
		// read); the description shows what it must hold.
		s.api.OpenAPI().Paths[o.Path].Post.RequestBody = &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
			"application/json": {Schema: s.schemaOf(payloads[name])},
		}}
	}
	huma.Register(s.api, op("get-task", http.MethodGet, "/v1/tasks/{id}", "A task's state", ScopeEnqueue, http.StatusOK, 404), s.getTask)

	create := op("create-job", http.MethodPost, "/v1/jobs", "Create a job from NDJSON lines", ScopeEnqueue, http.StatusCreated, 413)
	create.Description = "The body is one bulk line per line (`{\"op\":\"clear\",...}`), read as a stream. Nothing is stored when a line is bad, unless skip_invalid. 200 with the summary only for dry_run."
	create.RequestBody = &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
		"application/x-ndjson": {Schema: &huma.Schema{Type: "string", Description: "One operation per line."}},
	}}
	create.Responses = map[string]*huma.Response{"200": s.jsonResponse("A dry run: the summary, nothing stored.", CreatedJob{})}
	create.SkipValidateBody = true
	huma.Register(s.api, create, s.createJob)
	huma.Register(s.api, op("list-jobs", http.MethodGet, "/v1/jobs", "List jobs, newest first", ScopeEnqueue, http.StatusOK), s.listJobs)
	huma.Register(s.api, op("get-job", http.MethodGet, "/v1/jobs/{id}", "A job's progress", ScopeEnqueue, http.StatusOK, 404), s.getJob)
	huma.Register(s.api, op("get-job-failures", http.MethodGet, "/v1/jobs/{id}/failures", "A job's dead-lettered operations", ScopeEnqueue, http.StatusOK, 404), s.jobFailures)
	for _, c := range []struct {
		name string
		fn   func(*jobs.Store, context.Context, string) (jobs.Job, error)
	}{{"pause", (*jobs.Store).Pause}, {"resume", (*jobs.Store).Resume}, {"cancel", (*jobs.Store).Cancel}} {
		huma.Register(s.api, op(c.name+"-job", http.MethodPost, "/v1/jobs/{id}/"+c.name, "Make a job "+c.name, ScopeAdmin, http.StatusOK, 404, 409), s.control(c.fn))
	}

	huma.Register(s.api, op("list-dead-letters", http.MethodGet, "/v1/dead-letters", "List dead letters, oldest first", ScopeEnqueue, http.StatusOK), s.listDeadLetters)
	huma.Register(s.api, op("get-dead-letter", http.MethodGet, "/v1/dead-letters/{id}", "A dead letter", ScopeEnqueue, http.StatusOK, 404), s.getDeadLetter)
	huma.Register(s.api, op("requeue-dead-letter", http.MethodPost, "/v1/dead-letters/{id}/requeue", "Enqueue a dead letter again and remove it", ScopeAdmin, http.StatusOK, 404, 409), s.requeueDeadLetter)
	huma.Register(s.api, op("purge-dead-letter", http.MethodDelete, "/v1/dead-letters/{id}", "Remove a dead letter", ScopeAdmin, http.StatusNoContent, 404), s.purgeDeadLetter)

	pg := op("purge", http.MethodPost, "/v1/purges", "Recall a sender's indexed messages as a job", ScopeEnqueue, http.StatusCreated)
	pg.Description = "Finds the sender's messages in the message index (fed by the callback receiver) and recalls them as one job, 10 messages per call. 200 with the counts only for dry_run or when none match."
	pg.Responses = map[string]*huma.Response{"200": s.jsonResponse("A dry run, or no message matched: the counts, no job.", PurgeResult{})}
	huma.Register(s.api, pg, s.purge)

	cb := op("tencent-callback", http.MethodPost, "/v1/callbacks/tencent", "Receive a Tencent webhook", "", http.StatusOK, 403, 404)
	cb.Description = "Tencent's callback URL: authenticated by SdkAppid and, with a callback token, by RequestTime and Sign (not by a bearer token). Group.CallbackAfterSendMsg is recorded in the message index before OK is answered; other commands are answered OK and counted."
	cb.Security = nil
	cb.MaxBodyBytes = MaxOperationBody
	huma.Register(s.api, cb, s.receiveCallback)

	// A parameter that fails its schema is bad input like any other: 400
	// (see unprocessableAs400), so 422 is not among the answers.
	for _, item := range s.api.OpenAPI().Paths {
		for _, o := range []*huma.Operation{item.Get, item.Post, item.Delete} {
			if o != nil {
				delete(o.Responses, "422")
			}
		}
	}
}

// payloads are the request bodies of the enqueue operations.
var payloads = map[string]any{bulk.OpClear: tasks.Clear{}, bulk.OpRecall: tasks.Recall{}, bulk.OpModify: tasks.Modify{}}

// schemaOf returns the schema of v's type, registered in the description.
func (s *Server) schemaOf(v any) *huma.Schema {
	return s.api.OpenAPI().Components.Schemas.Schema(reflect.TypeOf(v), true, "")
}

// jsonResponse documents an extra JSON response of v's type.
func (s *Server) jsonResponse(desc string, v any) *huma.Response {
	return &huma.Response{Description: desc, Content: map[string]*huma.MediaType{"application/json": {Schema: s.schemaOf(v)}}}
}
