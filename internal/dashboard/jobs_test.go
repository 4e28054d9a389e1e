package dashboard_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/timq/timq/internal/dashboard"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// seedJob stores a job of n modifies and returns its ID.
func seedJob(t *testing.T, r *testenv.RedisDB, name string, n int) string {
	t.Helper()
	w, err := jobs.NewStore(r.Client(t), 0).Create(jobs.Spec{Name: name, Weight: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := w.Add(context.Background(), tasks.Modify{GroupId: "@TGS#jobs", MsgSeq: uint64(i + 1), MsgBody: tasks.TextBody("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

func TestJobsPagesAndControls(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	store := jobs.NewStore(r.Client(t), 0)
	id := seedJob(t, r, "spam <cleanup>", 7)
	creds := [2]string{"ops", "pw"}
	auth := dashboard.Auth{User: "ops", Password: "pw"}
	same := map[string]string{"Sec-Fetch-Site": "same-origin"}

	rw := serve(t, r, "/ops", auth, false)
	code, body := do(t, "GET", rw+"/jobs/", &creds, nil)
	if code != 200 || !strings.Contains(body, id) || !strings.Contains(body, "spam &lt;cleanup&gt;") || strings.Contains(body, "<cleanup>") {
		t.Fatalf("jobs page: %d, want the job with its name escaped:\n%s", code, body)
	}
	if code, _ := do(t, "GET", rw+"/jobs/", nil, nil); code != 401 {
		t.Errorf("jobs page without credentials: %d, want 401", code)
	}
	var list struct{ Jobs []jobs.Job }
	code, body = do(t, "GET", rw+"/jobs/api/jobs", &creds, nil)
	if err := json.Unmarshal([]byte(body), &list); code != 200 || err != nil || len(list.Jobs) != 1 || list.Jobs[0].Counts.Total != 7 {
		t.Fatalf("jobs JSON: %d %v %s", code, err, body)
	}
	if code, _ := do(t, "GET", rw+"/jobs/api/jobs/nosuchjob", &creds, nil); code != 404 {
		t.Errorf("unknown job's JSON: %d, want 404", code)
	}
	if code, _ := do(t, "GET", rw+"/jobs/nosuchjob", &creds, nil); code != 404 {
		t.Errorf("unknown job's page: %d, want 404", code)
	}
	code, body = do(t, "GET", rw+"/jobs/"+id, &creds, nil)
	if code != 200 || !strings.Contains(body, `id="pause"`) || !strings.Contains(body, `id="cancel"`) {
		t.Fatalf("job page: %d, want pause and cancel buttons:\n%s", code, body)
	}

	// The buttons' requests change the job in Redis; a cross-site one does not.
	if code, _ := do(t, "POST", rw+"/jobs/"+id+"/pause", &creds, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}); code != 403 {
		t.Errorf("cross-site pause: %d, want 403", code)
	}
	if j, _ := store.Get(context.Background(), id); j.State != jobs.StateQueued {
		t.Fatalf("after a refused pause the job is %s", j.State)
	}
	if code, body := do(t, "POST", rw+"/jobs/"+id+"/pause", &creds, same); code != 200 || !strings.Contains(body, "pause: done") {
		t.Errorf("pause: %d, want the job page after the redirect:\n%s", code, body)
	}
	if j, _ := store.Get(context.Background(), id); j.State != jobs.StatePaused {
		t.Fatalf("after pause the job is %s", j.State)
	}
	if code, _ := do(t, "POST", rw+"/jobs/"+id+"/resume", &creds, same); code != 200 {
		t.Errorf("resume: %d", code)
	}
	if j, _ := store.Get(context.Background(), id); j.State != jobs.StateRunning {
		t.Fatalf("after resume the job is %s", j.State)
	}
	if code, _ := do(t, "POST", rw+"/jobs/"+id+"/explode", &creds, same); code != 404 {
		t.Errorf("unknown action: %d, want 404", code)
	}
	if code, _ := do(t, "POST", rw+"/jobs/"+id+"/cancel", &creds, same); code != 200 {
		t.Errorf("cancel: %d", code)
	}
	j, _ := store.Get(context.Background(), id)
	if j.State != jobs.StateCancelled || j.Counts.Cancelled != 7 || !j.Finished {
		t.Fatalf("after cancel the job is %s %+v", j.State, j.Counts)
	}
	if code, _ := do(t, "POST", rw+"/jobs/"+id+"/cancel", &creds, same); code != 409 {
		t.Errorf("cancel of an ended job: %d, want 409", code)
	}
	if _, body := do(t, "GET", rw+"/jobs/"+id, &creds, nil); strings.Contains(body, `id="pause"`) {
		t.Error("an ended job's page offers buttons")
	}

	// Read-only: the same pages without buttons, and no way to change a job.
	other := seedJob(t, r, "second", 3)
	ro := serve(t, r, "/", auth, true)
	code, body = do(t, "GET", ro+"/jobs/"+other, &creds, nil)
	if code != 200 || strings.Contains(body, `id="pause"`) || strings.Contains(body, "<form") {
		t.Fatalf("read-only job page: %d, want no buttons:\n%s", code, body)
	}
	if code, _ := do(t, "POST", ro+"/jobs/"+other+"/cancel", &creds, same); code != 405 {
		t.Errorf("read-only cancel: %d, want 405", code)
	}
	if j, _ := store.Get(context.Background(), other); j.State != jobs.StateQueued {
		t.Fatalf("after a read-only cancel the job is %s", j.State)
	}
}

func TestJobPageShowsRecallMessagesAndNotice(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	w, err := jobs.NewStore(r.Client(t), 0).Create(jobs.Spec{Weight: 1, Notify: "https://hooks.example/x?token=hook-t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	rec := tasks.Recall{GroupId: "@TGS#jobs", MsgSeqList: []tasks.MsgSeqItem{{MsgSeq: 1}, {MsgSeq: 2}, {MsgSeq: 3}}}
	if err := w.Add(context.Background(), rec); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	base := serve(t, r, "", dashboard.Auth{}, true)
	code, body := do(t, "GET", base+"/jobs/"+w.ID(), nil, nil)
	if code != 200 || !strings.Contains(body, `<tr id="recall-messages"><td>recalled messages</td><td>3</td><td>0</td><td>0</td><td>0</td><td>3</td><td>0</td></tr>`) ||
		!strings.Contains(body, "Completion notice: pending after 0 attempts") {
		t.Fatalf("job page: %d, want 3 recall messages waiting and a pending notice:\n%s", code, body)
	}
	for _, path := range []string{"/jobs/" + w.ID(), "/jobs/api/jobs/" + w.ID(), "/jobs/"} {
		if _, body := do(t, "GET", base+path, nil, nil); strings.Contains(body, "hook-t0ken") {
			t.Errorf("%s shows the notice URL's token", path)
		}
	}
}
