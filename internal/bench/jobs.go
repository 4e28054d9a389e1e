package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/tasks"
)

// The jobs phase's fixed sizes.
const (
	// jobLatencySamples is the interactive operations per endpoint of each
	// latency measurement (idle, behind the backlog job).
	jobLatencySamples = 50
	// backlogJobOps is the size of the job the second latency
	// measurement runs behind: a third each clear, recall and modify.
	backlogJobOps = 100_000
	// shareJobOps is the modifies of each job of a share pair; far more
	// than run while the pair is measured, so both run throughout.
	shareJobOps = 20_000
	// bulkLines is the lines of the `timq bulk` file.
	bulkLines = 1_000_000
	// jobGroups is how many groups each endpoint's job operations go to.
	jobGroups = 50
	// jobMessages is how many messages each job group has: a job's recall
	// of operation i recalls message (i/jobGroups)%jobMessages+1, distinct
	// for the first jobGroups*jobMessages recalls, far more than run
	// before the bench cancels the job. Modifies and clears may repeat.
	jobMessages = 1000
	// jobPhaseLimit bounds the whole jobs phase.
	jobPhaseLimit = 6 * time.Minute
)

// Targets of the jobs phase.
const (
	targetBulkWall      = 30 * time.Second
	targetMemRunning    = 200 << 20
	targetMemAfter      = 50 << 20
	targetShareTolerant = 0.05 // each job's share within 5 points of its weight's
)

// LatencyStat is enqueue-to-call over N operations, Missing more enqueued
// but never seen by the emulator; P50 and P99 by the nearest rank.
type LatencyStat struct {
	N, Missing int
	P50, P99   time.Duration
}

func latencyStat(d []time.Duration, missing int) LatencyStat {
	return LatencyStat{N: len(d), Missing: missing, P50: percentile(d, 50), P99: percentile(d, 99)}
}

// JobLatencyRow is one endpoint's interactive enqueue-to-call latency, the
// same measurement as the main table's idle columns (latencyPhase), with
// one worker: Idle with nothing else to do, Backlog while a job of
// JobsResult.BacklogOps operations runs in every endpoint's job lane.
type JobLatencyRow struct {
	Endpoint      string
	Idle, Backlog LatencyStat
}

// ShareRow is two jobs of modifies running at once in one worker's
// modify_group_msg lane, measured over Window once both were running.
type ShareRow struct {
	Weights [2]int
	Ops     int // modifies in each job
	// Applied is each job's operations applied within Window (from the job
	// store's counts at its two ends); for modifies, one call each.
	Applied [2]int64
	Window  time.Duration
	// Calls is every modify_group_msg call the emulator received within
	// Window, interactive or not; -1 when it was not read.
	Calls int64
}

// Share returns job i's share of the two jobs' operations in the window,
// or -1 when neither applied any.
func (s ShareRow) Share(i int) float64 {
	t := s.Applied[0] + s.Applied[1]
	if t == 0 {
		return -1
	}
	return float64(s.Applied[i]) / float64(t)
}

// Want returns job i's share by weight.
func (s ShareRow) Want(i int) float64 {
	return float64(s.Weights[i]) / float64(s.Weights[0]+s.Weights[1])
}

// PerSecond is the two jobs' operations a second within the window.
func (s ShareRow) PerSecond() float64 {
	if s.Window <= 0 {
		return 0
	}
	return float64(s.Applied[0]+s.Applied[1]) / s.Window.Seconds()
}

// Met reports whether each job's share is within targetShareTolerant of
// its weight's share.
func (s ShareRow) Met() bool {
	for i := range 2 {
		if sh := s.Share(i); sh < 0 || sh < s.Want(i)-targetShareTolerant || sh > s.Want(i)+targetShareTolerant {
			return false
		}
	}
	return true
}

// JobsResult is the jobs phase's figures. Memory figures are Redis's
// used_memory (INFO memory), the whole server's, in bytes; -1 when it could
// not be read (an embedded miniredis answers no INFO memory).
type JobsResult struct {
	Latency []JobLatencyRow
	// BacklogOps is the backlog job's size, and BacklogPerSecond its
	// operations applied per second while the Backlog latencies were
	// measured (all endpoints): proof that it ran meanwhile.
	BacklogOps       int
	BacklogPerSecond float64
	Shares           []ShareRow
	// BulkLines is the `timq bulk` file's lines, one operation each
	// (a third each clear, recall and modify), and BulkWall the command's
	// wall time, from start to exit (it validates the file, then stores
	// the job); BulkErr is set when it failed.
	BulkLines int
	BulkWall  time.Duration
	BulkErr   string
	// MemBaseline is before the bulk command; MemRunning once it returned
	// and the feeder runs the job, MemPeak the highest of samples every
	// 200 ms from the bulk command's start to the cancel; MemAfter once the
	// cancelled job has ended (every operation applied or cancelled).
	MemBaseline, MemRunning, MemPeak, MemAfter int64
	// BulkApplied is the bulk job's operations applied before the cancel.
	BulkApplied int64
}

// runJobs runs the jobs phase, with one worker process connected to Redis
// directly, in two parts each after a reset: first interactive latency
// idle and behind a job, then two pairs of jobs sharing the lane; then,
// with a new worker, the `timq bulk` of a bulkLines file and Redis's memory
// around it. Every job is cancelled once measured; the phase is bounded by
// jobPhaseLimit.
func (r *runner) runJobs(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, jobPhaseLimit)
	defer cancel()
	store := jobs.NewStore(r.rdb.Client(), 0)
	res := &JobsResult{BacklogOps: backlogJobOps, BulkLines: bulkLines, MemBaseline: -1, MemRunning: -1, MemPeak: -1, MemAfter: -1}
	r.res.Jobs = res

	k := jobLatencySamples
	seed := append(latencyGroups("ja", k), latencyGroups("jb", k)...)
	seed = append(seed, jobGroupsSeed("jq")...)
	for _, g := range []string{"js-0", "js-1", "js-2", "js-3"} {
		seed = append(seed, sim.SeedGroup{GroupID: g, Type: sim.GroupPublic, Messages: jobMessages})
	}
	if err := r.reset(ctx, seed); err != nil {
		return err
	}
	ws, err := r.startWorkers(ctx, "jobs", 1, true)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	err = r.jobLatency(ctx, store, res)
	if err == nil {
		err = r.jobShares(ctx, store, res)
	}
	stopWorkers(ws)
	if err != nil {
		return err
	}
	return r.jobBulk(ctx, store, res)
}

// jobGroupsSeed returns the groups jobOp sends a job's operations to.
func jobGroupsSeed(prefix string) []sim.SeedGroup {
	var out []sim.SeedGroup
	for _, ep := range []string{"c", "r", "m"} {
		for g := range jobGroups {
			n := jobMessages
			if ep == "c" {
				n = 10
			}
			out = append(out, sim.SeedGroup{GroupID: fmt.Sprintf("%s%s-%d", prefix, ep, g), Type: sim.GroupPublic, Messages: n})
		}
	}
	return out
}

// jobOp returns operation i of a mixed job on the groups of
// jobGroupsSeed(prefix): clear, recall and modify in turn.
func jobOp(prefix string, i int) tasks.Payload {
	j := i / 3
	g, seq := j%jobGroups, uint64((j/jobGroups)%jobMessages+1)
	switch i % 3 {
	case 0:
		cs := uint64((j/jobGroups)%10 + 1)
		return tasks.Clear{GroupId: fmt.Sprintf("%sc-%d", prefix, g), MsgSeq: &cs}
	case 1:
		return tasks.Recall{GroupId: fmt.Sprintf("%sr-%d", prefix, g), MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: seq}}}
	default:
		ccd := "bench-job"
		return tasks.Modify{GroupId: fmt.Sprintf("%sm-%d", prefix, g), MsgSeq: seq, CloudCustomData: &ccd}
	}
}

// createJob stores a job of n operations op(0) .. op(n-1).
func createJob(ctx context.Context, store *jobs.Store, name string, weight, n int, op func(int) tasks.Payload) (string, error) {
	w, err := store.Create(jobs.Spec{Name: name, Weight: weight})
	if err != nil {
		return "", err
	}
	for i := range n {
		if err := w.Add(ctx, op(i)); err != nil {
			w.Abort(ctx)
			return "", err
		}
	}
	if _, err := w.Close(ctx); err != nil {
		return "", err
	}
	return w.ID(), nil
}

// poll calls f every 50 ms until it returns true or an error, or limit
// passes (then it returns false).
func poll(ctx context.Context, limit time.Duration, f func() (bool, error)) (bool, error) {
	deadline := time.Now().Add(limit)
	for {
		ok, err := f()
		if ok || err != nil {
			return ok, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitApplied waits until every job has applied at least n operations.
func waitApplied(ctx context.Context, store *jobs.Store, n int64, ids ...string) error {
	ok, err := poll(ctx, 30*time.Second, func() (bool, error) {
		for _, id := range ids {
			j, err := store.Get(ctx, id)
			if err != nil {
				return false, err
			}
			if j.Counts.Applied < n {
				return false, nil
			}
		}
		return true, nil
	})
	if err == nil && !ok {
		err = fmt.Errorf("jobs %v did not each apply %d operations within 30 s", ids, n)
	}
	return err
}

// cancelJobs cancels the jobs and waits until each has ended.
func cancelJobs(ctx context.Context, store *jobs.Store, ids ...string) error {
	for _, id := range ids {
		if _, err := store.Cancel(ctx, id); err != nil && !errors.Is(err, jobs.ErrEnded) {
			return err
		}
	}
	ok, err := poll(ctx, time.Minute, func() (bool, error) {
		for _, id := range ids {
			j, err := store.Get(ctx, id)
			if err != nil {
				return false, err
			}
			if !j.Finished {
				return false, nil
			}
		}
		return true, nil
	})
	if err == nil && !ok {
		err = fmt.Errorf("cancelled jobs %v did not end within a minute", ids)
	}
	return err
}

// jobLatency measures interactive enqueue-to-call with latencyPhase, on
// the idle worker and then behind a running job of backlogJobOps.
func (r *runner) jobLatency(ctx context.Context, store *jobs.Store, res *JobsResult) error {
	k := jobLatencySamples
	time.Sleep(time.Second) // let the worker start and go idle
	r.progress("jobs: interactive latency, %d operations per endpoint, idle worker", k)
	idle, idleMissing, err := r.latencyPhase(ctx, "ja", k)
	if err != nil {
		return err
	}
	start := time.Now()
	id, err := createJob(ctx, store, "bench-backlog", 1, backlogJobOps, func(i int) tasks.Payload { return jobOp("jq", i) })
	if err != nil {
		return fmt.Errorf("create the backlog job: %w", err)
	}
	r.progress("jobs: stored a job of %d operations in %v; interactive latency behind it", backlogJobOps, time.Since(start).Round(time.Millisecond))
	// Once it has applied a second's worth, every lane is full.
	if err := waitApplied(ctx, store, int64(r.cfg.Rate), id); err != nil {
		return err
	}
	j0, err := store.Get(ctx, id)
	if err != nil {
		return err
	}
	t0 := time.Now()
	busy, busyMissing, err := r.latencyPhase(ctx, "jb", k)
	if err != nil {
		return err
	}
	j1, err := store.Get(ctx, id)
	if err != nil {
		return err
	}
	res.BacklogPerSecond = float64(j1.Counts.Applied-j0.Counts.Applied) / time.Since(t0).Seconds()
	if j1.Finished {
		return fmt.Errorf("the backlog job %s ended while the latency behind it was measured", id)
	}
	for _, ep := range benchEndpoints {
		res.Latency = append(res.Latency, JobLatencyRow{Endpoint: ep.Short(),
			Idle: latencyStat(idle[ep], idleMissing[ep]), Backlog: latencyStat(busy[ep], busyMissing[ep])})
	}
	return cancelJobs(ctx, store, id)
}

// shareWindow is how long a share pair is measured.
func (c Config) shareWindow() time.Duration {
	return clampDur(c.Duration*2/5, 4*time.Second, 10*time.Second)
}

// jobShares runs two pairs of modify jobs, weights 1:1 and 1:3, and
// measures each job's share of the lane while both run.
func (r *runner) jobShares(ctx context.Context, store *jobs.Store, res *JobsResult) error {
	for p, w := range [][2]int{{1, 1}, {1, 3}} {
		var ids [2]string
		for i := range 2 {
			g := fmt.Sprintf("js-%d", 2*p+i)
			id, err := createJob(ctx, store, fmt.Sprintf("bench-share-%d:%d-%d", w[0], w[1], i), w[i], shareJobOps, func(n int) tasks.Payload {
				ccd := "bench-share"
				return tasks.Modify{GroupId: g, MsgSeq: uint64(n%jobMessages + 1), CloudCustomData: &ccd}
			})
			if err != nil {
				return fmt.Errorf("create a share job: %w", err)
			}
			ids[i] = id
		}
		row := ShareRow{Weights: w, Ops: shareJobOps, Window: r.cfg.shareWindow(), Calls: -1}
		r.progress("jobs: two jobs of %d modifies, weights %d:%d, measured for %v", shareJobOps, w[0], w[1], row.Window)
		if err := waitApplied(ctx, store, 1, ids[:]...); err != nil {
			return err
		}
		// A lane's worth of warm-up: what was fed before the second job
		// was seen is out of the lane.
		time.Sleep(3 * time.Second)
		var before, after [2]int64
		read := func(out *[2]int64) (int64, error) {
			for i, id := range ids {
				j, err := store.Get(ctx, id)
				if err != nil {
					return 0, err
				}
				if j.Finished {
					return 0, fmt.Errorf("share job %s ended while measured", id)
				}
				out[i] = j.Counts.Applied
			}
			st, err := r.sim.Stats(ctx)
			if err != nil {
				return -1, nil
			}
			return st.Endpoints[chatapi.EndpointModify].Calls, nil
		}
		c0, err := read(&before)
		if err != nil {
			return err
		}
		t0 := time.Now()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(row.Window):
		}
		c1, err := read(&after)
		if err != nil {
			return err
		}
		row.Window = time.Since(t0)
		for i := range 2 {
			row.Applied[i] = after[i] - before[i]
		}
		if c0 >= 0 && c1 >= 0 {
			row.Calls = c1 - c0
		}
		res.Shares = append(res.Shares, row)
		if err := cancelJobs(ctx, store, ids[:]...); err != nil {
			return err
		}
	}
	return nil
}

// writeBulkFile writes n lines for `timq bulk`: jobOp's operations on the
// groups of jobGroupsSeed(prefix), as JSON lines.
func writeBulkFile(path, prefix string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for i := range n {
		j := i / 3
		g, seq := j%jobGroups, (j/jobGroups)%jobMessages+1
		switch i % 3 {
		case 0:
			fmt.Fprintf(w, `{"op":"clear","GroupId":"%sc-%d","MsgSeq":%d}`+"\n", prefix, g, (j/jobGroups)%10+1)
		case 1:
			fmt.Fprintf(w, `{"op":"recall","GroupId":"%sr-%d","MsgSeqList":[{"MsgSeq":%d}]}`+"\n", prefix, g, seq)
		default:
			fmt.Fprintf(w, `{"op":"modify","GroupId":"%sm-%d","MsgSeq":%d,"CloudCustomData":"bench-bulk"}`+"\n", prefix, g, seq)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// usedMemory returns Redis's used_memory in bytes, or -1 when INFO memory
// does not give it.
func (r *runner) usedMemory(ctx context.Context) int64 {
	info, err := r.rdb.Client().Info(ctx, "memory").Result()
	if err != nil {
		return -1
	}
	v, err := strconv.ParseInt(strings.TrimSpace(infoField(info, "used_memory")), 10, 64)
	if err != nil {
		return -1
	}
	return v
}

// jobBulk writes a bulkLines file, runs `timq bulk` on it with a worker
// running, and reads Redis's memory before, while the job runs, and once
// it has been cancelled and ended. The file is removed afterwards.
func (r *runner) jobBulk(ctx context.Context, store *jobs.Store, res *JobsResult) error {
	if err := r.reset(ctx, jobGroupsSeed("jx")); err != nil {
		return err
	}
	path := filepath.Join(r.cfg.Out, "bulk-1m.jsonl")
	start := time.Now()
	if err := writeBulkFile(path, "jx", bulkLines); err != nil {
		return err
	}
	defer os.Remove(path)
	r.progress("jobs: wrote %d lines to %s in %v", bulkLines, path, time.Since(start).Round(time.Millisecond))
	ws, err := r.startWorkers(ctx, "jobs-bulk", 1, true)
	defer stopWorkers(ws)
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // let the worker start
	res.MemBaseline = r.usedMemory(ctx)

	var peakMu sync.Mutex
	peak := res.MemBaseline
	stopSampling := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(200 * time.Millisecond):
			}
			if v := r.usedMemory(ctx); v >= 0 {
				peakMu.Lock()
				peak = max(peak, v)
				peakMu.Unlock()
			}
		}
	}()
	stop := func() {
		close(stopSampling)
		sampling.Wait()
		res.MemPeak = peak
	}

	r.progress("jobs: timq bulk of %d lines", bulkLines)
	var out bytes.Buffer
	env := childEnv(fmt.Sprintf("TIMQ_REDIS_URL=redis://%s/%d", r.rdb.Addr, r.rdb.DB), "TIMQ_RATE="+strconv.Itoa(r.cfg.Rate))
	start = time.Now()
	p, err := r.apps.startWith(ctx, "bulk", r.cfg.Bin, []string{"bulk", "--json", "--name", "bench-bulk", path}, env, r.logDir, &out)
	if err != nil {
		stop()
		return err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.Stop(time.Second)
		stop()
		return ctx.Err()
	}
	res.BulkWall = time.Since(start)
	var sum struct {
		Job *struct {
			ID string `json:"id"`
		} `json:"job"`
	}
	if p.err != nil || json.Unmarshal(bytes.TrimSpace(out.Bytes()), &sum) != nil || sum.Job == nil {
		stop()
		res.BulkErr = fmt.Sprintf("%v (see %s)", p.err, filepath.Join(r.logDir, "bulk.log"))
		if p.err == nil {
			res.BulkErr = fmt.Sprintf("no job in its output %.200q", out.String())
		}
		r.progress("jobs: timq bulk failed: %s", res.BulkErr)
		return nil
	}
	id := sum.Job.ID
	r.progress("jobs: timq bulk stored job %s in %v", id, res.BulkWall.Round(time.Millisecond))
	// Running: the feeder has put its first window into the lane and the
	// worker applies it.
	if err := waitApplied(ctx, store, 1, id); err != nil {
		stop()
		return err
	}
	time.Sleep(time.Second)
	res.MemRunning = r.usedMemory(ctx)
	stop()
	j, err := store.Get(ctx, id)
	if err != nil {
		return err
	}
	res.BulkApplied = j.Counts.Applied
	if j.Counts.Total != int64(bulkLines) {
		res.BulkErr = fmt.Sprintf("job %s holds %d operations, not one per line (%d)", id, j.Counts.Total, bulkLines)
	}
	if err := cancelJobs(ctx, store, id); err != nil {
		return err
	}
	if j, err = store.Get(ctx, id); err != nil {
		return err
	}
	res.BulkApplied = j.Counts.Applied
	res.MemAfter = r.usedMemory(ctx)
	r.progress("jobs: used_memory %s before, %s running (peak %s), %s after the cancelled job ended",
		mb(res.MemBaseline), mb(res.MemRunning), mb(res.MemPeak), mb(res.MemAfter))
	return nil
}

// mb formats bytes as MB with one decimal, or "-" when negative.
func mb(v int64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MB", float64(v)/(1<<20))
}
