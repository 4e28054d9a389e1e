package api_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/api"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/testenv"
)

const (
	callbackApp   = 1400000042
	callbackToken = "callback-token-for-tests"
)

// withCallbacks enables the receiver on the rig's Redis.
func withCallbacks(r *testenv.RedisDB, t *testing.T) func(*api.Config) {
	return func(c *api.Config) {
		c.Callbacks = &api.Callbacks{SDKAppID: callbackApp, Token: callbackToken, Index: msgindex.New(r.Client(t), 0)}
	}
}

// callbackPath is Tencent's query for a callback sent at t, signed with token.
func callbackPath(app uint64, token string, at time.Time) string {
	rt := strconv.FormatInt(at.Unix(), 10)
	q := url.Values{"SdkAppid": {strconv.FormatUint(app, 10)}, "CallbackCommand": {api.CommandAfterSend}, "contenttype": {"json"},
		"ClientIP": {"127.0.0.1"}, "OptPlatform": {"RESTAPI"}, "RequestTime": {rt}, "Sign": {chatapi.CallbackSign(token, rt)}}
	return "/v1/callbacks/tencent?" + q.Encode()
}

func afterSendBody(group, from string, seq uint64, at time.Time) string {
	return fmt.Sprintf(`{"CallbackCommand":%q,"GroupId":%q,"Type":"Public","From_Account":%q,"Operator_Account":"","Random":1,"MsgSeq":%d,"MsgTime":%d,"OnlineOnlyFlag":0,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"buy now"}}],"CloudCustomData":"","EventTime":%d}`,
		api.CommandAfterSend, group, from, seq, at.Unix(), at.UnixMilli())
}

func TestCallbacks(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	g := newRig(t, func(c *api.Config) { c.Redis = r.ConnOpt() }, withCallbacks(r, t))
	ix := msgindex.New(r.Client(t), 0)
	now := time.Now()
	indexed := func() int {
		t.Helper()
		ms, err := ix.Find(context.Background(), msgindex.Query{Sender: "spammer"})
		if err != nil {
			t.Fatal(err)
		}
		return len(ms)
	}
	ok := func(p reply) {
		t.Helper()
		var a api.CallbackAnswer
		p.json(t, &a)
		if p.status != 200 || a != (api.CallbackAnswer{ActionStatus: "OK"}) {
			t.Fatalf("callback answer %d %s, want OK", p.status, p.body)
		}
	}
	ok(g.post(callbackPath(callbackApp, callbackToken, now), "", afterSendBody("@TGS#cb", "spammer", 7, now)))
	ok(g.post(callbackPath(callbackApp, callbackToken, now), "", afterSendBody("@TGS#cb", "spammer", 7, now))) // again: idempotent
	if n := indexed(); n != 1 {
		t.Fatalf("%d messages indexed after a callback and its repeat, want 1", n)
	}
	for _, tc := range []struct {
		what, path string
		status     int
	}{
		{"forged", strings.Replace(callbackPath(callbackApp, callbackToken, now), "Sign=", "Sign=0", 1), 401},
		{"signed with another token", callbackPath(callbackApp, "another-token", now), 401},
		{"stale", callbackPath(callbackApp, callbackToken, now.Add(-2*time.Minute)), 401},
		{"from the future", callbackPath(callbackApp, callbackToken, now.Add(2*time.Minute)), 401},
		{"of another app", callbackPath(1400000099, callbackToken, now), 403},
	} {
		p := g.post(tc.path, "", afterSendBody("@TGS#cb", "spammer", 8, now))
		if p.status != tc.status {
			t.Errorf("a %s callback: %d, want %d", tc.what, p.status, tc.status)
			continue
		}
		p.problem(t)
	}
	if n := indexed(); n != 1 {
		t.Fatalf("%d messages indexed after refused callbacks, want still 1", n)
	}
	// Another command is answered OK and not indexed; a bad body is 400.
	ok(g.post(callbackPath(callbackApp, callbackToken, now), "", `{"CallbackCommand":"Group.CallbackAfterNewMemberJoin","GroupId":"@TGS#cb"}`))
	if p := g.post(callbackPath(callbackApp, callbackToken, now), "", `{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#cb","From_Account":"spammer","MsgTime":1}`); p.status != 400 {
		t.Errorf("an after-send callback without MsgSeq: %d, want 400", p.status)
	}
	if n := indexed(); n != 1 {
		t.Fatalf("%d messages indexed, want still 1", n)
	}
	if got := counterValue(t, g.metrics, "timq_api_requests_total", "POST /v1/callbacks/tencent", "401"); got != 4 {
		t.Errorf("refused callbacks counted %v, want 4", got)
	}
	// With Redis down the receiver answers an error, never OK: Tencent's
	// retry (when enabled) can deliver the message later.
	down := newRig(t, func(c *api.Config) { c.Redis = asynq.RedisClientOpt{Addr: "127.0.0.1:1"} }, func(c *api.Config) {
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		c.Callbacks = &api.Callbacks{SDKAppID: callbackApp, Token: callbackToken, Index: msgindex.New(rdb, 0)}
	})
	if p := down.post(callbackPath(callbackApp, callbackToken, now), "", afterSendBody("@TGS#cb", "spammer", 9, now)); p.status != 503 {
		t.Errorf("a callback with Redis down: %d, want 503", p.status)
	}
	// Without Callbacks the route answers 404.
	plain := newRig(t)
	if p := plain.post(callbackPath(callbackApp, callbackToken, now), "", afterSendBody("@TGS#cb", "spammer", 9, now)); p.status != 404 {
		t.Errorf("a callback to a server without the receiver: %d, want 404", p.status)
	}
}

func TestPurgeOverHTTP(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	g := newRig(t, func(c *api.Config) { c.Redis = r.ConnOpt() }, withCallbacks(r, t))
	now := time.Now()
	for seq := uint64(1); seq <= 23; seq++ {
		from := "spammer"
		if seq > 21 {
			from = "alice"
		}
		group := "@TGS#pa"
		if seq%2 == 0 {
			group = "@TGS#pb"
		}
		if p := g.post(callbackPath(callbackApp, callbackToken, now), "", afterSendBody(group, from, seq, now)); p.status != 200 {
			t.Fatalf("callback %d: %d %s", seq, p.status, p.body)
		}
	}
	var dry api.PurgeResult
	p := g.post("/v1/purges", enqueueToken, `{"sender":"spammer","dry_run":true}`)
	p.json(t, &dry)
	if p.status != 200 || dry.Messages != 21 || dry.PerGroup["@TGS#pa"] != 11 || dry.PerGroup["@TGS#pb"] != 10 || dry.Job != nil {
		t.Fatalf("dry run: %d %s", p.status, p.body)
	}
	var res api.PurgeResult
	p = g.post("/v1/purges", enqueueToken, fmt.Sprintf(`{"sender":"spammer","groups":["@TGS#pa"],"since":%q,"reason":"spam"}`, now.Add(-time.Minute).UTC().Format(time.RFC3339)))
	p.json(t, &res)
	// 11 messages of one group: recalls of 10 and 1.
	if p.status != 201 || res.Messages != 11 || res.Job == nil || res.Job.Counts.Total != 2 || res.Job.RecallMessages.Total != 11 {
		t.Fatalf("purge: %d %s", p.status, p.body)
	}
	if p := g.post("/v1/purges", enqueueToken, fmt.Sprintf(`{"sender":"spammer","since":%q,"until":%q}`, now.UTC().Format(time.RFC3339), now.Add(-time.Hour).UTC().Format(time.RFC3339))); p.status != 400 {
		t.Errorf("until before since: %d", p.status)
	}
}
