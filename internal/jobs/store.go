// Package jobs stores bulk jobs in Redis and feeds their operations into
// asynq a window at a time.
//
// # Layout
//
// A job's keys share the hash tag {ID}, so a Redis Cluster keeps them on one
// node and the scripts below may touch them together:
//
//	timq:job:{ID}                 hash: name, state, weight, times and counts
//	timq:job:{ID}:ops:ENDPOINT    list: the payload JSON of each operation
//	timq:job:{ID}:done:ENDPOINT   bitmap: operation i has been counted
//	timq:job:{ID}:failures        list: JSON of each dead-lettered operation
//	timq:job:{ID}:progress        list: recent "unix ms:processed" samples, newest first
//	timq:jobs                     sorted set: every job ID by creation time
//	timq:jobs:active              set: the jobs that have not ended
//
// The operations wait in the compact lists, not as asynq tasks: a task is
// made for an operation only when the feeder puts it into the job lane, a
// few seconds of work ahead of the API (see Feeder). The task's ID names its
// job, endpoint and index ("job:ID:ENDPOINT:INDEX"), which makes feeding
// idempotent (asynq refuses a second task with an ID it holds) and lets the
// worker count an operation once, however often it runs: the done bitmap's
// bit is set in the same script that moves the counts.
//
// # Counts
//
// total = waiting + in flight + applied + dead-lettered + cancelled at any
// moment, where "in flight" is fed and not yet counted. The job ends when
// applied + dead-lettered + cancelled = total; its operation lists and
// bitmaps are then deleted and the hash and failures expire after the
// retention.
package jobs

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/tasks"
)

// States of a job.
const (
	StateQueued    = "queued"    // created, nothing fed yet
	StateRunning   = "running"   // being fed
	StatePaused    = "paused"    // not fed; its tasks in the lane wait
	StateCancelled = "cancelled" // no further operation reaches the API
	StateDone      = "done"      // every operation applied or dead-lettered
)

// DefaultRetention is how long an ended job's summary and failures stay.
const DefaultRetention = 30 * 24 * time.Hour

// Endpoints names the job lists' endpoints, in the order clear, recall,
// modify; they are the task types without the "timq:" prefix.
var Endpoints = []string{"clear", "recall", "modify"}

// endpointOf returns the endpoint name of a task type, or "".
func endpointOf(taskType string) string {
	switch taskType {
	case tasks.TypeClear:
		return "clear"
	case tasks.TypeRecall:
		return "recall"
	case tasks.TypeModify:
		return "modify"
	}
	return ""
}

// TypeOf returns the task type of an endpoint name.
func TypeOf(endpoint string) string { return "timq:" + endpoint }

// LaneQueue returns the job lane's queue of a task type: the worker serves
// it after every interactive queue of the same endpoint.
func LaneQueue(taskType string) string { return lanePrefix + endpointOf(taskType) }

const lanePrefix = "timq-job-"

// IsLane reports whether queue is a job lane.
func IsLane(queue string) bool {
	return strings.HasPrefix(queue, lanePrefix) && endpointOf(TypeOf(strings.TrimPrefix(queue, lanePrefix))) != ""
}

func jobKey(id string) string      { return "timq:job:{" + id + "}" }
func opsKey(id, ep string) string  { return jobKey(id) + ":ops:" + ep }
func doneKey(id, ep string) string { return jobKey(id) + ":done:" + ep }
func failuresKey(id string) string { return jobKey(id) + ":failures" }
func progressKey(id string) string { return jobKey(id) + ":progress" }
func taskID(id, ep string, i int64) string {
	return "job:" + id + ":" + ep + ":" + strconv.FormatInt(i, 10)
}

const (
	allJobsKey    = "timq:jobs"
	activeJobsKey = "timq:jobs:active"
)

// ErrNotFound is returned for an unknown job ID.
var ErrNotFound = errors.New("no such job")

// ErrEnded is returned by Pause, Resume and Cancel for a job that ended.
var ErrEnded = errors.New("the job has ended")

// Counts are a job's operation counts. Total = Waiting + InFlight + Applied
// + DeadLettered + Cancelled.
type Counts struct {
	Total        int64 `json:"total"`
	Waiting      int64 `json:"waiting"`
	InFlight     int64 `json:"in_flight"`
	Applied      int64 `json:"applied"`
	DeadLettered int64 `json:"dead_lettered"`
	Cancelled    int64 `json:"cancelled"`
}

// Job is a job's summary.
type Job struct {
	ID       string            `json:"id"`
	Name     string            `json:"name,omitempty"`
	State    string            `json:"state"`
	Weight   int               `json:"weight"`
	Created  time.Time         `json:"created"`
	Ended    *time.Time        `json:"ended,omitempty"`
	Counts   Counts            `json:"counts"`
	ByType   map[string]Counts `json:"by_type"`
	Finished bool              `json:"finished"`
	// Rate is how many operations a second the job applied or
	// dead-lettered over its recent progress (up to ProgressSpan); 0 when
	// it made none, is paused or has ended.
	Rate float64 `json:"rate"`
	// ETA is when the job should end at Rate; nil without a Rate.
	ETA *time.Time `json:"eta,omitempty"`
	// RecallMessages counts the messages of the job's recall operations
	// (an operation carries up to 10): Applied are recalled. Nil for a job
	// without recalls.
	RecallMessages *Counts `json:"recall_messages,omitempty"`
	// Retention is how long the summary and failures stay after the end.
	Retention Duration `json:"retention"`
	// Notice is the completion notice's state; nil for a job without one.
	// The notice URL itself is not shown: it may carry a receiver's token.
	Notice *Notice `json:"notice,omitempty"`
}

// Duration is a time.Duration that reads and writes as a string like "720h0m0s".
type Duration time.Duration

// MarshalText writes d as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads what MarshalText writes.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// ProgressSpan is how far back a job's Rate looks.
const ProgressSpan = time.Minute

// progressEvery is how often the feeder samples a running job's progress.
const progressEvery = 5 * time.Second

// Failure is one dead-lettered operation of a job: Op and the payload's
// fields form a line `timq bulk` takes again.
type Failure struct {
	Op      string          `json:"op"`
	Payload json.RawMessage `json:"payload"`
	Code    int             `json:"code,omitempty"`
	Info    string          `json:"info,omitempty"`
	TaskID  string          `json:"task_id"`
}

// Store reads and writes jobs.
type Store struct {
	rdb       redis.UniversalClient
	retention time.Duration
	now       func() time.Time
}

// NewStore returns a Store on rdb. retention <= 0 means DefaultRetention.
func NewStore(rdb redis.UniversalClient, retention time.Duration) *Store {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Store{rdb: rdb, retention: retention, now: time.Now}
}

// NewID returns a new job ID: time-ordered, 20 characters.
func NewID(now time.Time) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(now.UnixMilli(), 36) + hex.EncodeToString(b[:])
}

// CheckID returns an error unless id could be a job ID.
func CheckID(id string) error {
	if id == "" || len(id) > 64 || strings.ContainsAny(id, "{}: \t\r\n") {
		return fmt.Errorf("job ID %q is not one timq makes", id)
	}
	return nil
}

// Writer adds a new job's operations. Close makes the job visible to the
// feeder; a Writer that is not closed leaves no job behind once Abort runs.
// It is safe for concurrent use; operations of one endpoint keep the order
// of the Add calls that returned.
type Writer struct {
	mu      sync.Mutex
	s       *Store
	id      string
	spec    Spec
	buf     map[string][]any
	total   map[string]int64
	msgs    int64 // messages of the recall operations
	created time.Time
	closed  bool
}

// unclosedTTL is how long the operations of a job that was never closed
// stay in Redis.
const unclosedTTL = time.Hour

// writerFlush is how many operations of an endpoint a Writer sends at once.
const writerFlush = 2000

// Spec describes a new job.
type Spec struct {
	// Name tells the job apart in listings; optional.
	Name string
	// Weight (at least 1) is its share of the job lane against other
	// running jobs.
	Weight int
	// Retention is how long its summary and failures stay after it ends;
	// 0 means the Store's.
	Retention time.Duration
	// Notify, when set, is the http or https URL the job's summary is
	// POSTed to when it ends (see Notifier).
	Notify string
	// Replicas, when above 0, makes Close return only once that many
	// replicas of each Redis primary involved hold the job: first its
	// operations (before the job is visible; a failure deletes them and
	// queues nothing), then its hash and listings. ConfirmTimeout bounds
	// it (default DefaultConfirmTimeout).
	Replicas       int
	ConfirmTimeout time.Duration
}

// Create starts a new job.
func (s *Store) Create(spec Spec) (*Writer, error) {
	if spec.Weight < 1 {
		return nil, fmt.Errorf("jobs: the weight must be at least 1, got %d", spec.Weight)
	}
	if spec.Retention < 0 || (spec.Retention > 0 && spec.Retention < time.Second) {
		return nil, fmt.Errorf("jobs: the retention must be at least 1s, got %v", spec.Retention)
	}
	if spec.Retention == 0 {
		spec.Retention = s.retention
	}
	if spec.Notify != "" {
		if err := CheckNotifyURL(spec.Notify); err != nil {
			return nil, fmt.Errorf("jobs: %w", err)
		}
	}
	now := s.now()
	return &Writer{s: s, id: NewID(now), spec: spec, buf: map[string][]any{}, total: map[string]int64{}, created: now}, nil
}

// ID returns the job's ID.
func (w *Writer) ID() string { return w.id }

// Add appends one operation. The payload must be valid.
func (w *Writer) Add(ctx context.Context, p tasks.Payload) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errors.New("jobs: Add after Close")
	}
	ep := endpointOf(p.TaskType())
	if ep == "" {
		return fmt.Errorf("jobs: unknown task type %q", p.TaskType())
	}
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("jobs: encode %s: %w", p.TaskType(), err)
	}
	w.buf[ep] = append(w.buf[ep], b)
	w.total[ep]++
	if r, ok := p.(tasks.Recall); ok {
		w.msgs += int64(len(r.MsgSeqList))
	}
	if len(w.buf[ep]) >= writerFlush {
		return w.flush(ctx, ep)
	}
	return nil
}

func (w *Writer) flush(ctx context.Context, ep string) error {
	if len(w.buf[ep]) == 0 {
		return nil
	}
	// Until Close, the lists expire: a producer that dies mid-write leaves
	// nothing behind for long.
	_, err := w.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, opsKey(w.id, ep), w.buf[ep]...)
		p.Expire(ctx, opsKey(w.id, ep), unclosedTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("jobs: store operations: %w", err)
	}
	w.buf[ep] = w.buf[ep][:0]
	return nil
}

// Close stores the rest and the job's hash and makes it active. A job with
// no operation is refused.
func (w *Writer) Close(ctx context.Context) (Job, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Job{}, errors.New("jobs: Close twice")
	}
	var total int64
	for _, ep := range Endpoints {
		if err := w.flush(ctx, ep); err != nil {
			return Job{}, err
		}
		total += w.total[ep]
	}
	if total == 0 {
		w.abortLocked(ctx)
		return Job{}, errors.New("jobs: a job needs at least one operation")
	}
	var deadline time.Time
	if w.spec.Replicas > 0 {
		// The operations first, while the job is invisible: a job whose
		// lists a failover lost is never seen, only refused here.
		deadline = time.Now().Add(cmp.Or(w.spec.ConfirmTimeout, DefaultConfirmTimeout))
		var checks []check
		for _, ep := range Endpoints {
			if w.total[ep] > 0 {
				checks = append(checks, check{key: opsKey(w.id, ep), kind: "list", want: w.total[ep], fence: jobKey(w.id) + ":fence"})
			}
		}
		if err := confirm(ctx, w.s.rdb, w.spec.Replicas, deadline, checks); err != nil {
			w.abortLocked(ctx)
			return Job{}, fmt.Errorf("jobs: the job's operations, on %d replica(s): %w; nothing was queued", w.spec.Replicas, err)
		}
	}
	w.closed = true
	fields := map[string]any{
		"name": w.spec.Name, "state": StateQueued, "weight": w.spec.Weight,
		"created_ms": w.created.UnixMilli(), "total": total,
		"retention_s": int64(w.spec.Retention / time.Second),
	}
	if w.spec.Notify != "" {
		fields["notify"] = w.spec.Notify
		fields["notice"] = NoticePending
	}
	for _, ep := range Endpoints {
		fields["total:"+ep] = w.total[ep]
	}
	if w.msgs > 0 {
		fields["msgs:total"] = w.msgs
	}
	_, err := w.s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, jobKey(w.id), fields)
		for _, ep := range Endpoints {
			if w.total[ep] > 0 {
				p.Persist(ctx, opsKey(w.id, ep))
			}
		}
		return nil
	})
	if err == nil {
		_, err = w.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.ZAdd(ctx, allJobsKey, redis.Z{Score: float64(w.created.UnixMilli()), Member: w.id})
			p.SAdd(ctx, activeJobsKey, w.id)
			return nil
		})
	}
	if err != nil {
		return Job{}, fmt.Errorf("jobs: store job: %w", err)
	}
	if w.spec.Replicas > 0 {
		checks := []check{
			{key: jobKey(w.id), kind: "hash", member: "created_ms", fence: jobKey(w.id) + ":fence"},
			{key: allJobsKey, kind: "zset", member: w.id, fence: "timq:fence:{" + allJobsKey + "}"},
			{key: activeJobsKey, kind: "set", member: w.id, fence: "timq:fence:{" + activeJobsKey + "}"},
		}
		if err := confirm(ctx, w.s.rdb, w.spec.Replicas, deadline, checks); err != nil {
			j, _ := w.s.Get(ctx, w.id)
			j.ID = w.id
			return j, fmt.Errorf("jobs: job %s, on %d replica(s): %w; it may be queued (timq jobs show %s)", w.id, w.spec.Replicas, err, w.id)
		}
	}
	return w.s.Get(ctx, w.id)
}

// Abort deletes what a Writer stored; use it when the producer gives up.
func (w *Writer) Abort(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.abortLocked(ctx)
}

func (w *Writer) abortLocked(ctx context.Context) {
	if w.closed {
		return
	}
	w.closed = true
	keys := []string{}
	for _, ep := range Endpoints {
		keys = append(keys, opsKey(w.id, ep))
	}
	_ = w.s.rdb.Del(context.WithoutCancel(ctx), keys...).Err()
}

// Get returns a job's summary, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Job, error) {
	if err := CheckID(id); err != nil {
		return Job{}, fmt.Errorf("%w: %v", ErrNotFound, err)
	}
	var hc *redis.MapStringStringCmd
	var pc *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		hc = p.HGetAll(ctx, jobKey(id))
		pc = p.LRange(ctx, progressKey(id), 0, -1)
		return nil
	})
	if err != nil {
		return Job{}, fmt.Errorf("jobs: read job %s: %w", id, err)
	}
	h := hc.Val()
	if len(h) == 0 {
		return Job{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	j := parseJob(id, h)
	j.Rate, j.ETA = rate(j, pc.Val(), s.now())
	return j, nil
}

// rate returns a job's rate over its progress samples within ProgressSpan
// of now, and the end it predicts. The rate runs from the oldest such
// sample to now and the job's current counts.
func rate(j Job, samples []string, now time.Time) (float64, *time.Time) {
	if j.Finished || j.State == StatePaused || len(samples) == 0 {
		return 0, nil
	}
	processed := j.Counts.Applied + j.Counts.DeadLettered
	var oldest time.Time
	var from int64
	for _, smp := range samples {
		ms, n, ok := strings.Cut(smp, ":")
		t, err1 := strconv.ParseInt(ms, 10, 64)
		v, err2 := strconv.ParseInt(n, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			continue
		}
		at := time.UnixMilli(t)
		if now.Sub(at) > ProgressSpan {
			break // newest first: the rest are older
		}
		oldest, from = at, v
	}
	span := now.Sub(oldest).Seconds()
	if oldest.IsZero() || span < 1 || processed <= from {
		return 0, nil
	}
	r := float64(processed-from) / span
	left := j.Counts.Waiting + j.Counts.InFlight
	eta := now.Add(time.Duration(float64(left) / r * float64(time.Second))).UTC().Truncate(time.Second)
	return r, &eta
}

// sampleProgress records a running job's processed count for its Rate.
func (s *Store) sampleProgress(ctx context.Context, id string, processed int64) error {
	k := progressKey(id)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, k, strconv.FormatInt(s.now().UnixMilli(), 10)+":"+strconv.FormatInt(processed, 10))
		p.LTrim(ctx, k, 0, int64(ProgressSpan/progressEvery)+1)
		p.Expire(ctx, k, 2*ProgressSpan)
		return nil
	})
	return err
}

func parseJob(id string, h map[string]string) Job {
	n := func(k string) int64 { v, _ := strconv.ParseInt(h[k], 10, 64); return v }
	j := Job{ID: id, Name: h["name"], State: h["state"], Weight: int(n("weight")), Created: time.UnixMilli(n("created_ms")).UTC(), ByType: map[string]Counts{},
		Retention: Duration(time.Duration(n("retention_s")) * time.Second)}
	if st := h["notice"]; st != "" {
		j.Notice = &Notice{State: st, Attempts: int(n("notice_attempts")), Error: h["notice_error"]}
		if ms := n("notice_sent_ms"); ms > 0 {
			t := time.UnixMilli(ms).UTC()
			j.Notice.Sent = &t
		}
	}
	if e := n("ended_ms"); e > 0 {
		t := time.UnixMilli(e).UTC()
		j.Ended, j.Finished = &t, true
	}
	for _, ep := range Endpoints {
		c := Counts{
			Total: n("total:" + ep), Applied: n("applied:" + ep), DeadLettered: n("dead:" + ep), Cancelled: n("cancelled:" + ep),
		}
		fed, fin := n("fed:"+ep), n("fin:"+ep)
		c.InFlight = max(0, fed-fin)
		if j.State == StateCancelled {
			c.InFlight = max(0, min(fed, n("cancel_from:"+ep))-fin)
		}
		c.Waiting = max(0, c.Total-c.InFlight-c.Applied-c.DeadLettered-c.Cancelled)
		j.ByType[TypeOf(ep)] = c
		j.Counts.Total += c.Total
		j.Counts.Waiting += c.Waiting
		j.Counts.InFlight += c.InFlight
		j.Counts.Applied += c.Applied
		j.Counts.DeadLettered += c.DeadLettered
		j.Counts.Cancelled += c.Cancelled
	}
	if total := n("msgs:total"); total > 0 {
		m := Counts{Total: total, Applied: n("msgs:recalled"), DeadLettered: n("msgs:dead"), Cancelled: n("msgs:cancelled")}
		if j.State != StateCancelled {
			m.Waiting = max(0, total-n("msgs:fed"))
		}
		m.InFlight = max(0, total-m.Waiting-m.Applied-m.DeadLettered-m.Cancelled)
		j.RecallMessages = &m
	}
	return j
}

// List returns the jobs, newest first, at most limit (0: all).
func (s *Store) List(ctx context.Context, limit int) ([]Job, error) {
	stop := int64(-1)
	if limit > 0 {
		stop = int64(limit - 1)
	}
	ids, err := s.rdb.ZRevRange(ctx, allJobsKey, 0, stop).Result()
	if err != nil {
		return nil, fmt.Errorf("jobs: list: %w", err)
	}
	out := make([]Job, 0, len(ids))
	for _, id := range ids {
		j, err := s.Get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			_ = s.rdb.ZRem(ctx, allJobsKey, id).Err() // expired after its retention
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, nil
}

// CountByState returns how many jobs are kept in each state. It reads one
// field of every kept job, in one pipeline.
func (s *Store) CountByState(ctx context.Context) (map[string]int64, error) {
	ids, err := s.rdb.ZRange(ctx, allJobsKey, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("jobs: list: %w", err)
	}
	cmds := make([]*redis.StringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGet(ctx, jobKey(id), "state")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("jobs: read states: %w", err)
	}
	out := map[string]int64{}
	for _, c := range cmds {
		if st, err := c.Result(); err == nil {
			out[st]++
		}
	}
	return out, nil
}

// Failures returns the dead-lettered operations of a job, in the order they
// failed.
func (s *Store) Failures(ctx context.Context, id string) ([]Failure, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	raw, err := s.rdb.LRange(ctx, failuresKey(id), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("jobs: read failures: %w", err)
	}
	out := make([]Failure, 0, len(raw))
	for _, r := range raw {
		var f Failure
		if json.Unmarshal([]byte(r), &f) == nil {
			out = append(out, f)
		}
	}
	return out, nil
}

// Pause stops feeding the job; its tasks already in the lane wait without
// reaching the API until Resume.
func (s *Store) Pause(ctx context.Context, id string) (Job, error) {
	return s.setState(ctx, id, StatePaused)
}

// Resume feeds a paused job again.
func (s *Store) Resume(ctx context.Context, id string) (Job, error) {
	return s.setState(ctx, id, StateRunning)
}

func (s *Store) setState(ctx context.Context, id, state string) (Job, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return Job{}, err
	}
	r, err := setStateScript.Run(ctx, s.rdb, []string{jobKey(id)}, state).Int()
	if err != nil {
		return Job{}, fmt.Errorf("jobs: %s: %w", state, err)
	}
	if r == 0 {
		j, _ := s.Get(ctx, id)
		return j, fmt.Errorf("%w: %s is %s", ErrEnded, id, j.State)
	}
	return s.Get(ctx, id)
}

var setStateScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st == false or st == 'done' or st == 'cancelled' then return 0 end
if ARGV[1] == 'running' and st == 'queued' then return 1 end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
return 1`)

// Cancel stops the job: no further operation reaches the API, those already
// sent finish and are counted as they end.
func (s *Store) Cancel(ctx context.Context, id string) (Job, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return Job{}, err
	}
	r, err := cancelScript.Run(ctx, s.rdb, s.opKeys(id), s.now().UnixMilli(), int64(s.retention/time.Second)).Int()
	if err != nil {
		return Job{}, fmt.Errorf("jobs: cancel: %w", err)
	}
	j, gerr := s.Get(ctx, id)
	if r == 0 {
		return j, fmt.Errorf("%w: %s is %s", ErrEnded, id, j.State)
	}
	return j, gerr
}

// maybeEnd is Lua shared by the scripts that move counts: KEYS[1] the job
// hash, KEYS[2] its failures, KEYS[3..8] ops and done keys; now, and the
// ttl of a job that stored no retention of its own.
const maybeEnd = `
local function maybe_end(now, ttl)
  local t = redis.call('HMGET', KEYS[1], 'total', 'applied', 'dead', 'cancelled', 'state', 'retention_s')
  if tonumber(t[6]) then ttl = t[6] end
  if tonumber(t[2] or 0) + tonumber(t[3] or 0) + tonumber(t[4] or 0) < tonumber(t[1]) then return 0 end
  if t[5] ~= 'cancelled' then redis.call('HSET', KEYS[1], 'state', 'done') end
  redis.call('HSET', KEYS[1], 'ended_ms', now)
  for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  return 1
end
`

var cancelScript = redis.NewScript(maybeEnd + `
local st = redis.call('HGET', KEYS[1], 'state')
if st == false or st == 'done' or st == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled')
for _, ep in ipairs({'clear', 'recall', 'modify'}) do
  local total = tonumber(redis.call('HGET', KEYS[1], 'total:' .. ep) or 0)
  local fed = tonumber(redis.call('HGET', KEYS[1], 'fed:' .. ep) or 0)
  redis.call('HSET', KEYS[1], 'cancel_from:' .. ep, fed)
  if total > fed then
    redis.call('HINCRBY', KEYS[1], 'cancelled:' .. ep, total - fed)
    redis.call('HINCRBY', KEYS[1], 'cancelled', total - fed)
  end
end
local msgs = tonumber(redis.call('HGET', KEYS[1], 'msgs:total') or 0)
local msgsFed = tonumber(redis.call('HGET', KEYS[1], 'msgs:fed') or 0)
if msgs > msgsFed then redis.call('HINCRBY', KEYS[1], 'msgs:cancelled', msgs - msgsFed) end
maybe_end(ARGV[1], ARGV[2])
return 1`)

// Outcome is how a job's operation ended.
type Outcome string

// Outcomes of an operation.
const (
	Applied      Outcome = "applied"
	DeadLettered Outcome = "dead"
	Cancelled    Outcome = "cancelled"
)

// Op identifies a job's operation from its task ID.
type Op struct {
	Job      string
	Endpoint string
	Index    int64
}

// ParseTaskID returns the operation a job lane task ID names, or false for
// any other task.
func ParseTaskID(id string) (Op, bool) {
	rest, ok := strings.CutPrefix(id, "job:")
	if !ok {
		return Op{}, false
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 3 || endpointOf(TypeOf(parts[1])) == "" {
		return Op{}, false
	}
	i, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || i < 0 {
		return Op{}, false
	}
	return Op{Job: parts[0], Endpoint: parts[1], Index: i}, true
}

// doneKeyIndex is the 1-based index in opKeys of an endpoint's bitmap.
func doneKeyIndex(ep string) int {
	for i, e := range Endpoints {
		if e == ep {
			return 4 + 2*i
		}
	}
	return 0
}

func (s *Store) opKeys(id string) []string {
	keys := []string{jobKey(id), failuresKey(id)}
	for _, ep := range Endpoints {
		keys = append(keys, opsKey(id, ep), doneKey(id, ep))
	}
	return append(keys, progressKey(id))
}

// Decision is what the worker does with a job's task when it starts.
type Decision int

// Decisions of Begin.
const (
	Run  Decision = iota // make the call
	Skip                 // counted already, or the job is gone: do nothing
	Wait                 // paused: hand the task back for later
	Drop                 // cancelled: count it cancelled, make no call
)

// Begin tells the worker what to do with op's task.
func (s *Store) Begin(ctx context.Context, op Op) (Decision, error) {
	r, err := beginScript.Run(ctx, s.rdb, []string{jobKey(op.Job), doneKey(op.Job, op.Endpoint)}, op.Endpoint, op.Index).Int()
	if err != nil {
		return Run, fmt.Errorf("jobs: read job %s: %w", op.Job, err)
	}
	return Decision(r), nil
}

var beginScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st == false or st == 'done' then return 1 end
if redis.call('HEXISTS', KEYS[1], 'ended_ms') == 1 then return 1 end
if redis.call('GETBIT', KEYS[2], ARGV[2]) == 1 then return 1 end
if st == 'paused' then return 2 end
if st == 'cancelled' then
  local from = tonumber(redis.call('HGET', KEYS[1], 'cancel_from:' .. ARGV[1]) or 0)
  if tonumber(ARGV[2]) >= from then return 1 end
  return 3
end
return 0`)

// Messages is how a recall operation's messages ended.
type Messages struct {
	Recalled, DeadLettered, Cancelled int
}

// Finish counts op's outcome once, and for a recall its messages' (msgs);
// a failure is recorded with the job. It reports whether this call counted
// it.
func (s *Store) Finish(ctx context.Context, op Op, outcome Outcome, f *Failure, msgs Messages) (bool, error) {
	var fj string
	if f != nil {
		b, _ := json.Marshal(f)
		fj = string(b)
	}
	ctx = context.WithoutCancel(ctx)
	r, err := finishScript.Run(ctx, s.rdb, s.opKeys(op.Job), op.Endpoint, op.Index, string(outcome), fj,
		s.now().UnixMilli(), int64(s.retention/time.Second), doneKeyIndex(op.Endpoint),
		msgs.Recalled, msgs.DeadLettered, msgs.Cancelled).Int()
	if err != nil {
		return false, fmt.Errorf("jobs: count %s of job %s: %w", outcome, op.Job, err)
	}
	return r == 1, nil
}

var finishScript = redis.NewScript(maybeEnd + `
local st = redis.call('HGET', KEYS[1], 'state')
if st == false or st == 'done' then return 0 end
-- An ended job (a cancelled one too) has no bitmaps left to check: count nothing.
if redis.call('HEXISTS', KEYS[1], 'ended_ms') == 1 then return 0 end
local ep, idx, outcome = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if st == 'cancelled' then
  local from = tonumber(redis.call('HGET', KEYS[1], 'cancel_from:' .. ep) or 0)
  if idx >= from then return 0 end
end
local done = KEYS[tonumber(ARGV[7])]
if redis.call('GETBIT', done, idx) == 1 then return 0 end
redis.call('SETBIT', done, idx, 1)
redis.call('HINCRBY', KEYS[1], 'fin:' .. ep, 1)
redis.call('HINCRBY', KEYS[1], outcome .. ':' .. ep, 1)
redis.call('HINCRBY', KEYS[1], outcome, 1)
if ARGV[4] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[4]) end
for i, k in ipairs({'msgs:recalled', 'msgs:dead', 'msgs:cancelled'}) do
  local v = tonumber(ARGV[7 + i])
  if v > 0 then redis.call('HINCRBY', KEYS[1], k, v) end
end
maybe_end(ARGV[5], ARGV[6])
return 1`)
