package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/dashboard"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

type page struct {
	Total   int64 `json:"total"`
	Offset  int   `json:"offset"`
	Limit   int   `json:"limit"`
	Entries []struct {
		ID      string          `json:"id"`
		Code    int             `json:"code"`
		Summary string          `json:"summary"`
		Payload json.RawMessage `json:"payload"`
	} `json:"entries"`
}

// seedDLQ writes n dead letters, every third with code 10010, the others
// 10004, one second apart, and returns their IDs oldest first.
func seedDLQ(t *testing.T, r *testenv.RedisDB, n int) []string {
	t.Helper()
	s := dlq.New(r.Client(t))
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var ids []string
	for i := range n {
		code := 10004
		if i%3 == 0 {
			code = 10010
		}
		id := fmt.Sprintf("task-%02d/%d", i, 100+i) // recall entry IDs hold a slash
		payload := fmt.Sprintf(`{"GroupId":"@TGS#g%d","MsgSeqList":[{"MsgSeq":%d}]}`, i, 100+i)
		if err := s.Add(context.Background(), dlq.Entry{
			ID: id, Type: tasks.TypeRecall, Queue: tasks.QueueRecall, TaskID: fmt.Sprintf("task-%02d", i),
			Payload: json.RawMessage(payload), Code: code, Info: "RetCode", Reason: dlq.ReasonPermanent,
			Attempts: 1, FailedAt: base.Add(time.Duration(i) * time.Second), GroupId: fmt.Sprintf("@TGS#g%d", i),
		}); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestDeadLetterAPI(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	ids := seedDLQ(t, r, 7)
	creds := [2]string{"ops", "pw"}
	base := serve(t, r, "/", dashboard.Auth{User: "ops", Password: "pw"}, false)

	if code, _ := do(t, "GET", base+"/dlq/api/entries", nil, nil); code != 401 {
		t.Fatalf("dead-letter API without credentials: %d, want 401", code)
	}
	if code, _ := do(t, "GET", base+"/dlq/", nil, nil); code != 401 {
		t.Fatalf("dead-letter page without credentials: %d, want 401", code)
	}

	var p page
	code, body := do(t, "GET", base+"/dlq/api/entries?offset=2&limit=3", &creds, nil)
	if code != 200 {
		t.Fatalf("GET entries: %d %s", code, body)
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	if p.Total != 7 || p.Offset != 2 || p.Limit != 3 || len(p.Entries) != 3 {
		t.Fatalf("page = total %d offset %d limit %d, %d entries; want 7, 2, 3, 3", p.Total, p.Offset, p.Limit, len(p.Entries))
	}
	for i, e := range p.Entries {
		if e.ID != ids[2+i] {
			t.Errorf("entry %d = %s, want %s (oldest first)", i, e.ID, ids[2+i])
		}
		if want := fmt.Sprintf("recall @TGS#g%d seq %d", 2+i, 102+i); e.Summary != want {
			t.Errorf("summary %q, want %q", e.Summary, want)
		}
	}

	code, body = do(t, "GET", base+"/dlq/api/entries?code=10010", &creds, nil)
	p = page{}
	if err := json.Unmarshal([]byte(body), &p); code != 200 || err != nil {
		t.Fatalf("GET ?code=10010: %d %v", code, err)
	}
	if p.Total != 3 || len(p.Entries) != 3 {
		t.Errorf("code 10010: total %d, %d entries; want 3, 3", p.Total, len(p.Entries))
	}

	code, body = do(t, "GET", base+"/dlq/api/entries/"+ids[4], &creds, nil)
	if code != 200 || !strings.Contains(body, `"id": "`+ids[4]+`"`) {
		t.Errorf("GET one entry (id with a slash): %d %s", code, body)
	}
	if code, _ := do(t, "GET", base+"/dlq/api/entries/nope", &creds, nil); code != 404 {
		t.Errorf("GET unknown entry: %d, want 404", code)
	}
	for _, q := range []string{"limit=0", "limit=1001", "offset=-1", "code=x"} {
		if code, _ := do(t, "GET", base+"/dlq/api/entries?"+q, &creds, nil); code != 400 {
			t.Errorf("GET ?%s: %d, want 400", q, code)
		}
	}

	code, body = do(t, "GET", base+"/dlq/?limit=5", &creds, nil)
	if code != 200 || !strings.Contains(body, "7 held") || !strings.Contains(body, "recall @TGS#g0 seq 100") ||
		!strings.Contains(body, "older &rarr;") || strings.Contains(body, "recall @TGS#g5 seq") {
		t.Errorf("GET /dlq/?limit=5: %d\n%s", code, body)
	}
	if code, _ := do(t, "GET", base+"/dlq", &creds, nil); code != 200 {
		t.Errorf("GET /dlq (redirected): %d", code)
	}
}

func TestReadOnlyAndCrossSiteRequests(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	client := asynq.NewClient(r.ConnOpt())
	t.Cleanup(func() { client.Close() })
	task, err := tasks.NewTask(tasks.Clear{GroupId: "@TGS#x"})
	if err != nil {
		t.Fatal(err)
	}
	info, err := client.Enqueue(task)
	if err != nil {
		t.Fatal(err)
	}
	creds := [2]string{"ops", "pw"}
	auth := dashboard.Auth{User: "ops", Password: "pw"}
	del := "/api/queues/" + tasks.QueueClear + "/pending_tasks/" + info.ID

	ro := serve(t, r, "/", auth, true)
	if code, _ := do(t, "DELETE", ro+del, &creds, nil); code != 405 {
		t.Errorf("DELETE in read-only mode: %d, want 405", code)
	}
	if code, _ := do(t, "GET", ro+"/api/queues", &creds, nil); code != 200 {
		t.Errorf("GET in read-only mode: %d, want 200", code)
	}

	rw := serve(t, r, "/", auth, false)
	if code, _ := do(t, "DELETE", rw+del, &creds, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}); code != 403 {
		t.Errorf("cross-site DELETE: %d, want 403", code)
	}
	if code, _ := do(t, "DELETE", rw+del, nil, nil); code != 401 {
		t.Errorf("DELETE without credentials: %d, want 401", code)
	}
	insp := asynq.NewInspector(r.ConnOpt())
	t.Cleanup(func() { insp.Close() })
	if _, err := insp.GetTaskInfo(tasks.QueueClear, info.ID); err != nil {
		t.Fatalf("the refused requests deleted the task: %v", err)
	}
	if code, body := do(t, "DELETE", rw+del, &creds, map[string]string{"Sec-Fetch-Site": "same-origin"}); code != 204 && code != 200 {
		t.Errorf("same-origin DELETE with credentials: %d %s", code, body)
	}
	if _, err := insp.GetTaskInfo(tasks.QueueClear, info.ID); err == nil {
		t.Error("the allowed DELETE left the task")
	}
}

func TestRootPath(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	seedDLQ(t, r, 1)
	base := serve(t, r, "/dashboard", dashboard.Auth{Token: "tok"}, true)
	bearer := map[string]string{"Authorization": "Bearer tok"}
	for path, want := range map[string]string{
		"/":                  "<html",
		"/api/queues":        "queues",
		"/dlq/api/entries":   `"total": 1`,
		"/dlq/":              "1 held",
		"/queues/timq-clear": "<html",
	} {
		code, body := do(t, "GET", base+path, nil, bearer)
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET /dashboard%s: %d, want 200 with %q; got %.200s", path, code, want, body)
		}
	}
	if code, _ := do(t, "GET", base+"/api/queues", nil, nil); code != 401 {
		t.Errorf("without the token: %d, want 401", code)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	for name, cfg := range map[string]dashboard.Config{
		"no Redis":        {},
		"half basic auth": {Redis: r.ConnOpt(), Auth: dashboard.Auth{User: "u"}},
		"relative root":   {Redis: r.ConnOpt(), RootPath: "dash"},
	} {
		if d, err := dashboard.New(cfg); err == nil {
			d.Close()
			t.Errorf("%s: New accepted it", name)
		}
	}
}

// TestNewRefusesABadRootPath: a RootPath http.ServeMux cannot route (it
// panicked on these before) or asynqmon's router would read as a pattern
// is refused with an error naming RootPath, not a panic.
func TestNewRefusesABadRootPath(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	const (
		unclean = `must be a clean path, without "//", "." or ".." segments, such as /timq`
		chars   = `may hold only ASCII letters, digits and "/", "-", ".", "_", "~"`
	)
	for _, tc := range []struct{ root, want string }{
		{"//", unclean},
		{"/x/../y", unclean},
		{"/a b/", chars},
		{"///", unclean},
		{"/monitoring//", unclean},
		{"/./x", unclean},
		{"/x/.", unclean},
		{"/..", unclean},
		{"/{id}", chars},
		{"/{$}", chars},
		{"/a\x00b", chars},
		{"/a\nb", chars},
		{"/ä", chars},
		{"/a%2Fb", chars},
		{"dash", "must start with /"},
		{" /", "must start with /"},
	} {
		want := fmt.Sprintf("dashboard: RootPath %q: %s", tc.root, tc.want)
		d, err := dashboard.New(dashboard.Config{Redis: r.ConnOpt(), RootPath: tc.root})
		if err == nil {
			d.Close()
			t.Errorf("RootPath %q: New accepted it", tc.root)
			continue
		}
		if err.Error() != want {
			t.Errorf("RootPath %q: error %q, want %q", tc.root, err, want)
		}
		if err := dashboard.CheckRootPath(tc.root); err == nil || err.Error() != tc.want {
			t.Errorf("CheckRootPath(%q) = %v, want %q", tc.root, err, tc.want)
		}
	}
}

// TestNewAcceptsACleanRootPath serves the dead-letter API under each root
// and reports the root without its trailing slash.
func TestNewAcceptsACleanRootPath(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	seedDLQ(t, r, 1)
	bearer := map[string]string{"Authorization": "Bearer tok"}
	for _, tc := range []struct{ root, want string }{
		{"", ""},
		{"/", ""},
		{"/monitoring", "/monitoring"},
		{"/monitoring/", "/monitoring"},
		{"/ops/timq-1.2_~", "/ops/timq-1.2_~"},
		{"/...", "/..."},
	} {
		if err := dashboard.CheckRootPath(tc.root); err != nil {
			t.Errorf("CheckRootPath(%q) = %v, want nil", tc.root, err)
		}
		d, err := dashboard.New(dashboard.Config{Redis: r.ConnOpt(), RootPath: tc.root, Auth: dashboard.Auth{Token: "tok"}})
		if err != nil {
			t.Errorf("RootPath %q: %v", tc.root, err)
			continue
		}
		if got := d.RootPath(); got != tc.want {
			t.Errorf("RootPath %q: Dashboard.RootPath() = %q, want %q", tc.root, got, tc.want)
		}
		srv := httptest.NewServer(d)
		if code, body := do(t, "GET", srv.URL+tc.want+"/dlq/api/entries", nil, bearer); code != 200 || !strings.Contains(body, `"total": 1`) {
			t.Errorf("RootPath %q: GET %s/dlq/api/entries: %d %.200s, want 200 with one entry", tc.root, tc.want, code, body)
		}
		srv.Close()
		d.Close()
	}
}

// A dead letter whose payload is not UTF-8 (a foreign producer's) leaves the
// API's answers valid JSON for a strict decoder.
func TestDeadLetterAPIStaysValidJSONWithNonUTF8Payload(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	if err := dlq.New(r.Client(t)).Add(context.Background(), dlq.Entry{
		ID: "foreign", Type: tasks.TypeClear, Queue: "default", TaskID: "foreign",
		Payload: json.RawMessage("{\"GroupId\":\"g-f-\xff\xfe\"}"), Reason: dlq.ReasonInvalidPayload,
		Info: "GroupId: is not valid UTF-8", GroupId: "g-f-\xff\xfe",
	}); err != nil {
		t.Fatal(err)
	}
	creds := [2]string{"ops", "pw"}
	base := serve(t, r, "/", dashboard.Auth{User: "ops", Password: "pw"}, false)
	for _, path := range []string{"/dlq/api/entries", "/dlq/api/entries/foreign"} {
		code, body := do(t, "GET", base+path, &creds, nil)
		if code != 200 || !utf8.ValidString(body) || !json.Valid([]byte(body)) {
			t.Fatalf("GET %s: %d, valid UTF-8 %v, valid JSON %v: %q", path, code, utf8.ValidString(body), json.Valid([]byte(body)), body)
		}
		if !strings.Contains(strings.ReplaceAll(body, " ", ""), `"payload_encoding":"base64"`) {
			t.Fatalf("GET %s: %s; want payload_encoding base64", path, body)
		}
	}
}
