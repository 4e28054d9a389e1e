package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// Permanent-failure codes a Plan mixes in, with the emulator's reasons.
const (
	CodeNoPermission = sim.CodeNoPermission // 10007: AVChatRoom modify, Community clear
	CodeGroupMissing = sim.CodeGroupMissing // 10010
	CodeBadGroupID   = sim.CodeBadGroupID   // 10015
	CodeMsgMissing   = sim.CodeMsgMissing   // 10030
)

// Mix is what a Plan holds.
type Mix struct {
	// Prefix starts every group ID and task ID, so plans never collide.
	Prefix string
	// Modify, Recall and Clear are how many tasks of each type succeed.
	Modify, Recall, Clear int
	// RecallSize is how many messages each recall task recalls (default 3).
	RecallSize int
	// Permanent is how many of each permanent-failure kind are mixed in:
	// clear of a missing group (10010), clear of a malformed group ID
	// (10015), modify in an AVChatRoom (10007), clear of a Community (10007),
	// modify of a missing message (10030), and a recall whose middle message
	// is missing (that message 10030, the others recalled).
	Permanent int
	// MaxRetry is each task's asynq MaxRetry (default 25: with the faults
	// the tests inject, running out is practically impossible; negative
	// means 0, every attempt the last).
	MaxRetry int
}

// Op is one enqueued task and the outcome each of its operations must end in.
type Op struct {
	// ID is the task's asynq ID, chosen by the plan so a producer can retry
	// an enqueue whose answer was lost without queuing the task twice.
	ID      string
	Payload tasks.Payload
	// Want maps each operation of the task (the MsgSeq of a clear or
	// modify, each message of a recall) to the ErrorCode it must be
	// dead-lettered with, or 0 when it must be applied.
	Want map[uint64]int
	// Text is the text a modify writes.
	Text string
}

func (o *Op) group() string {
	switch p := o.Payload.(type) {
	case tasks.Clear:
		return p.GroupId
	case tasks.Recall:
		return p.GroupId
	case tasks.Modify:
		return p.GroupId
	}
	return ""
}

// DeadLettered reports whether any operation of o must be dead-lettered.
func (o *Op) DeadLettered() bool {
	for _, c := range o.Want {
		if c != 0 {
			return true
		}
	}
	return false
}

// entryID is the dead-letter ID of operation seq of o.
func (o *Op) entryID(seq uint64) string {
	if o.Payload.TaskType() == tasks.TypeRecall {
		return dlq.RecallEntryID(o.ID, seq)
	}
	return o.ID
}

// Plan is a set of operations, the groups they need, and the outcome each
// must have. Every message is the target of at most one operation, so each
// operation's effect can be told apart in the emulator's state.
type Plan struct {
	Mix    Mix
	Ops    []*Op
	Groups []sim.SeedGroup
	// CrashOnLastAttempt accepts, for an operation planned to succeed, a
	// dead letter with reason "archived": a worker killed during a task's
	// last attempt leaves asynq to archive it, and the worker's archive
	// reconciler dead-letters it. If the cut attempt had reached the API the
	// operation is also applied; that is counted in CrashArchivedApplied,
	// not as a problem (requeueing it is harmless: operations are idempotent).
	CrashOnLastAttempt bool
}

const (
	modifyGroupSize = 50
	recallGroupSize = 60
)

// NewPlan lays out the operations of m.
func NewPlan(m Mix) *Plan {
	if m.RecallSize == 0 {
		m.RecallSize = 3
	}
	switch {
	case m.MaxRetry == 0:
		m.MaxRetry = 25
	case m.MaxRetry < 0:
		m.MaxRetry = 0
	}
	p := &Plan{Mix: m}
	pre := m.Prefix
	// Modifies: modifyGroupSize per group, one per message.
	for i := 0; i < m.Modify; i++ {
		g, seq := fmt.Sprintf("%s-m-%d", pre, i/modifyGroupSize), uint64(i%modifyGroupSize+1)
		if seq == 1 {
			p.Groups = append(p.Groups, sim.SeedGroup{GroupID: g, Type: sim.GroupPublic, Messages: modifyGroupSize})
		}
		text := fmt.Sprintf("%s modify %d", pre, i)
		p.add(fmt.Sprintf("%s-modify-%06d", pre, i), tasks.Modify{GroupId: g, MsgSeq: seq, MsgBody: tasks.TextBody(text)}, text, map[uint64]int{seq: 0})
	}
	// Recalls: consecutive runs of RecallSize messages.
	perGroup := recallGroupSize / m.RecallSize
	for i := 0; i < m.Recall; i++ {
		g := fmt.Sprintf("%s-r-%d", pre, i/perGroup)
		if i%perGroup == 0 {
			p.Groups = append(p.Groups, sim.SeedGroup{GroupID: g, Type: sim.GroupPublic, Messages: recallGroupSize})
		}
		first := uint64((i%perGroup)*m.RecallSize + 1)
		r := tasks.Recall{GroupId: g}
		want := map[uint64]int{}
		for s := first; s < first+uint64(m.RecallSize); s++ {
			r.MsgSeqList = append(r.MsgSeqList, chatapi.MsgSeqItem{MsgSeq: s})
			want[s] = 0
		}
		p.add(fmt.Sprintf("%s-recall-%06d", pre, i), r, "", want)
	}
	// Clears: a group of 3 each, cleared up to seq 2 (seq 3 must stay).
	for i := 0; i < m.Clear; i++ {
		g := fmt.Sprintf("%s-c-%d", pre, i)
		p.Groups = append(p.Groups, sim.SeedGroup{GroupID: g, Type: sim.GroupPublic, Messages: 3})
		p.add(fmt.Sprintf("%s-clear-%06d", pre, i), tasks.Clear{GroupId: g, MsgSeq: u64(2)}, "", map[uint64]int{2: 0})
	}
	// Permanent failures.
	for i := 0; i < m.Permanent; i++ {
		p.add(fmt.Sprintf("%s-p-missing-%d", pre, i), tasks.Clear{GroupId: fmt.Sprintf("%s-nogroup-%d", pre, i), MsgSeq: u64(2)}, "", map[uint64]int{2: CodeGroupMissing})
		p.add(fmt.Sprintf("%s-p-badid-%d", pre, i), tasks.Clear{GroupId: fmt.Sprintf("@TGS#bad-id-%d", i), MsgSeq: u64(2)}, "", map[uint64]int{2: CodeBadGroupID})

		av := fmt.Sprintf("%s-av-%d", pre, i)
		p.Groups = append(p.Groups, sim.SeedGroup{GroupID: av, Type: sim.GroupAVChatRoom, Messages: 3})
		text := fmt.Sprintf("%s av %d", pre, i)
		p.add(fmt.Sprintf("%s-p-av-%d", pre, i), tasks.Modify{GroupId: av, MsgSeq: 1, MsgBody: tasks.TextBody(text)}, text, map[uint64]int{1: CodeNoPermission})

		comm := fmt.Sprintf("@TGS#_%s-comm-%d", pre, i)
		p.Groups = append(p.Groups, sim.SeedGroup{GroupID: comm, Type: sim.GroupCommunity, Messages: 3})
		p.add(fmt.Sprintf("%s-p-comm-%d", pre, i), tasks.Clear{GroupId: comm, MsgSeq: u64(2)}, "", map[uint64]int{2: CodeNoPermission})

		mm := fmt.Sprintf("%s-pm-%d", pre, i)
		p.Groups = append(p.Groups, sim.SeedGroup{GroupID: mm, Type: sim.GroupPublic, Messages: 3})
		text = fmt.Sprintf("%s nomsg %d", pre, i)
		p.add(fmt.Sprintf("%s-p-nomsg-%d", pre, i), tasks.Modify{GroupId: mm, MsgSeq: 999, MsgBody: tasks.TextBody(text)}, text, map[uint64]int{999: CodeMsgMissing})
		// Same group: recall 1 and 3 (present) and 500 (missing).
		p.add(fmt.Sprintf("%s-p-recall-%d", pre, i), tasks.Recall{GroupId: mm, MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: 1}, {MsgSeq: 500}, {MsgSeq: 3}}},
			"", map[uint64]int{1: 0, 500: CodeMsgMissing, 3: 0})
	}
	return p
}

func u64(v uint64) *uint64 { return &v }

func (p *Plan) add(id string, pl tasks.Payload, text string, want map[uint64]int) {
	p.Ops = append(p.Ops, &Op{ID: id, Payload: pl, Want: want, Text: text})
}

// Units returns how many operations (a clear, a modify, one message of a
// recall) the plan holds.
func (p *Plan) Units() int {
	n := 0
	for _, o := range p.Ops {
		n += len(o.Want)
	}
	return n
}

// Seed creates the plan's groups in the emulator.
func (p *Plan) Seed(t testing.TB, seed func(sim.SeedFile) error) {
	t.Helper()
	if err := seed(sim.SeedFile{Groups: p.Groups}); err != nil {
		t.Fatalf("chaos: seed the emulator: %v", err)
	}
}

// Task returns o's asynq task with the plan's options.
func (p *Plan) Task(o *Op) (*asynq.Task, error) {
	return tasks.NewTask(o.Payload, asynq.TaskID(o.ID), asynq.MaxRetry(p.Mix.MaxRetry))
}

// ProducerStats counts what a producer did.
type ProducerStats struct {
	Enqueued int64 // tasks Redis confirmed
	Retries  int64 // enqueue calls that failed and were tried again
	Conflict int64 // retries answered "task ID exists": the lost answer's enqueue had landed
}

// Produce enqueues ops with workers goroutines, retrying every failed
// enqueue (Redis down, connection reset) until Redis confirms it or
// within passes. An enqueue retried after its answer was lost is answered
// asynq.ErrTaskIDConflict, which counts as done: the task ID is the plan's.
func (p *Plan) Produce(ctx context.Context, c *asynq.Client, ops []*Op, workers int, within time.Duration) (ProducerStats, error) {
	var st ProducerStats
	deadline := time.Now().Add(within)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ops) {
					return
				}
				task, err := p.Task(ops[i])
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				for try := 0; ; try++ {
					_, err := c.EnqueueContext(ctx, task)
					if err == nil || (try > 0 && errors.Is(err, asynq.ErrTaskIDConflict)) {
						if err != nil {
							atomic.AddInt64(&st.Conflict, 1)
						}
						atomic.AddInt64(&st.Enqueued, 1)
						break
					}
					if errors.Is(err, asynq.ErrTaskIDConflict) || time.Now().After(deadline) || ctx.Err() != nil {
						errOnce.Do(func() { firstErr = fmt.Errorf("enqueue %s: %w", ops[i].ID, err) })
						return
					}
					atomic.AddInt64(&st.Retries, 1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return st, firstErr
}

// State is where the emulator's state is read: *sim.Server, or the admin
// API of a `timq sim` process.
type State interface {
	Message(groupID, topicID string, seq uint64) (sim.MessageState, bool)
	Stats() sim.Stats
}

// Accounting is the outcome of a Plan, counted from the emulator's state,
// the dead-letter store and asynq's queues.
type Accounting struct {
	Tasks        int // tasks enqueued
	Operations   int // clears, modifies and recalled messages
	Applied      int // operations whose effect is in the emulator's state
	DeadLettered int // operations in the dead-letter store
	ByCode       map[int]int
	Lost         int // neither applied nor dead-lettered
	Both         int // applied AND dead-lettered
	// CrashArchived counts operations dead-lettered by the archive
	// reconciler after a crash (Plan.CrashOnLastAttempt), and
	// CrashArchivedApplied those of them the cut attempt had applied.
	CrashArchived, CrashArchivedApplied int
	WrongOutcome                        int // applied when a dead letter was due, or the reverse, or the wrong code/reason
	Stray                               int // messages changed that no applied operation targets, and unknown dead letters
	// Duplicates counts extra successful applications (at-least-once
	// delivery): a modify applied n times adds n-1, a recall answered
	// RetCode 0 for a message already recalled adds 1, a clear call that
	// succeeded again adds 1.
	DupModify, DupRecall, DupClear int64
	Completed, Archived            int // asynq's counts
}

// Duplicates is the sum of the duplicate counts.
func (a Accounting) Duplicates() int64 { return a.DupModify + a.DupRecall + a.DupClear }

func (a Accounting) String() string {
	codes := make([]int, 0, len(a.ByCode))
	for c := range a.ByCode {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var by []string
	for _, c := range codes {
		by = append(by, fmt.Sprintf("%d:%d", c, a.ByCode[c]))
	}
	return fmt.Sprintf("enqueued %d tasks = %d operations: applied %d, dead-lettered %d {%s}, lost %d, applied-and-dead-lettered %d, wrong outcome %d, stray %d; "+
		"duplicated %d (modify %d, recall %d, clear %d); asynq completed %d archived %d",
		a.Tasks, a.Operations, a.Applied, a.DeadLettered, strings.Join(by, " "), a.Lost, a.Both, a.WrongOutcome, a.Stray,
		a.Duplicates(), a.DupModify, a.DupRecall, a.DupClear, a.Completed, a.Archived)
}

// Verify counts the plan's outcome and fails the test unless every
// operation ended exactly as planned: applied once in effect (duplicates
// allowed, since each operation is idempotent) or dead-lettered with its
// code, never both, never neither, no stray change, and asynq's queues
// holding every task as completed or archived. It logs the accounting.
func (p *Plan) Verify(t testing.TB, st State, store *dlq.Store, insp *asynq.Inspector) Accounting {
	t.Helper()
	a, problems, err := p.account(st, store, insp)
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	t.Logf("accounting: %v", a)
	if len(problems) > 0 || a.Lost+a.Both+a.WrongOutcome+a.Stray != 0 || a.Applied+a.DeadLettered != a.Operations {
		t.Errorf("chaos: the operations did not end as planned (first %d problems):\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	return a
}

// Count counts the emulator's state only (applied operations, stray
// changes and duplicates), without checking the dead-letter store or
// asynq; the dead-letter fields are left zero.
func (p *Plan) Count(st State) Accounting {
	a, _, _ := p.account(st, nil, nil)
	return a
}

func (p *Plan) account(st State, store *dlq.Store, insp *asynq.Inspector) (Accounting, []string, error) {
	var entries []dlq.Entry
	if store != nil {
		var err error
		if entries, err = store.List(context.Background(), dlq.ListOptions{Limit: 0}); err != nil {
			return Accounting{}, nil, fmt.Errorf("list dead letters: %w", err)
		}
	}
	dead := make(map[string]dlq.Entry, len(entries))
	for _, e := range entries {
		dead[e.ID] = e
	}
	a := Accounting{Tasks: len(p.Ops), ByCode: map[int]int{}}
	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < 30 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	// What the applied operations must have done, per message.
	type key struct {
		group string
		seq   uint64
	}
	touched := map[key]bool{}
	clearedUpTo := map[string]uint64{}
	appliedClears := 0
	for _, o := range p.Ops {
		g := o.group()
		wantArchived := o.DeadLettered()
		for seq, code := range o.Want {
			a.Operations++
			touched[key{g, seq}] = true
			m, exists := st.Message(g, "", seq)
			applied := false
			switch pl := o.Payload.(type) {
			case tasks.Clear:
				applied = exists && m.Cleared
				if code == 0 && applied {
					clearedUpTo[g] = *pl.MsgSeq
					appliedClears++
				}
			case tasks.Recall:
				applied = exists && m.Recalled
			case tasks.Modify:
				applied = exists && m.Modified > 0
				if applied {
					a.DupModify += int64(m.Modified - 1)
					if len(m.MsgBody) != 1 || !strings.Contains(string(m.MsgBody[0].MsgContent), o.Text) {
						a.WrongOutcome++
						problem("%s: modified message %s/%d holds %v, want the text %q", o.ID, g, seq, m.MsgBody, o.Text)
					}
				}
			}
			if store == nil {
				if applied {
					a.Applied++
				}
				continue
			}
			e, isDead := dead[o.entryID(seq)]
			delete(dead, o.entryID(seq))
			if applied {
				a.Applied++
			}
			if isDead {
				a.DeadLettered++
				a.ByCode[e.Code]++
			}
			if p.CrashOnLastAttempt && code == 0 && isDead && e.Reason == dlq.ReasonArchived {
				a.CrashArchived++
				if applied {
					a.CrashArchivedApplied++
					a.Applied-- // counted once, as dead-lettered
				}
				continue
			}
			switch {
			case applied && isDead:
				a.Both++
				problem("%s seq %d: applied AND dead-lettered (code %d, %s)", o.ID, seq, e.Code, e.Info)
			case !applied && !isDead:
				a.Lost++
				problem("%s seq %d: LOST: neither applied nor dead-lettered", o.ID, seq)
			case code == 0 && isDead:
				a.WrongOutcome++
				problem("%s seq %d: dead-lettered with code %d reason %s (%s), want applied", o.ID, seq, e.Code, e.Reason, e.Info)
			case code != 0 && applied:
				a.WrongOutcome++
				problem("%s seq %d: applied, want dead-lettered with %d", o.ID, seq, code)
			case code != 0 && (e.Code != code || e.Reason != dlq.ReasonPermanent || e.Type != o.Payload.TaskType() || e.TaskID != o.ID):
				a.WrongOutcome++
				problem("%s seq %d: dead letter %+v, want code %d reason permanent", o.ID, seq, e, code)
			}
		}
		_ = wantArchived
	}
	for id, e := range dead {
		a.Stray++
		problem("unexpected dead letter %s: code %d reason %s info %q", id, e.Code, e.Reason, e.Info)
	}
	// No message changed that no applied operation targets.
	for _, g := range p.Groups {
		for seq := uint64(1); seq <= uint64(g.Messages); seq++ {
			m, ok := st.Message(g.GroupID, "", seq)
			if !ok {
				a.Stray++
				problem("message %s/%d is gone", g.GroupID, seq)
				continue
			}
			wantCleared := seq <= clearedUpTo[g.GroupID]
			if m.Cleared != wantCleared {
				a.Stray++
				problem("message %s/%d cleared=%v, want %v", g.GroupID, seq, m.Cleared, wantCleared)
			}
			if !touched[key{g.GroupID, seq}] && (m.Recalled || m.Modified > 0) {
				a.Stray++
				problem("message %s/%d changed (recalled=%v modified=%d) though no operation targets it", g.GroupID, seq, m.Recalled, m.Modified)
			}
		}
	}
	stats := st.Stats()
	rec := stats.Endpoints[chatapi.EndpointRecall]
	a.DupRecall = rec.RecallRetCodes[0] - stats.MessagesRecalled
	a.DupClear = stats.Endpoints[chatapi.EndpointClear].Codes[0] - int64(appliedClears)
	// Skipped after a crash on the last attempt: a cut attempt may have been
	// answered OK and then dead-lettered, which the per-operation count
	// above already accounts for (CrashArchivedApplied).
	if got, want := stats.Endpoints[chatapi.EndpointModify].Codes[0], int64(p.appliedModifies(a))+a.DupModify; !p.CrashOnLastAttempt && got != want {
		problem("the emulator answered %d modifies OK, but the messages count %d applications", got, want)
	}

	if insp == nil {
		return a, problems, nil
	}
	c, err := testenv.QueueCounts(insp)
	if err != nil {
		return a, problems, fmt.Errorf("queue counts: %w", err)
	}
	a.Completed, a.Archived = c.Completed, c.Archived
	wantArchived := 0
	for _, o := range p.Ops {
		if o.DeadLettered() {
			wantArchived++
		}
	}
	// After a crash on the last attempt, asynq archives the tasks the
	// killed worker held: each of those is one crash dead letter.
	wantArchived += a.CrashArchived
	if c.Archived != wantArchived || c.Completed != len(p.Ops)-wantArchived || c.Pending+c.Active+c.Scheduled+c.Retry != 0 {
		problem("asynq: %v, want completed=%d archived=%d and nothing else", c, len(p.Ops)-wantArchived, wantArchived)
	}
	return a, problems, nil
}

// appliedModifies counts the modifies of the plan that must be applied.
func (p *Plan) appliedModifies(Accounting) int {
	n := 0
	for _, o := range p.Ops {
		if o.Payload.TaskType() == tasks.TypeModify && !o.DeadLettered() {
			n++
		}
	}
	return n
}

// Snapshot is the content of every message of a plan's groups, keyed
// "group/seq": body, custom data, cleared and recalled, and not the counters
// and times of changes, which is what applying each operation once or
// several times must leave the same.
type Snapshot map[string]MessageContent

// MessageContent is what a message holds, without counters or times.
type MessageContent struct {
	Body            string
	CloudCustomData string
	Cleared         bool
	Recalled        bool
}

// Snapshot reads the content of every message of the plan's groups.
func (p *Plan) Snapshot(t testing.TB, st State) Snapshot {
	t.Helper()
	out := Snapshot{}
	for _, g := range p.Groups {
		for seq := uint64(1); seq <= uint64(g.Messages); seq++ {
			m, ok := st.Message(g.GroupID, "", seq)
			if !ok {
				t.Fatalf("chaos: message %s/%d is gone", g.GroupID, seq)
			}
			body, _ := json.Marshal(m.MsgBody)
			out[fmt.Sprintf("%s/%d", g.GroupID, seq)] = MessageContent{Body: string(body), CloudCustomData: m.CloudCustomData, Cleared: m.Cleared, Recalled: m.Recalled}
		}
	}
	return out
}

// Diff describes how s differs from old (the first 20 messages), or "".
func (s Snapshot) Diff(old Snapshot) string {
	var out []string
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if a, b := old[k], s[k]; a != b && len(out) < 20 {
			out = append(out, fmt.Sprintf("%s: %+v -> %+v", k, a, b))
		}
	}
	if len(s) != len(old) {
		out = append(out, fmt.Sprintf("%d messages, were %d", len(s), len(old)))
	}
	return strings.Join(out, "\n")
}
