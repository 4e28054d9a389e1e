package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/dashboard"
	"github.com/timq/timq/tasks"
)

// TestNoSecretAnywhere runs a fault-injected job (rate limits, UserSig
// refusals, 502 pages, and answers that quote the request URL with its
// UserSig back), then searches every log line, every Redis key and value,
// and every answer of the dashboard's APIs for the secret key and for each
// UserSig the worker sent, and finds none.
func TestNoSecretAnywhere(t *testing.T) {
	t.Parallel()
	e := runHistory(t)
	sigs := e.rec.Sigs()
	if len(sigs) < 2 {
		t.Fatalf("saw %d UserSigs; the 70001/70052 faults should have made the worker sign again", len(sigs))
	}
	needles := map[string]string{"the secret key": e.emu.SecretKey}
	for i, s := range sigs {
		needles[fmt.Sprintf("UserSig %d", i)] = s
		needles[fmt.Sprintf("UserSig %d (URL-escaped)", i)] = url.QueryEscape(s)
	}
	check := func(where, text string) {
		t.Helper()
		for name, n := range needles {
			if strings.Contains(text, n) {
				t.Errorf("%s contains %s", where, name)
			}
		}
	}

	// The echo answers did reach the worker: their dead letters exist.
	entries, err := e.store.List(context.Background(), dlqAll)
	if err != nil {
		t.Fatal(err)
	}
	var echoed int
	for _, en := range entries {
		if strings.Contains(string(en.Payload), "ECHO") {
			echoed++
			if !strings.Contains(en.Info, "REDACTED") && !strings.Contains(en.Info, "502") {
				t.Errorf("echo dead letter info %q: want the quoted URL redacted", en.Info)
			}
		}
	}
	if echoed != 2 {
		t.Errorf("%d dead letters for the echo groups, want 2", echoed)
	}

	// 1. Every log line.
	logs := e.logs.String()
	if strings.Count(logs, "\n") < 50 {
		t.Fatalf("only %d log lines: the worker logs each call at debug", strings.Count(logs, "\n"))
	}
	for i, line := range strings.Split(logs, "\n") {
		check(fmt.Sprintf("log line %d", i+1), line)
	}

	// 2. Every Redis key and value.
	rdb := e.redis.Client(t)
	n := 0
	for key, val := range dumpRedis(t, rdb) {
		n++
		check("Redis key name "+key, key)
		check("Redis key "+key, val)
	}
	if n < 10 {
		t.Fatalf("only %d Redis keys: the job left no history", n)
	}

	// 3. Every answer of the dashboard's APIs.
	creds := [2]string{"ops", "pw-" + t.Name()}
	base := serve(t, e.redis, "/", dashboard.Auth{User: creds[0], Password: creds[1]}, true)
	paths := []string{"/api/queues", "/api/servers", "/api/redis_info", "/api/queue_stats", "/dlq/api/entries?limit=1000", "/dlq/"}
	for _, q := range tasks.Queues() {
		for _, state := range []string{"pending", "active", "scheduled", "retry", "archived", "completed"} {
			paths = append(paths, "/api/queues/"+q+"/"+state+"_tasks?page=1&page_size=1000")
		}
		paths = append(paths, "/api/queues/"+q)
	}
	for _, en := range entries {
		paths = append(paths, "/dlq/api/entries/"+en.ID)
	}
	archivedSeen := 0
	for _, p := range paths {
		code, body := do(t, "GET", base+p, &creds, nil)
		if code != 200 {
			t.Errorf("GET %s = %d %s", p, code, body)
			continue
		}
		check("dashboard answer "+p, body)
		if strings.Contains(p, "archived_tasks") {
			var page struct {
				Tasks []struct {
					ID    string `json:"id"`
					Queue string `json:"queue"`
				} `json:"tasks"`
			}
			if err := json.Unmarshal([]byte(body), &page); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			for _, task := range page.Tasks {
				archivedSeen++
				tp := "/api/queues/" + task.Queue + "/tasks/" + task.ID
				code, body := do(t, "GET", base+tp, &creds, nil)
				if code != 200 {
					t.Errorf("GET %s = %d", tp, code)
				}
				check("dashboard answer "+tp, body)
			}
		}
	}
	if archivedSeen < 3 {
		t.Errorf("the dashboard listed %d archived tasks, want at least the 3 that fail for good", archivedSeen)
	}
}

// dumpRedis returns every key of the database with a dump of its value,
// read by type.
func dumpRedis(t *testing.T, rdb *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := rdb.Scan(ctx, 0, "*", 500).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		typ, err := rdb.Type(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		var v any
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, key).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, key).Result()
		case "list":
			v, err = rdb.LRange(ctx, key, 0, -1).Result()
		case "set":
			v, err = rdb.SMembers(ctx, key).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, key, 0, -1).Result()
		case "stream":
			v, err = rdb.XRange(ctx, key, "-", "+").Result()
		case "none":
			continue // expired meanwhile
		default:
			t.Fatalf("key %s has type %s, which the scan cannot read", key, typ)
		}
		if err != nil && err != redis.Nil {
			t.Fatalf("read %s (%s): %v", key, typ, err)
		}
		out[key] = fmt.Sprintf("%v", v)
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
