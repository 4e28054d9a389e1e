// Package bench is the benchmark program behind `make bench` (`timq bench`).
//
// It runs the real processes: a Redis (the one at REDIS_ADDR or
// 127.0.0.1:6379 when it answers, else a redis-server it starts, else an
// in-process miniredis), `timq sim` with realistic latency (40 ms plus up to
// 20 ms of jitter on every endpoint) and 1, 2 and 4 `timq worker` processes
// in turn, all on loopback. For each worker count it enqueues a mixed
// backlog (clear, recall and modify at once) sized to keep every endpoint
// busy for Config.Duration at its limit, waits until it is drained, then
// measures enqueue-to-call latency with the queues idle. Then, with one
// worker and recalls only, it runs the recall scenarios: a backlog of
// single-message recalls over 50 groups, one hot group, and a lone recall.
// Last, with one worker, the jobs phase (see runJobs): enqueue-to-call of
// interactive operations on an idle worker and behind a 100,000-operation
// job, how two running jobs share the job lane, and a 1,000,000-line
// `timq bulk`: its wall time and Redis's used_memory around the job.
//
// Everything it reports comes from outside the workers: call counts, the
// sliding-second maximum and 60007 answers from the emulator's statistics;
// Redis commands from a counting proxy between the workers and Redis; CPU
// time and peak RSS from /proc. See Row and RecallRow for each figure's
// definition. It measures whatever the worker currently does.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/tasks"
)

// Defaults for Config fields left zero.
const (
	DefaultDuration = 25 * time.Second
	DefaultOut      = "bench-out"
	DefaultRate     = 200
	DefaultLatency  = 40 * time.Millisecond
	DefaultJitter   = 20 * time.Millisecond
)

// DefaultWorkers are the worker counts run in turn.
func DefaultWorkers() []int { return []int{1, 2, 4} }

// The three endpoints the worker calls, in table order.
var benchEndpoints = []chatapi.Endpoint{chatapi.EndpointClear, chatapi.EndpointRecall, chatapi.EndpointModify}

// Config says what to run. Only Bin is required.
type Config struct {
	// Bin is the timq binary run as `timq sim` and `timq worker`.
	Bin string
	// Workers are the worker-process counts to run, in order. Defaults to
	// DefaultWorkers; empty after defaults is not allowed.
	Workers []int
	// Duration is how long each mixed backlog keeps each endpoint busy at
	// 98.5% of Rate (the backlog is Rate*0.985*Duration tasks per endpoint).
	// It also scales the idle-latency phase (40% of it, 2 s to 10 s) and
	// caps the recall scenarios (60%, 3 s to 15 s). Defaults to
	// DefaultDuration.
	Duration time.Duration
	// Out is the directory for results.md, calls.csv, calls.png and logs/.
	// Defaults to DefaultOut.
	Out string
	// SkipRecallScenarios leaves out the recall-only scenarios.
	SkipRecallScenarios bool
	// SkipJobs leaves out the jobs phase (see runJobs): interactive
	// latency behind a job, two jobs' shares of the job lane, and a
	// 1,000,000-line `timq bulk` with Redis's memory around it.
	SkipJobs bool
	// SkipAPI leaves out the HTTP API phase (see runAPI): enqueues per
	// second over HTTP beside the Go client, and a 100,000-line job.
	SkipAPI bool
	// APIOnly runs the HTTP API phase alone.
	APIOnly bool
	// SkipIndex leaves out the message-index phase (see runIndex).
	SkipIndex bool
	// IndexOnly runs the message-index phase alone.
	IndexOnly bool
	// RedisAddr is the real Redis to try first; defaults to 127.0.0.1:6379.
	RedisAddr string
	// Rate is the emulator's limit per endpoint and the workers' TIMQ_RATE.
	// Defaults to DefaultRate.
	Rate int
	// Latency and Jitter are the emulator's delay on every call. Default to
	// DefaultLatency and DefaultJitter.
	Latency, Jitter time.Duration
	// WorkerEnv is added to each worker's environment (NAME=VALUE); the
	// string "{i}" in a value becomes the worker's index in its run.
	WorkerEnv []string
	// BusyLoops is how many busy-loop processes (sh, spinning) compete
	// with every process of the run, from after the yardstick to the end:
	// a host busy with other work, where wake-ups come late. 0 to 8;
	// default 0.
	BusyLoops int
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
}

func (c Config) withDefaults() (Config, error) {
	if c.Bin == "" {
		return c, errors.New("bench: Bin: the timq binary must be given")
	}
	if c.Workers == nil {
		c.Workers = DefaultWorkers()
	}
	if len(c.Workers) == 0 {
		return c, errors.New("bench: Workers: at least one worker count is needed")
	}
	for _, n := range c.Workers {
		if n < 1 || n > 16 {
			return c, fmt.Errorf("bench: Workers: %d is not within 1..16", n)
		}
	}
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Duration < time.Second || c.Duration > 10*time.Minute {
		return c, fmt.Errorf("bench: Duration: %v is not within 1s..10m", c.Duration)
	}
	if c.Out == "" {
		c.Out = DefaultOut
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Rate < 1 {
		return c, fmt.Errorf("bench: Rate: must be positive, got %d", c.Rate)
	}
	if c.Latency == 0 {
		c.Latency = DefaultLatency
	}
	if c.Jitter == 0 {
		c.Jitter = DefaultJitter
	}
	if c.BusyLoops < 0 || c.BusyLoops > MaxBusyLoops {
		return c, fmt.Errorf("bench: BusyLoops: %d is not within 0..%d", c.BusyLoops, MaxBusyLoops)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c, nil
}

func clampDur(d, lo, hi time.Duration) time.Duration { return min(max(d, lo), hi) }

// latencyPhase is how long the idle-latency phase of each run enqueues.
func (c Config) latencyPhase() time.Duration {
	return clampDur(c.Duration*2/5, 2*time.Second, 10*time.Second)
}

// recallCap bounds how long a recall scenario runs before it is measured.
func (c Config) recallCap() time.Duration {
	return clampDur(c.Duration*3/5, 3*time.Second, 15*time.Second)
}

// perEndpoint is the mixed backlog's size per endpoint.
func (c Config) perEndpoint() int {
	return int(float64(c.Rate) * 0.985 * c.Duration.Seconds())
}

// MaxBusyLoops bounds Config.BusyLoops.
const MaxBusyLoops = 8

// latencyRate is the idle-latency phase's tasks per second per endpoint.
const latencyRate = 20

// enqueueWorkers is how many goroutines enqueue a backlog.
const enqueueWorkers = 8

// workerGrace is how long a worker has to stop after SIGTERM before it is
// killed (its own --shutdown-timeout is shorter).
const workerGrace = 15 * time.Second

// Row is one worker count and endpoint of the mixed backlog.
type Row struct {
	Config   string // "1 worker", "2 workers", ...
	Workers  int
	Endpoint string // short name
	Tasks    int    // tasks enqueued for this endpoint
	// Calls is every call to the endpoint while the backlog ran.
	Calls int64
	// BusySeconds is the endpoint's busy span: the whole seconds between
	// its first and last second with calls, both left out as partial
	// (ramp-up, drain).
	BusySeconds int
	// PerSecond is the endpoint's calls in its busy span divided by its
	// length, and Ratio that divided by the limit.
	PerSecond, Ratio float64
	// MaxPerSecond is the most calls in any sliding one-second window over
	// the whole backlog run, refused or not (the emulator's count, by when
	// the kernel received each call), and MaxReadPerSecond the same by when
	// the emulator read it, which is higher when the emulator, short of CPU,
	// read calls late and bunched (see sim.EndpointStats).
	MaxPerSecond, MaxReadPerSecond int64
	// Rejected counts 60007 answers during the backlog run.
	Rejected int64
	// Dropped is the share of the endpoint's budget slots the workers took
	// and left unused, mostly for waking, or being able to send, more than
	// a slot interval late (see droppedShare), over the workers' whole run
	// (backlog and idle phase), from their "worker stopped" logs; -1 when
	// a log did not say.
	Dropped float64
	// The fields below are for the whole worker count (all endpoints),
	// over the union of the endpoints' busy spans.
	//
	// RedisPerCall is Redis commands the worker processes sent divided by
	// API calls (see countingProxy for what counts as a command).
	RedisPerCall float64
	// CPUPer1k is the workers' CPU seconds (user+system, all workers) per
	// 1,000 API calls; Cores is their CPU seconds per second.
	CPUPer1k, Cores float64
	// SleepsPerCall is the workers' voluntary context switches (a thread
	// going to sleep until an event wakes it) per API call; -1 when they
	// could not be read.
	SleepsPerCall float64
	// PeakRSS is the largest peak RSS (VmHWM) of any one worker, bytes.
	PeakRSS int64
	// BenchCores is the bench process's own CPU use (the counting proxy
	// mostly) over the same span, in cores: load the workers compete with.
	BenchCores float64
	// Steal is the share of the machine's CPU time its hypervisor took
	// (/proc/stat's steal) over the same span: time every process here
	// wanted to run and could not. -1 when /proc/stat was not read.
	Steal float64
	// Latency: enqueue-to-call times of the idle phase (LatN calls,
	// LatMissing enqueued but never seen by the emulator).
	LatN, LatMissing int
	LatP50, LatP99   time.Duration
	// Drained is false when the backlog was not done within its time limit.
	Drained bool
}

// RecallRow is one of the recall-only scenarios, with one worker.
type RecallRow struct {
	Scenario string // "7a", "7b", "7c"
	Desc     string
	Messages int // single-message recall tasks enqueued
	// Recalled is messages newly recalled during the run.
	Recalled int64
	// BusySeconds is the busy span of group_msg_recall calls (see Row).
	BusySeconds int
	// MsgPerSecond and CallsPerSecond are messages recalled and calls made
	// in the busy span per second; MsgPerCall their ratio.
	MsgPerSecond, CallsPerSecond, MsgPerCall float64
	MaxPerSecond, MaxReadPerSecond, Rejected int64
	// Lone-recall latency (7c): enqueue-to-call.
	LatN                   int
	LatP50, LatP99, LatMax time.Duration
	Target                 string
	Met                    string // "yes", "NO" or "-"
	Drained                bool
}

// CommandMix is one worker count's Redis commands by name, per API call,
// over the whole backlog run (start-up and drain included).
type CommandMix struct {
	Config  string
	PerCall map[string]float64
}

// Results is everything a run measured.
type Results struct {
	Redis string
	// LoadBefore and LoadAfter are /proc/loadavg's 1, 5 and 15 minute
	// load averages when the run started and ended: other programs' load
	// takes CPU from the workers, the emulator and Redis.
	LoadBefore, LoadAfter string
	// Yardstick is this machine's CPU cost of fixed work, for comparing
	// CPU figures across machines.
	Yardstick Yardstick
	Started   time.Time
	Elapsed   time.Duration
	Cfg       Config
	Rows      []Row
	Recall    []RecallRow
	// Jobs is the jobs phase's figures; nil when it was skipped.
	Jobs     *JobsResult
	API      *APIResult
	Index    *IndexResult
	Commands []CommandMix
	Series   []series
}

// runner holds one bench run's processes and clients.
type runner struct {
	cfg    Config
	logDir string
	infra  *procSet // redis-server, stopped last
	apps   *procSet // sim and workers
	rdb    *redisDB
	proxy  *countingProxy
	sim    *simClient
	simURL string
	aq     *asynq.Client
	enq    *enqueue.Client
	appID  uint64
	key    string
	res    *Results
}

// Run runs the benchmark, writes results.md, calls.csv and calls.png to
// Config.Out, and returns the results. Every process it starts is stopped
// before it returns, also when ctx is canceled.
func Run(ctx context.Context, cfg Config) (res *Results, err error) {
	if cfg, err = cfg.withDefaults(); err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, logDir: filepath.Join(cfg.Out, "logs"), infra: &procSet{}, apps: &procSet{},
		res: &Results{Started: time.Now(), Cfg: cfg, LoadBefore: loadAvg()}}
	if err := os.MkdirAll(r.logDir, 0o755); err != nil {
		return nil, err
	}
	defer r.infra.stopAll(5 * time.Second)
	if r.rdb, err = startRedis(ctx, cfg.RedisAddr, r.logDir, r.infra); err != nil {
		return nil, err
	}
	defer r.rdb.Close()
	r.res.Redis = r.rdb.Kind
	r.progress("redis: %s", r.rdb.Kind)
	if r.res.Yardstick, err = measureYardstick(ctx, r.rdb.Client()); err != nil {
		return nil, err
	}
	r.progress("yardstick: %s", r.res.Yardstick)
	if r.proxy, err = newCountingProxy(r.rdb.Addr); err != nil {
		return nil, err
	}
	defer r.proxy.Close()
	defer r.apps.stopAll(workerGrace)
	// The busy loops stop first, so that stopping the workers and the
	// emulator (up to workerGrace each) does not compete with them.
	busy := &procSet{}
	defer busy.stopAll(time.Second)
	if err := startBusyLoops(ctx, busy, cfg.BusyLoops, r.logDir); err != nil {
		return nil, err
	}
	if cfg.BusyLoops > 0 {
		r.progress("busy loops: %d processes spinning until the end", cfg.BusyLoops)
	}

	b := make([]byte, 32)
	rand.Read(b)
	r.key = hex.EncodeToString(b)
	r.appID = 1400000000 + uint64(mrand.IntN(99999999))
	faults := fmt.Sprintf("all:latency:%s,jitter:%s", cfg.Latency, cfg.Jitter)
	if _, r.simURL, err = startSim(ctx, r.apps, cfg.Bin, []string{"--rate", strconv.Itoa(cfg.Rate), "--fault", faults},
		childEnv(r.signingEnv()...), r.logDir); err != nil {
		return nil, err
	}
	r.sim = newSimClient(r.simURL)
	r.progress("emulator: %s, limit %d/s per endpoint, --fault %s", r.simURL, cfg.Rate, faults)

	conn := asynq.RedisClientOpt{Addr: r.rdb.Addr, DB: r.rdb.DB, PoolSize: 2 * enqueueWorkers}
	r.aq = asynq.NewClient(conn)
	defer r.aq.Close()
	r.enq = enqueue.NewFromAsynq(r.aq)

	if cfg.APIOnly || cfg.IndexOnly {
		cfg.Workers, cfg.SkipRecallScenarios, cfg.SkipJobs, cfg.SkipAPI, cfg.SkipIndex = nil, true, true, !cfg.APIOnly, !cfg.IndexOnly
	}
	for _, n := range cfg.Workers {
		if err := r.runMixed(ctx, n); err != nil {
			return r.res, fmt.Errorf("%d workers: %w", n, err)
		}
	}
	if !cfg.SkipRecallScenarios {
		if err := r.runRecallScenarios(ctx); err != nil {
			return r.res, err
		}
	}
	if !cfg.SkipJobs {
		if err := r.runJobs(ctx); err != nil {
			return r.res, fmt.Errorf("jobs: %w", err)
		}
	}
	if !cfg.SkipAPI {
		if err := r.runAPI(ctx); err != nil {
			return r.res, fmt.Errorf("api: %w", err)
		}
	}
	if !cfg.SkipIndex {
		if err := r.runIndex(ctx); err != nil {
			return r.res, fmt.Errorf("index: %w", err)
		}
	}
	r.res.Elapsed = time.Since(r.res.Started)
	r.res.LoadAfter = loadAvg()
	if err := r.res.writeFiles(cfg.Out); err != nil {
		return r.res, err
	}
	return r.res, nil
}

func (r *runner) progress(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "bench: "+format+"\n", args...)
}

func (r *runner) signingEnv() []string {
	return []string{"TIMQ_SDKAPPID=" + strconv.FormatUint(r.appID, 10), "TIMQ_SECRET_KEY=" + r.key}
}

// reset empties Redis and the emulator (statistics, limiter windows and
// groups) and seeds groups.
func (r *runner) reset(ctx context.Context, groups []sim.SeedGroup) error {
	if err := r.rdb.Flush(ctx); err != nil {
		return err
	}
	if err := r.sim.Reset(ctx); err != nil {
		return err
	}
	for len(groups) > 0 { // in slices, to keep each request small
		n := min(len(groups), 2000)
		if err := r.sim.Seed(ctx, groups[:n]); err != nil {
			return err
		}
		groups = groups[n:]
	}
	return nil
}

// startWorkers starts n `timq worker` processes against the emulator,
// connecting to Redis through the counting proxy, or directly when direct
// is set (the proxy costs the bench CPU that the workers then lack on a
// small machine; runs that report no Redis figures skip it).
func (r *runner) startWorkers(ctx context.Context, run string, n int, direct bool) ([]*proc, error) {
	redisAddr := r.proxy.Addr()
	if direct {
		redisAddr = r.rdb.Addr
	}
	var ws []*proc
	for i := range n {
		env := append(r.signingEnv(),
			fmt.Sprintf("TIMQ_REDIS_URL=redis://%s/%d", redisAddr, r.rdb.DB),
			"TIMQ_API_BASE="+r.simURL,
			"TIMQ_RATE="+strconv.Itoa(r.cfg.Rate))
		for _, kv := range r.cfg.WorkerEnv {
			env = append(env, strings.ReplaceAll(kv, "{i}", fmt.Sprintf("%s-%d", run, i)))
		}
		p, err := r.apps.start(ctx, fmt.Sprintf("worker-%s-%d", run, i), r.cfg.Bin,
			[]string{"worker", "--shutdown-timeout", "5s", "--log-format", "json"}, childEnv(env...), r.logDir)
		if err != nil {
			return ws, err
		}
		ws = append(ws, p)
	}
	return ws, nil
}

// stopWorkers stops the workers and returns the largest peak RSS of any.
func stopWorkers(ws []*proc) int64 {
	var peak int64
	for _, w := range ws {
		if v, err := peakRSS(w.Pid()); err == nil {
			peak = max(peak, v)
		}
	}
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Add(1)
		go func() { defer wg.Done(); w.Stop(workerGrace) }()
	}
	wg.Wait()
	return peak
}

// enqueueAll enqueues tasks with enqueueWorkers goroutines.
func (r *runner) enqueueAll(ctx context.Context, ts []*asynq.Task) error {
	var next atomic.Int64
	errs := make(chan error, enqueueWorkers)
	var wg sync.WaitGroup
	for range enqueueWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(ts) {
					return
				}
				if _, err := r.aq.EnqueueContext(ctx, ts[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func mustTask(p tasks.Payload) *asynq.Task {
	t, err := tasks.NewTask(p)
	if err != nil {
		panic(fmt.Sprintf("bench: a task the bench builds is invalid: %v", err))
	}
	return t
}

// watch samples the workers' CPU time and Redis commands every 250 ms until
// the queues are empty (when untilDrained) or limit has passed since the
// call. A worker that exits is an error.
func (r *runner) watch(ctx context.Context, ws []*proc, limit time.Duration, untilDrained bool) (samples []sample, drained bool, err error) {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		s := sample{At: time.Now(), Cmds: r.proxy.Total(), SleepsOK: true}
		if self, err := cpuSeconds(os.Getpid()); err == nil {
			s.Self = self
		}
		if m, err := machineCPU(); err == nil {
			s.Machine = m
		}
		for _, w := range ws {
			if w.Exited() {
				return samples, false, fmt.Errorf("%s exited: %v (see %s)", w.Name, w.err, filepath.Join(r.logDir, w.Name+".log"))
			}
			cpu, err := cpuSeconds(w.Pid())
			if err != nil {
				return samples, false, err
			}
			s.CPU += cpu
			n, err := sleeps(w.Pid())
			s.Sleeps += n
			s.SleepsOK = s.SleepsOK && err == nil
		}
		samples = append(samples, s)
		if untilDrained && i%2 == 1 {
			n, err := queueDepth(ctx, r.rdb.Client(), tasks.Queues())
			if err != nil {
				return samples, false, err
			}
			if n == 0 {
				return samples, true, nil
			}
		}
		if time.Now().After(deadline) {
			return samples, false, nil
		}
		select {
		case <-ctx.Done():
			return samples, false, ctx.Err()
		case <-tick.C:
		}
	}
}

// waitDrained polls the queues until they are empty or limit passes.
func (r *runner) waitDrained(ctx context.Context, limit time.Duration) (bool, error) {
	return poll(ctx, limit, func() (bool, error) {
		n, err := queueDepth(ctx, r.rdb.Client(), tasks.Queues())
		return err == nil && n == 0, err
	})
}

func workersName(n int) string {
	if n == 1 {
		return "1 worker"
	}
	return fmt.Sprintf("%d workers", n)
}

// Group ID prefixes; the run's seed groups are named from them.
const (
	clearGroups  = 50
	modifyGroups = 50
)

// runMixed runs one worker count: the mixed backlog, then the idle phase.
func (r *runner) runMixed(ctx context.Context, n int) error {
	name := workersName(n)
	runID := fmt.Sprintf("%dw", n)
	per := r.cfg.perEndpoint()
	latN := int(r.cfg.latencyPhase().Seconds() * latencyRate)

	// Clears go to 50 groups (MsgSeq rising, so every payload differs),
	// modifies to distinct messages of 50 groups, and recalls (one message
	// each) to a group of their own each: recall coalescing can then not
	// merge them, so the recall endpoint stays busy as long as the others
	// and the run measures the call budget. The recall scenarios measure
	// coalescing.
	var groups []sim.SeedGroup
	for g := range clearGroups {
		groups = append(groups, sim.SeedGroup{GroupID: fmt.Sprintf("bc-%d", g), Type: sim.GroupPublic, Messages: 10})
	}
	for g := range modifyGroups {
		groups = append(groups, sim.SeedGroup{GroupID: fmt.Sprintf("bm-%d", g), Type: sim.GroupPublic, Messages: per/modifyGroups + 1})
	}
	for i := range per {
		groups = append(groups, sim.SeedGroup{GroupID: fmt.Sprintf("br-%d", i), Type: sim.GroupPublic, Messages: 1})
	}
	groups = append(groups, latencyGroups("l", latN)...)
	if err := r.reset(ctx, groups); err != nil {
		return err
	}

	ccd := "bench"
	ts := make([]*asynq.Task, 0, 3*per)
	for i := range per {
		seq := uint64(i/clearGroups + 1)
		ts = append(ts,
			mustTask(tasks.Clear{GroupId: fmt.Sprintf("bc-%d", i%clearGroups), MsgSeq: &seq}),
			mustTask(tasks.Recall{GroupId: fmt.Sprintf("br-%d", i), MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: 1}}}),
			mustTask(tasks.Modify{GroupId: fmt.Sprintf("bm-%d", i%modifyGroups), MsgSeq: uint64(i/modifyGroups + 1), CloudCustomData: &ccd}))
	}
	start := time.Now()
	if err := r.enqueueAll(ctx, ts); err != nil {
		return fmt.Errorf("enqueue the backlog: %w", err)
	}
	r.progress("%s: enqueued %d tasks (%d per endpoint) in %v; running the backlog", name, len(ts), per, time.Since(start).Round(time.Millisecond))

	cmdsBefore := r.proxy.ByCommand()
	ws, err := r.startWorkers(ctx, runID, n, false)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	samples, drained, err := r.watch(ctx, ws, 2*r.cfg.Duration+30*time.Second, true)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	st, err := r.sim.Stats(ctx)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	cmdsAfter := r.proxy.ByCommand()
	r.progress("%s: backlog %s after %v; idle phase: %d tasks/s per endpoint for %v",
		name, map[bool]string{true: "drained", false: "NOT drained"}[drained], time.Since(start).Round(time.Second), latencyRate, r.cfg.latencyPhase())

	lat, missing, err := r.latencyPhase(ctx, "l", latN)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	peak := stopWorkers(ws)
	budgets, err := workersBudgetStats(r.logDir, ws)
	if err != nil {
		r.progress("%s: the workers' budget counters are missing (%v); the dropped column says -", name, err)
	}

	// The figures.
	var union span
	spans := map[chatapi.Endpoint]span{}
	for _, ep := range benchEndpoints {
		spans[ep] = busySpan(st.Endpoints[ep].PerSecond)
		union = union.union(spans[ep])
	}
	var unionCalls, allCalls int64
	for _, ep := range benchEndpoints {
		unionCalls += sum(st.Endpoints[ep].PerSecond, union)
		allCalls += st.Endpoints[ep].Calls
	}
	t0, t1 := st.Start.Add(time.Duration(union.From)*time.Second), st.Start.Add(time.Duration(union.To)*time.Second)
	cpu0, cmd0 := at(samples, t0)
	cpu1, cmd1 := at(samples, t1)
	self0, self1 := atSelf(samples, t0), atSelf(samples, t1)
	div := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	for _, ep := range benchEndpoints {
		es := st.Endpoints[ep]
		sp := spans[ep]
		row := Row{
			Config: name, Workers: n, Endpoint: ep.Short(), Tasks: per,
			Calls: es.Calls, BusySeconds: sp.Len(), PerSecond: rate(es.PerSecond, sp),
			MaxPerSecond: es.MaxPerSecond, MaxReadPerSecond: es.MaxReadPerSecond, Rejected: es.Codes[sim.CodePublicRateLimited],
			RedisPerCall:  div(cmd1-cmd0, float64(unionCalls)),
			CPUPer1k:      div(1000*(cpu1-cpu0), float64(unionCalls)),
			Cores:         div(cpu1-cpu0, float64(union.Len())),
			SleepsPerCall: -1,
			PeakRSS:       peak,
			BenchCores:    div(self1-self0, float64(union.Len())),
			Steal:         stealBetween(samples, t0, t1),
			Dropped:       -1,
			LatN:          len(lat[ep]), LatMissing: missing[ep],
			LatP50: percentile(lat[ep], 50), LatP99: percentile(lat[ep], 99),
			Drained: drained,
		}
		row.Ratio = row.PerSecond / float64(r.cfg.Rate)
		if n := sleepsBetween(samples, t0, t1); n >= 0 && unionCalls > 0 {
			row.SleepsPerCall = n / float64(unionCalls)
		}
		if st, ok := budgets[ep.Short()]; ok {
			row.Dropped = droppedShare(st)
		}
		r.res.Rows = append(r.res.Rows, row)
	}
	mix := CommandMix{Config: name, PerCall: map[string]float64{}}
	for k, v := range cmdsAfter {
		if d := v - cmdsBefore[k]; d > 0 && allCalls > 0 {
			mix.PerCall[k] = float64(d) / float64(allCalls)
		}
	}
	r.res.Commands = append(r.res.Commands, mix)
	r.res.Series = append(r.res.Series, series{Run: name, Clear: st.Endpoints[chatapi.EndpointClear].PerSecond,
		Recall: st.Endpoints[chatapi.EndpointRecall].PerSecond, Modify: st.Endpoints[chatapi.EndpointModify].PerSecond,
		Recalled: st.RecalledPerSecond}.trimmed())
	return nil
}

// latencyGroups are the groups latencyPhase(ctx, prefix, k) sends to, to
// seed before it runs: PREFIXc-0 .. PREFIXc-(k-1) with a message each for
// the clears, PREFIXm and PREFIXr with k messages for the modifies and the
// recalls. A prefix serves one latencyPhase per reset.
func latencyGroups(prefix string, k int) []sim.SeedGroup {
	var groups []sim.SeedGroup
	for i := range k {
		groups = append(groups, sim.SeedGroup{GroupID: fmt.Sprintf("%sc-%d", prefix, i), Type: sim.GroupPublic, Messages: 1})
	}
	return append(groups,
		sim.SeedGroup{GroupID: prefix + "m", Type: sim.GroupPublic, Messages: k},
		sim.SeedGroup{GroupID: prefix + "r", Type: sim.GroupPublic, Messages: k})
}

// latencyPhase enqueues k tasks per endpoint at latencyRate per second per
// endpoint, through the enqueue package as a backend would, to the groups of
// latencyGroups(prefix, k), then waits until the interactive queues are
// empty (jobs' lanes are not looked at) and reads from the emulator when
// each call arrived. The modify's CloudCustomData carries its enqueue time.
func (r *runner) latencyPhase(ctx context.Context, prefix string, k int) (map[chatapi.Endpoint][]time.Duration, map[chatapi.Endpoint]int, error) {
	type sent struct{ clear, recall time.Time }
	at := make([]sent, k)
	tick := time.NewTicker(time.Second / latencyRate)
	defer tick.Stop()
	for i := range k {
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-tick.C:
		}
		at[i].clear = time.Now()
		if _, err := r.enq.Clear(ctx, tasks.Clear{GroupId: fmt.Sprintf("%sc-%d", prefix, i)}); err != nil {
			return nil, nil, err
		}
		ccd := "bench-enqueued-unixnano=" + strconv.FormatInt(time.Now().UnixNano(), 10)
		if _, err := r.enq.Modify(ctx, tasks.Modify{GroupId: prefix + "m", MsgSeq: uint64(i + 1), CloudCustomData: &ccd}); err != nil {
			return nil, nil, err
		}
		at[i].recall = time.Now()
		if _, err := r.enq.Recall(ctx, tasks.Recall{GroupId: prefix + "r", MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: uint64(i + 1)}}}); err != nil {
			return nil, nil, err
		}
	}
	if _, err := r.waitDrained(ctx, 30*time.Second); err != nil {
		return nil, nil, err
	}
	lat := map[chatapi.Endpoint][]time.Duration{}
	missing := map[chatapi.Endpoint]int{}
	add := func(ep chatapi.Endpoint, from, to time.Time) {
		if to.IsZero() {
			missing[ep]++
			return
		}
		lat[ep] = append(lat[ep], to.Sub(from))
	}
	for i := range k {
		g, err := r.sim.Group(ctx, fmt.Sprintf("%sc-%d", prefix, i))
		if err != nil {
			return nil, nil, err
		}
		add(chatapi.EndpointClear, at[i].clear, g.LastClearAt)
		m, err := r.sim.Message(ctx, prefix+"m", uint64(i+1))
		if err != nil {
			return nil, nil, err
		}
		if ns, ok := strings.CutPrefix(m.CloudCustomData, "bench-enqueued-unixnano="); ok {
			v, _ := strconv.ParseInt(ns, 10, 64)
			add(chatapi.EndpointModify, time.Unix(0, v), m.ModifiedAt)
		} else {
			missing[chatapi.EndpointModify]++
		}
		m, err = r.sim.Message(ctx, prefix+"r", uint64(i+1))
		if err != nil {
			return nil, nil, err
		}
		add(chatapi.EndpointRecall, at[i].recall, m.RecalledAt)
	}
	return lat, missing, nil
}

// runRecallScenarios runs the recall scenarios with one worker.
func (r *runner) runRecallScenarios(ctx context.Context) error {
	capDur := r.cfg.recallCap()
	spread := int(2000 * capDur.Seconds())
	hot := min(20000, int(1600*capDur.Seconds()))
	if err := r.recallBacklog(ctx, "7a", fmt.Sprintf("%d single-message recalls over 50 groups", spread), 50, spread,
		1900, ">= 1,900 msg/s, <= 200 calls/s"); err != nil {
		return fmt.Errorf("scenario 7a: %w", err)
	}
	if err := r.recallBacklog(ctx, "7b", fmt.Sprintf("one hot group, %d single-message recalls", hot), 1, hot,
		1500, ">= 1,500 msg/s"); err != nil {
		return fmt.Errorf("scenario 7b: %w", err)
	}
	if err := r.loneRecall(ctx); err != nil {
		return fmt.Errorf("scenario 7c: %w", err)
	}
	return nil
}

// recallBacklog enqueues msgs single-message recalls spread round-robin over
// groups, runs one worker until they are done or recallCap passes, and
// measures messages recalled and calls per second over the busy span.
func (r *runner) recallBacklog(ctx context.Context, id, desc string, groups, msgs int, targetMsgs float64, target string) error {
	var seed []sim.SeedGroup
	for g := range groups {
		seed = append(seed, sim.SeedGroup{GroupID: fmt.Sprintf("r%s-%d", id, g), Type: sim.GroupPublic, Messages: msgs/groups + 1})
	}
	if err := r.reset(ctx, seed); err != nil {
		return err
	}
	ts := make([]*asynq.Task, msgs)
	for i := range msgs {
		ts[i] = mustTask(tasks.Recall{GroupId: fmt.Sprintf("r%s-%d", id, i%groups), MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: uint64(i/groups + 1)}}})
	}
	start := time.Now()
	if err := r.enqueueAll(ctx, ts); err != nil {
		return err
	}
	r.progress("%s: enqueued %s in %v; one worker for at most %v", id, desc, time.Since(start).Round(time.Millisecond), r.cfg.recallCap())
	ws, err := r.startWorkers(ctx, id, 1, true)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	_, drained, err := r.watch(ctx, ws, r.cfg.recallCap(), true)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	st, err := r.sim.Stats(ctx)
	stopWorkers(ws)
	if err != nil {
		return err
	}
	es := st.Endpoints[chatapi.EndpointRecall]
	sp := busySpan(es.PerSecond)
	row := RecallRow{Scenario: id, Desc: desc, Messages: msgs, Recalled: st.MessagesRecalled, BusySeconds: sp.Len(),
		MsgPerSecond: rate(st.RecalledPerSecond, sp), CallsPerSecond: rate(es.PerSecond, sp),
		MaxPerSecond: es.MaxPerSecond, MaxReadPerSecond: es.MaxReadPerSecond, Rejected: es.Codes[sim.CodePublicRateLimited], Target: target, Drained: drained}
	if c := sum(es.PerSecond, sp); c > 0 {
		row.MsgPerCall = float64(sum(st.RecalledPerSecond, sp)) / float64(c)
	}
	row.Met = "NO"
	if sp.Len() == 0 {
		row.Met = "-"
	} else if row.MsgPerSecond >= targetMsgs && row.MaxPerSecond <= int64(r.cfg.Rate) && row.Rejected == 0 {
		row.Met = "yes"
	}
	r.res.Recall = append(r.res.Recall, row)
	r.res.Series = append(r.res.Series, series{Run: id + " recall", Recall: es.PerSecond, Recalled: st.RecalledPerSecond}.trimmed())
	return nil
}

// loneRecalls is how many lone recalls scenario 7c sends.
const loneRecalls = 20

// loneRecall sends single recalls to an idle worker, one at a time, and
// measures enqueue-to-call for each.
func (r *runner) loneRecall(ctx context.Context) error {
	k := loneRecalls
	if r.cfg.Duration < 10*time.Second {
		k = 8
	}
	if err := r.reset(ctx, []sim.SeedGroup{{GroupID: "lone", Type: sim.GroupPublic, Messages: k}}); err != nil {
		return err
	}
	ws, err := r.startWorkers(ctx, "7c", 1, true)
	if err != nil {
		stopWorkers(ws)
		return err
	}
	defer stopWorkers(ws)
	r.progress("7c: %d lone recalls to an idle worker", k)
	time.Sleep(time.Second) // let the worker start and go idle
	var lat []time.Duration
	for i := 1; i <= k; i++ {
		sent := time.Now()
		if _, err := r.enq.Recall(ctx, tasks.Recall{GroupId: "lone", MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: uint64(i)}}}); err != nil {
			return err
		}
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			m, err := r.sim.Message(ctx, "lone", uint64(i))
			if err != nil {
				return err
			}
			if !m.RecalledAt.IsZero() {
				lat = append(lat, m.RecalledAt.Sub(sent))
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		// Wait a varying while so that enqueues fall at varying points of
		// the worker's idle poll.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(150+(i*37)%200) * time.Millisecond):
		}
	}
	st, err := r.sim.Stats(ctx)
	if err != nil {
		return err
	}
	es := st.Endpoints[chatapi.EndpointRecall]
	row := RecallRow{Scenario: "7c", Desc: "lone recall to an idle worker", Messages: k, Recalled: st.MessagesRecalled,
		MaxPerSecond: es.MaxPerSecond, MaxReadPerSecond: es.MaxReadPerSecond, Rejected: es.Codes[sim.CodePublicRateLimited],
		LatN: len(lat), LatP50: percentile(lat, 50), LatP99: percentile(lat, 99), LatMax: percentile(lat, 100),
		Target: "sent <= 10 ms after dequeue", Met: "-", Drained: len(lat) == k}
	r.res.Recall = append(r.res.Recall, row)
	return nil
}
