package cli_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/worker"
)

// jobOf parses `timq bulk --json` or `timq jobs show --json` output.
type jobJSON struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	State  string `json:"state"`
	Counts struct {
		Total, Waiting, Applied, Cancelled int64
		DeadLettered                       int64 `json:"dead_lettered"`
	} `json:"counts"`
	Retention string `json:"retention"`
	Notice    *struct {
		State string `json:"state"`
	} `json:"notice"`
}

func TestBulkJobRetentionAndNotice(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	file := writeBulkFile(t, `{"op":"clear","GroupId":"g1"}`+"\n")
	code, out, errOut := f.run(t, "", "bulk", "--json", "--retention", "2h", "--notify", "https://hooks.example.com/timq?token=t0ken", file)
	if code != 0 {
		t.Fatalf("bulk: exit %d, stderr %q", code, errOut)
	}
	var sum struct {
		Job jobJSON `json:"job"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("bulk --json: %v\n%s", err, out)
	}
	if sum.Job.Retention != "2h0m0s" || sum.Job.Notice == nil || sum.Job.Notice.State != "pending" {
		t.Fatalf("job = %+v, want a 2h retention and a pending notice", sum.Job)
	}
	if strings.Contains(out, "t0ken") {
		t.Errorf("the notice URL's token shows in the job: %s", out)
	}
	code, out, _ = f.run(t, "", "jobs", "show", sum.Job.ID)
	if code != 0 || !strings.Contains(out, "kept 2h0m0s after it ends") || !strings.Contains(out, "notice: pending after 0 attempts") {
		t.Errorf("jobs show: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bulk", "--notify", "ftp://example.com/", file}, "--notify: want an http or https URL"},
		{[]string{"bulk", "--notify", "https://u:secretpw@example.com/", file}, "--notify: user information is refused"},
		{[]string{"bulk", "--retention", "0", file}, "--retention: a job keeps its summary for at least 1s"},
		{[]string{"bulk", "--tasks", "--notify", "https://example.com/", file}, "--notify applies to jobs only"},
	} {
		code, _, errOut := f.run(t, "", tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "secretpw") {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

func TestBulkCreatesAJobThatTheJobsCommandsControl(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	file := writeBulkFile(t, `{"op":"clear","GroupId":"g1"}
{"op":"recall","GroupId":"g1","MsgSeqList":[{"MsgSeq":1},{"MsgSeq":2},{"MsgSeq":3},{"MsgSeq":4},{"MsgSeq":5},{"MsgSeq":6},{"MsgSeq":7},{"MsgSeq":8},{"MsgSeq":9},{"MsgSeq":10},{"MsgSeq":11}]}
{"op":"modify","GroupId":"g1","MsgSeq":3,"CloudCustomData":"x"}
`)
	code, out, errOut := f.run(t, "", "bulk", "--json", "--name", "cleanup", file)
	if code != 0 {
		t.Fatalf("bulk: exit %d, stderr %q", code, errOut)
	}
	var sum struct {
		Job jobJSON `json:"job"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("bulk --json: %v\n%s", err, out)
	}
	id := sum.Job.ID
	// The recall of 11 messages is two operations.
	if id == "" || sum.Job.Name != "cleanup" || sum.Job.State != "queued" || sum.Job.Counts.Total != 4 || sum.Job.Counts.Waiting != 4 {
		t.Fatalf("bulk job = %+v, want a queued job named cleanup with 4 operations waiting", sum.Job)
	}
	if got := f.sizes(t); len(got) != 0 {
		t.Fatalf("a job with no worker put tasks into asynq: %v", got)
	}
	if code, out, _ := f.run(t, "", "jobs", "ls"); code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "cleanup") {
		t.Fatalf("jobs ls: exit %d\n%s", code, out)
	}
	show := func() jobJSON {
		t.Helper()
		code, out, errOut := f.run(t, "", "jobs", "show", id, "--json")
		var j jobJSON
		if code != 0 || json.Unmarshal([]byte(out), &j) != nil {
			t.Fatalf("jobs show: exit %d, %q %q", code, out, errOut)
		}
		return j
	}
	for _, step := range []struct{ cmd, state string }{{"pause", "paused"}, {"resume", "running"}, {"pause", "paused"}, {"cancel", "cancelled"}} {
		if code, _, errOut := f.run(t, "", "jobs", step.cmd, id); code != 0 {
			t.Fatalf("jobs %s: exit %d, %q", step.cmd, code, errOut)
		}
		if j := show(); j.State != step.state {
			t.Fatalf("after jobs %s: state %s, want %s", step.cmd, j.State, step.state)
		}
	}
	if j := show(); j.Counts.Cancelled != 4 || j.Counts.Waiting != 0 {
		t.Fatalf("cancelled job counts %+v, want all 4 cancelled", j.Counts)
	}
	code, _, errOut = f.run(t, "", "jobs", "cancel", id)
	if code != 1 || !strings.Contains(errOut, "has ended (cancelled): nothing to cancel") {
		t.Fatalf("second cancel: exit %d, %q", code, errOut)
	}
	code, _, errOut = f.run(t, "", "jobs", "show", "nosuchjob")
	if code != 1 || !strings.Contains(errOut, "no such job") {
		t.Fatalf("show of an unknown job: exit %d, %q", code, errOut)
	}
	for _, args := range [][]string{{"jobs"}, {"jobs", "show"}, {"jobs", "frob", id}, {"bulk", "--no-dedup", file}, {"bulk", "--tasks", "--wait", file}, {"bulk", "--priority", "0", file}} {
		if code, _, _ := f.run(t, "", args...); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
}

func TestJobFailuresRoundTripThroughBulk(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	emu := testenv.StartEmulator(t, sim.Config{})
	if err := emu.CreateGroup("rt", sim.GroupPublic); err != nil {
		t.Fatal(err)
	}
	if _, _, err := emu.AddMessages("rt", "", 3); err != nil {
		t.Fatal(err)
	}
	log, logs := testenv.Logger(t)
	t.Cleanup(logs.Stop)
	w, err := worker.New(worker.Config{
		Redis: f.rdb.ConnOpt(), Logger: log, RetryBase: 10 * time.Millisecond, RetryCap: 50 * time.Millisecond,
		API: worker.API{SDKAppID: emu.SDKAppID, SecretKey: emu.SecretKey, BaseURL: emu.URL, Timeout: 2 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Shutdown)
	// Messages 7 and 8 do not exist yet: their modifies fail for good.
	file := writeBulkFile(t, `{"op":"modify","GroupId":"rt","MsgSeq":1,"CloudCustomData":"a"}
{"op":"modify","GroupId":"rt","MsgSeq":7,"CloudCustomData":"b"}
{"op":"modify","GroupId":"rt","MsgSeq":8,"CloudCustomData":"c"}
`)
	code, out, errOut := f.run(t, "", "bulk", "--wait", file)
	if code != 1 || !strings.Contains(errOut, "2 operations dead-lettered") || !strings.Contains(out, "applied 1, dead-lettered 2") {
		t.Fatalf("bulk --wait: exit %d\nstdout %s\nstderr %s", code, out, errOut)
	}
	id := strings.Fields(out[strings.Index(out, "job:"):])[1]
	code, failures, errOut := f.run(t, "", "jobs", "failures", id)
	if code != 0 || strings.Count(failures, "\n") != 2 || !strings.Contains(failures, `"MsgSeq":7`) || !strings.Contains(failures, `"op":"modify"`) {
		t.Fatalf("jobs failures: exit %d, %q %q", code, failures, errOut)
	}
	if _, _, err := emu.AddMessages("rt", "", 5); err != nil { // now 7 and 8 exist
		t.Fatal(err)
	}
	code, out, errOut = f.run(t, failures, "bulk", "--wait", "--json", "-")
	if code != 0 {
		t.Fatalf("bulk of the failures: exit %d, %q %q", code, out, errOut)
	}
	for _, seq := range []uint64{7, 8} {
		if m, _ := emu.Message("rt", "", seq); m.Modified != 1 {
			t.Fatalf("message %d modified %d times after the retry, want once", seq, m.Modified)
		}
	}
}
