package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// jobRig is a bundle with an enqueue client for jobs.
type jobRig struct {
	*bundle
	enq   *enqueue.Client
	store *enqueue.JobStore
}

func newJobRig(t *testing.T) *jobRig {
	t.Helper()
	b := setup(t, sim.Config{})
	enq := enqueue.New(b.redis.ConnOpt())
	t.Cleanup(func() { enq.Close() })
	store, err := enq.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	return &jobRig{bundle: b, enq: enq, store: store}
}

// job stores a job of ps and returns its ID.
func (r *jobRig) job(name string, weight int, ps ...tasks.Payload) string {
	r.t.Helper()
	w, err := r.enq.NewJob(enqueue.JobName(name), enqueue.JobWeight(weight))
	if err != nil {
		r.t.Fatal(err)
	}
	for _, p := range ps {
		if err := w.Add(context.Background(), p); err != nil {
			r.t.Fatal(err)
		}
	}
	j, err := w.Close(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	if j.State != enqueue.JobQueued || j.Counts.Total != int64(len(ps)) || j.Counts.Waiting != j.Counts.Total {
		r.t.Fatalf("new job = %+v, want queued with %d waiting", j, len(ps))
	}
	return w.ID()
}

func (r *jobRig) get(id string) enqueue.Job {
	r.t.Helper()
	j, err := r.store.Get(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return j
}

// waitJob waits until job id has ended and returns it.
func (r *jobRig) waitJob(id string, within time.Duration) enqueue.Job {
	r.t.Helper()
	var j enqueue.Job
	testenv.Eventually(r.t, within, "job "+id+" ended", func() (bool, string) {
		j = r.get(id)
		return j.Finished, fmt.Sprintf("%s %+v", j.State, j.Counts)
	})
	if c := j.Counts; c.Applied+c.DeadLettered+c.Cancelled != c.Total || c.Waiting != 0 || c.InFlight != 0 {
		r.t.Fatalf("ended job counts %+v do not add up", c)
	}
	return j
}

func modifies(group string, from, to uint64, text string) []tasks.Payload {
	var ps []tasks.Payload
	for s := from; s <= to; s++ {
		ps = append(ps, tasks.Modify{GroupId: group, MsgSeq: s, MsgBody: tasks.TextBody(text)})
	}
	return ps
}

func TestJobAppliesEveryOperationOnceAndReportsItsFailures(t *testing.T) {
	t.Parallel()
	r := newJobRig(t)
	r.group("job-mixed", sim.GroupPublic, 60)
	r.group("job-clear", sim.GroupPublic, 5)
	ops := modifies("job-mixed", 1, 30, "v2")
	for s := uint64(31); s <= 50; s++ {
		ops = append(ops, tasks.Recall{GroupId: "job-mixed", MsgSeqList: seqList(s)})
	}
	ops = append(ops, tasks.Clear{GroupId: "job-clear"})
	ops = append(ops, modifies("job-mixed", 1001, 1003, "nope")...) // no such messages: 10030
	// Two messages recalled and two missing: the operation is dead-lettered,
	// its messages counted one by one.
	ops = append(ops, tasks.Recall{GroupId: "job-mixed", MsgSeqList: seqList(51, 52, 2001, 2002)})
	id := r.job("mixed", 1, ops...)
	reg := prometheus.NewRegistry()
	r.cfg.Metrics = reg
	r.startWorker()
	j := r.waitJob(id, 60*time.Second)
	if j.State != enqueue.JobDone || j.Counts.Applied != 51 || j.Counts.DeadLettered != 4 || j.Counts.Cancelled != 0 {
		t.Fatalf("job = %s %+v, want done with 51 applied and 4 dead-lettered", j.State, j.Counts)
	}
	if c := j.ByType[tasks.TypeRecall]; c.Total != 21 || c.Applied != 20 || c.DeadLettered != 1 {
		t.Fatalf("recall counts %+v, want 20 of 21 applied, 1 dead-lettered", c)
	}
	if m := j.RecallMessages; m == nil || *m != (enqueue.JobCounts{Total: 24, Applied: 22, DeadLettered: 2}) {
		t.Fatalf("recall messages %+v, want 22 of 24 recalled and 2 dead-lettered", m)
	}
	for _, s := range []uint64{51, 52} {
		if !r.msg("job-mixed", s).Recalled {
			t.Fatalf("seq %d not recalled", s)
		}
	}
	for s := uint64(1); s <= 30; s++ {
		if m := r.msg("job-mixed", s); m.Modified != 1 {
			t.Fatalf("seq %d modified %d times, want once", s, m.Modified)
		}
	}
	for s := uint64(31); s <= 50; s++ {
		if !r.msg("job-mixed", s).Recalled {
			t.Fatalf("seq %d not recalled", s)
		}
	}
	if !r.msg("job-clear", 5).Cleared {
		t.Fatal("job-clear not cleared")
	}
	// Each operation is counted once in the metrics, as in the job.
	for _, c := range []struct {
		typ, outcome string
		want         float64
	}{{tasks.TypeModify, "applied", 30}, {tasks.TypeRecall, "applied", 20}, {tasks.TypeClear, "applied", 1}, {tasks.TypeModify, "dead", 3}, {tasks.TypeRecall, "dead", 1}} {
		if got := metricSum(t, reg, "timq_job_operations_total", "task_type", c.typ, "outcome", c.outcome); got != c.want {
			t.Errorf("timq_job_operations_total{%s,%s} = %v, want %v", c.typ, c.outcome, got, c.want)
		}
	}
	if got := metricSum(t, reg, "timq_interactive_enqueue_to_call_seconds"); got != 0 {
		t.Errorf("%v job operations counted as interactive calls", got)
	}
	fs, err := r.store.Failures(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 4 {
		t.Fatalf("failures = %+v, want 4", fs)
	}
	for _, f := range fs {
		if f.Op == "recall" {
			// Only the messages that failed: a retry redoes no recalled one.
			if p, err := tasks.ParseRecall(f.Payload); err != nil || !slices.Equal(p.Seqs(), []uint64{2001, 2002}) || f.Code != sim.CodeMsgMissing {
				t.Fatalf("recall failure %+v (%v), want seqs 2001 and 2002 with code %d", f, err, sim.CodeMsgMissing)
			}
			continue
		}
		if f.Op != "modify" || f.Code != sim.CodeMsgMissing {
			t.Fatalf("failure %+v, want a modify with code %d", f, sim.CodeMsgMissing)
		}
		p, err := tasks.ParseModify(f.Payload)
		if err != nil || p.MsgSeq < 1001 {
			t.Fatalf("failure payload %s: %v", f.Payload, err)
		}
	}
	// The lane keeps no completed task: the job's summary is the record.
	for _, q := range []string{"timq-job-clear", "timq-job-recall", "timq-job-modify"} {
		if info, err := r.insp.GetQueueInfo(q); err == nil && info.Completed != 0 {
			t.Fatalf("queue %s keeps %d completed tasks", q, info.Completed)
		}
	}
	if _, err := r.store.Cancel(context.Background(), id); !errors.Is(err, enqueue.ErrJobEnded) {
		t.Fatalf("cancel of a done job = %v, want ErrJobEnded", err)
	}
	if _, err := r.store.Get(context.Background(), "nosuchjob"); !errors.Is(err, enqueue.ErrJobNotFound) {
		t.Fatalf("Get of an unknown job = %v, want ErrJobNotFound", err)
	}
}

func TestJobPauseResumeAndCancelAcrossTwoWorkers(t *testing.T) {
	t.Parallel()
	r := newJobRig(t)
	r.cfg.Rate = 40
	r.cfg.JobWindow = 20
	const n = 200
	r.group("job-pause", sim.GroupPublic, n)
	r.group("job-cancel", sim.GroupPublic, n)
	pause := r.job("pause", 1, modifies("job-pause", 1, n, "p")...)
	r.startWorker()
	r.startWorker()
	ctx := context.Background()
	testenv.WaitFor(t, 30*time.Second, "20 applied", func() bool { return r.get(pause).Counts.Applied >= 20 })
	if _, err := r.store.Pause(ctx, pause); err != nil {
		t.Fatal(err)
	}
	// Tasks already past their check may still finish: at most the two
	// workers' concurrency. The feeder stops, so the lane settles: no task
	// of the job pending or active, the rest handed back (retry) to wait.
	applied := func(group string) int {
		k := 0
		for s := uint64(1); s <= n; s++ {
			if r.msg(group, s).Modified > 0 {
				k++
			}
		}
		return k
	}
	testenv.WaitFor(t, 10*time.Second, "the paused job's lane settled", func() bool {
		info, err := r.insp.GetQueueInfo("timq-job-modify")
		return err == nil && info.Pending == 0 && info.Active == 0
	})
	atPause := applied("job-pause")
	if j := r.get(pause); j.State != enqueue.JobPaused || j.Counts.Applied == n {
		t.Fatalf("paused job = %s %+v", j.State, j.Counts)
	}
	if _, err := r.store.Resume(ctx, pause); err != nil {
		t.Fatal(err)
	}
	j := r.waitJob(pause, 60*time.Second)
	if j.State != enqueue.JobDone || j.Counts.Applied != n || applied("job-pause") != n {
		t.Fatalf("resumed job = %s %+v, %d applied in the emulator", j.State, j.Counts, applied("job-pause"))
	}
	t.Logf("%d of %d applied when the pause took effect", atPause, n)

	cancel := r.job("cancel", 1, modifies("job-cancel", 1, n, "c")...)
	testenv.WaitFor(t, 30*time.Second, "20 applied", func() bool { return r.get(cancel).Counts.Applied >= 20 })
	if _, err := r.store.Cancel(ctx, cancel); err != nil {
		t.Fatal(err)
	}
	j = r.waitJob(cancel, 30*time.Second)
	if j.State != enqueue.JobCancelled || j.Counts.Cancelled == 0 || j.Counts.DeadLettered != 0 {
		t.Fatalf("cancelled job = %s %+v", j.State, j.Counts)
	}
	if got := applied("job-cancel"); int64(got) != j.Counts.Applied {
		t.Fatalf("the emulator modified %d messages, the job counts %d applied", got, j.Counts.Applied)
	}
	if _, err := r.store.Resume(ctx, cancel); !errors.Is(err, enqueue.ErrJobEnded) {
		t.Fatalf("resume of a cancelled job = %v, want ErrJobEnded", err)
	}
}

func TestInteractiveOperationsGoBeforeAJobBacklog(t *testing.T) {
	t.Parallel()
	r := newJobRig(t)
	r.cfg.Rate = 50
	const n = 400 // eight seconds of work at 50 calls/s
	r.group("job-backlog", sim.GroupPublic, n)
	r.group("interactive", sim.GroupPublic, 3)
	id := r.job("backlog", 1, modifies("job-backlog", 1, n, "j")...)
	reg := prometheus.NewRegistry()
	r.cfg.Metrics = reg
	r.startWorker()
	testenv.WaitFor(t, 30*time.Second, "the job runs", func() bool { return r.get(id).Counts.Applied >= 20 })
	for s := uint64(1); s <= 3; s++ {
		if _, err := r.enq.Modify(context.Background(), tasks.Modify{GroupId: "interactive", MsgSeq: s, MsgBody: tasks.TextBody("now")}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.WaitFor(t, 30*time.Second, "the interactive modifies applied", func() bool {
		return r.msg("interactive", 1).Modified == 1 && r.msg("interactive", 2).Modified == 1 && r.msg("interactive", 3).Modified == 1
	})
	j := r.get(id)
	// Behind the backlog they would wait for all of it; in their lane they
	// pass it while most of the job still waits.
	if j.Counts.Waiting+j.Counts.InFlight < n/2 {
		t.Fatalf("the interactive modifies were applied only after the job's %d: %+v", j.Counts.Applied, j.Counts)
	}
	t.Logf("interactive modifies applied with the job at %+v", j.Counts)
	// The enqueue-to-call histogram holds the three interactive modifies
	// and none of the job's operations.
	if got := metricSum(t, reg, "timq_interactive_enqueue_to_call_seconds", "task_type", tasks.TypeModify); got != 3 {
		t.Errorf("timq_interactive_enqueue_to_call_seconds has %v samples, want 3", got)
	}
}

// metricSum adds up the values (sample counts, for histograms) of a
// metric's series whose labels include the given name, value pairs.
func metricSum(t *testing.T, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func TestTwoJobsShareTheLaneByWeight(t *testing.T) {
	t.Parallel()
	r := newJobRig(t)
	r.cfg.Rate = 50
	r.cfg.JobWindow = 20
	const n = 300
	r.group("job-a", sim.GroupPublic, n)
	r.group("job-b", sim.GroupPublic, n)
	r.group("job-c", sim.GroupPublic, n)
	a := r.job("a", 1, modifies("job-a", 1, n, "a")...)
	b := r.job("b", 1, modifies("job-b", 1, n, "b")...)
	c := r.job("c", 2, modifies("job-c", 1, n, "c")...)
	r.startWorker()
	var ja, jb, jc enqueue.Job
	testenv.WaitFor(t, 60*time.Second, "200 applied", func() bool {
		ja, jb, jc = r.get(a), r.get(b), r.get(c)
		return ja.Counts.Applied+jb.Counts.Applied+jc.Counts.Applied >= 200
	})
	total := float64(ja.Counts.Applied + jb.Counts.Applied + jc.Counts.Applied)
	sa, sb, sc := float64(ja.Counts.Applied)/total, float64(jb.Counts.Applied)/total, float64(jc.Counts.Applied)/total
	t.Logf("shares: a %.2f, b %.2f, c (weight 2) %.2f", sa, sb, sc)
	// Weights 1:1:2 make shares of 25%, 25% and 50%, give or take a window.
	for _, s := range []struct {
		name      string
		got, want float64
	}{{"a", sa, 0.25}, {"b", sb, 0.25}, {"c", sc, 0.5}} {
		if s.got < s.want-0.12 || s.got > s.want+0.12 {
			t.Errorf("job %s got %.2f of the calls, want about %.2f", s.name, s.got, s.want)
		}
	}
	// Together the jobs run at the endpoint's limit, so their rates add up
	// to at most that, and each predicts an end in the future.
	sum := ja.Rate + jb.Rate + jc.Rate
	t.Logf("rates: a %.1f, b %.1f, c %.1f ops/s", ja.Rate, jb.Rate, jc.Rate)
	if sum < 15 || sum > 55 {
		t.Errorf("the jobs' rates add up to %.1f ops/s; the endpoint runs at 50", sum)
	}
	for _, j := range []enqueue.Job{ja, jb, jc} {
		if j.ETA == nil || !j.ETA.After(time.Now().Add(-time.Second)) {
			t.Errorf("job %s: ETA %v, want one ahead", j.Name, j.ETA)
		}
	}
}
