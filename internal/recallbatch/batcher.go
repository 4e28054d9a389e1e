// Package recallbatch coalesces recalls of the same group into one
// group_msg_recall call of up to 10 messages.
//
// The API takes up to 10 messages per recall call and 200 calls a second,
// so full calls recall 2,000 messages a second, but moderation backends
// usually recall one message per task. A Batcher collects the messages of
// recall tasks waiting for a call token into per-group batches, and each
// token the endpoint's limiter grants sends the oldest batch. While the
// endpoint is idle a batch is sent as soon as it exists, so a lone recall
// waits for nothing; under a backlog, tasks wait for their token anyway and
// meanwhile fill each other's batches.
//
// asynq's own task aggregation was not used: it forms about one batch per
// group per check interval (measured near 10 tasks a second per group), and
// its aggregated task replaces the original tasks, which would lose each
// task's own retries, result and dead-letter entry. Here every task stays a
// task: it is only its API call that is shared.
package recallbatch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/ratelimit"
)

// MaxPerCall is the most messages one call carries.
const MaxPerCall = chatapi.MaxRecallPerCall

// Key identifies the calls recalls can share: the same group, topic and
// reason.
type Key struct {
	GroupID string
	TopicID string
	Reason  string
}

// SendFunc makes one recall call for key and seqs (1 to MaxPerCall distinct
// messages) and returns each message's RetCode, or the error of the whole
// call.
type SendFunc func(ctx context.Context, key Key, seqs []uint64) (map[uint64]int, error)

// Options configures a Batcher.
type Options struct {
	// ThrottleDelay is how long the endpoint pauses after a rate-limit
	// answer before the batch is sent again. Defaults to 1 s.
	ThrottleDelay time.Duration
	// OnSend, when set, is told about every call as it is sent: its number
	// of messages, and for each recall in it how long it waited between
	// joining its batch and the call going out (for metrics: an idle
	// endpoint sends a lone recall within microseconds).
	OnSend func(key Key, size int, waits []time.Duration)
	// Dispatchers is how many tokens the Batcher waits for at once, each
	// for the batch at the head of the queue when it comes, and never more
	// than the queue holds. Defaults to DefaultDispatchers; use
	// DispatchersFor(rate) above 200 calls a second.
	Dispatchers int
	// CallContext is the context every call is sent in. A call once sent
	// outlives the Recall that joined it (so that no recall goes
	// unreported) but not CallContext: cancelling it cuts off the calls in
	// flight, as a worker does when its shutdown timeout ends. Defaults to
	// context.Background().
	CallContext context.Context
}

// Batcher coalesces recalls. It is safe for concurrent use; Start it before
// use and Stop it after the last Recall has returned.
type Batcher struct {
	lim  ratelimit.Limiter
	send SendFunc
	opts Options

	mu    sync.Mutex
	queue []*batch         // batches waiting for a token, oldest first
	open  map[Key][]*batch // batches of a key that still take messages
	// waiters are the dispatchers waiting for a token, oldest first; a
	// batch leaving the queue cancels the newest waiters beyond the
	// queue's length, so their slots go back to the limiter.
	waiters []*waiter
	wake    chan struct{} // signalled when the queue gains a batch
	stop    context.CancelFunc
	done    sync.WaitGroup // the dispatchers
	sending sync.WaitGroup
}

// DefaultDispatchers is Options.Dispatchers' default: a horizon's worth of
// slots at the API's 200 calls a second (see DispatchersFor).
//
// Why so many: the shared limiter reserves slots ahead only for callers
// that wait, so the number of dispatchers is how far ahead the recall
// endpoint holds its budget under a backlog. With 4 it held 20-40 ms of
// slots, against the 300 ms horizon clear and modify hold with their
// hundred waiting tasks; when the CPU was busy (two busy loops on a 2-core
// machine, timq bench --busy 2) every late wake-up left the budget's next
// slot behind the clock, and recall fell to 58-67% of its limit while
// clear and modify kept 82-93%. With 64 it kept pace with them. A waiting
// dispatcher does not close its batch: the batch at the head of the queue
// when the token comes is sent, so recalls coalesce as before; and one
// whose batch leaves stops waiting (see cancelSurplusLocked).
const DefaultDispatchers = 64

// DispatchersFor returns how many dispatchers cover the shared limiter's
// default horizon at rate calls per second: at least DefaultDispatchers.
func DispatchersFor(rate float64) int {
	n := int(math.Ceil(rate * ratelimit.Headroom * ratelimit.DefaultSharedHorizon.Seconds()))
	return max(DefaultDispatchers, n)
}

// waiter is one dispatcher's wait for a token.
type waiter struct {
	cancel  context.CancelFunc
	surplus bool // cancelled by leave: no batch needs its token any more
}

// batch is one future call: the members waiting for it and their messages.
type batch struct {
	key     Key
	members []*member
	size    int
	closed  bool // taken by the dispatcher: no more joins or leaves
	urgent  bool // holds an urgent member: queued before every other batch
}

type member struct {
	seqs   []uint64
	urgent bool
	joined time.Time
	result chan outcome // buffered, one value
}

type outcome struct {
	codes map[uint64]int
	err   error
	sent  time.Time // when the call that carried the member was sent
}

// New returns a Batcher that takes a token from lim for every call and
// sends it with send.
func New(lim ratelimit.Limiter, send SendFunc, opts Options) *Batcher {
	if opts.ThrottleDelay <= 0 {
		opts.ThrottleDelay = time.Second
	}
	if opts.Dispatchers <= 0 {
		opts.Dispatchers = DefaultDispatchers
	}
	if opts.CallContext == nil {
		opts.CallContext = context.Background()
	}
	return &Batcher{lim: lim, send: send, opts: opts, open: map[Key][]*batch{}, wake: make(chan struct{}, opts.Dispatchers)}
}

// Start starts the dispatchers.
func (b *Batcher) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	for range b.opts.Dispatchers {
		b.done.Add(1)
		go b.dispatch(ctx)
	}
}

// Stop stops the dispatchers and waits for calls in flight. Recalls still
// waiting get an error.
func (b *Batcher) Stop() {
	if b.stop == nil {
		return
	}
	b.stop()
	b.done.Wait()
	b.sending.Wait()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, bt := range b.queue {
		for _, m := range bt.members {
			m.result <- outcome{err: errStopped}
		}
	}
	b.queue, b.open = nil, map[Key][]*batch{}
}

// errStopped wraps context.Canceled: a recall still waiting when the
// Batcher stops is handed back, like any work interrupted by a shutdown.
var errStopped = fmt.Errorf("recallbatch: stopped: %w", context.Canceled)

// Pending returns how many batches wait for a token (for tests and metrics).
func (b *Batcher) Pending() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue)
}

// pendingMessages returns how many messages wait in batches.
func (b *Batcher) pendingMessages() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, bt := range b.queue {
		n += bt.size
	}
	return n
}

// Recall recalls seqs (1 to MaxPerCall distinct messages) of key's group,
// sharing a call with other recalls of the same key where they fit, and
// returns the RetCode of each of its own messages, or the error of the call
// that carried them. If ctx ends before the call is sent, the messages are
// taken out of the batch and ctx's error is returned; once sent, Recall
// waits for the answer whatever ctx does, so no recall goes unreported.
func (b *Batcher) Recall(ctx context.Context, key Key, seqs []uint64) (map[uint64]int, error) {
	codes, _, err := b.RecallSent(ctx, key, seqs, false)
	return codes, err
}

// RecallSent is Recall that also returns when the call carrying seqs was
// sent (the last time, if it was throttled and sent again); zero when no
// call was sent.
//
// An urgent recall's batch goes before every batch without an urgent
// member, so it is sent with the next token whatever backlog waits (a
// worker marks interactive recalls urgent, so that they never wait behind
// a job's). Urgent batches keep their order among themselves. A batch that
// an urgent recall joins moves up with it, carrying its other members.
func (b *Batcher) RecallSent(ctx context.Context, key Key, seqs []uint64, urgent bool) (map[uint64]int, time.Time, error) {
	if len(seqs) == 0 {
		return map[uint64]int{}, time.Time{}, nil
	}
	if len(seqs) > MaxPerCall {
		return nil, time.Time{}, errors.New("recallbatch: more than 10 messages in one recall")
	}
	m := &member{seqs: seqs, urgent: urgent, joined: time.Now(), result: make(chan outcome, 1)}
	bt := b.join(key, m)
	select {
	case o := <-m.result:
		return o.codes, o.sent, o.err
	case <-ctx.Done():
		if b.leave(bt, m) {
			return nil, time.Time{}, ctx.Err()
		}
		o := <-m.result // already sent: the answer is on its way
		return o.codes, o.sent, o.err
	}
}

// join adds m to the oldest open batch of key it fits in (size and no
// repeated message), or to a new batch at the end of the queue; an urgent
// m's batch is queued after the urgent batches and before the rest.
func (b *Batcher) join(key Key, m *member) *batch {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, bt := range b.open[key] {
		if bt.size+len(m.seqs) <= MaxPerCall && !bt.holdsAny(m.seqs) {
			bt.members = append(bt.members, m)
			bt.size += len(m.seqs)
			if bt.size == MaxPerCall {
				b.closeOpen(bt)
			}
			if m.urgent && !bt.urgent {
				b.queue = slices.DeleteFunc(b.queue, func(x *batch) bool { return x == bt })
				b.enqueueLocked(bt, true)
			}
			return bt
		}
	}
	bt := &batch{key: key, members: []*member{m}, size: len(m.seqs)}
	b.enqueueLocked(bt, m.urgent)
	if bt.size < MaxPerCall {
		b.open[key] = append(b.open[key], bt)
	}
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return bt
}

// enqueueLocked queues bt: at the end, or when urgent after the last urgent
// batch. Callers hold b.mu.
func (b *Batcher) enqueueLocked(bt *batch, urgent bool) {
	if !urgent {
		b.queue = append(b.queue, bt)
		return
	}
	bt.urgent = true
	i := 0
	for i < len(b.queue) && b.queue[i].urgent {
		i++
	}
	b.queue = slices.Insert(b.queue, i, bt)
}

// leave takes m out of bt if bt has not been sent; it reports whether it did.
func (b *Batcher) leave(bt *batch, m *member) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bt.closed && !slices.Contains(b.queue, bt) {
		return false
	}
	i := slices.Index(bt.members, m)
	if i < 0 {
		return false
	}
	bt.members = slices.Delete(bt.members, i, i+1)
	bt.size -= len(m.seqs)
	if len(bt.members) == 0 {
		b.queue = slices.DeleteFunc(b.queue, func(x *batch) bool { return x == bt })
		b.closeOpen(bt)
		b.cancelSurplusLocked()
	} else if !bt.closed && bt.size < MaxPerCall && !slices.Contains(b.open[bt.key], bt) {
		b.open[bt.key] = append(b.open[bt.key], bt)
	}
	return true
}

// cancelSurplusLocked cancels the newest waiting dispatchers beyond the
// queue's length: no batch needs their tokens, and a cancelled wait gives
// its slot back to the limiter (the newest hold the latest slots, the
// likeliest still usable by another caller). Callers hold b.mu.
func (b *Batcher) cancelSurplusLocked() {
	for len(b.waiters) > len(b.queue) {
		w := b.waiters[len(b.waiters)-1]
		b.waiters = b.waiters[:len(b.waiters)-1]
		w.surplus = true
		w.cancel()
	}
}

// closeOpen stops bt taking new members. Callers hold b.mu.
func (b *Batcher) closeOpen(bt *batch) {
	list := slices.DeleteFunc(b.open[bt.key], func(x *batch) bool { return x == bt })
	if len(list) == 0 {
		delete(b.open, bt.key)
	} else {
		b.open[bt.key] = list
	}
}

func (bt *batch) holdsAny(seqs []uint64) bool {
	for _, m := range bt.members {
		for _, s := range m.seqs {
			if slices.Contains(seqs, s) {
				return true
			}
		}
	}
	return false
}

// dispatch waits for a batch no other dispatcher waits a token for, then for
// a token, then sends the oldest batch. A wait whose batch left the queue
// (its members cancelled) is cancelled, and the limiter takes the slot back.
func (b *Batcher) dispatch(ctx context.Context) {
	defer b.done.Done()
	for {
		b.mu.Lock()
		var w *waiter
		var wctx context.Context
		if len(b.queue) > len(b.waiters) {
			w = &waiter{}
			wctx, w.cancel = context.WithCancel(ctx)
			b.waiters = append(b.waiters, w)
		}
		b.mu.Unlock()
		if w == nil {
			select {
			case <-ctx.Done():
				return
			case <-b.wake:
				continue
			}
		}
		err := b.lim.Wait(wctx)
		b.mu.Lock()
		if !w.surplus {
			b.waiters = slices.DeleteFunc(b.waiters, func(x *waiter) bool { return x == w })
		}
		w.cancel()
		if err != nil {
			b.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			if w.surplus {
				continue // its batch left; the limiter has the slot back
			}
			// No token, and not stopping: try again shortly, so that a
			// limiter error never leaves batches without a dispatcher.
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if len(b.queue) == 0 { // every member left while we waited
			b.mu.Unlock()
			continue
		}
		bt := b.queue[0]
		b.queue = b.queue[1:]
		bt.closed = true
		b.closeOpen(bt)
		// A surplus wait that got its token anyway took a batch another
		// dispatcher waits for: that one is surplus now.
		b.cancelSurplusLocked()
		b.mu.Unlock()
		b.sending.Add(1)
		go b.sendBatch(ctx, bt)
	}
}

// sendBatch makes bt's call, in the slot the dispatcher was granted, and
// hands each member its messages' codes. A rate-limit answer pauses the
// endpoint and puts the batch back at the head of the queue, so it is sent
// again with the next token.
func (b *Batcher) sendBatch(ctx context.Context, bt *batch) {
	defer b.sending.Done()
	seqs := make([]uint64, 0, bt.size)
	for _, m := range bt.members {
		seqs = append(seqs, m.seqs...)
	}
	sent := time.Now()
	// The call outlives a stopping dispatcher: its members wait for it.
	codes, err := b.send(b.opts.CallContext, bt.key, seqs)
	if b.opts.OnSend != nil {
		waits := make([]time.Duration, len(bt.members))
		for i, m := range bt.members {
			waits[i] = sent.Sub(m.joined)
		}
		b.opts.OnSend(bt.key, len(seqs), waits)
	}
	throttled := err != nil && chatapi.Classify(err) == chatapi.ClassThrottle
	if throttled && ctx.Err() == nil {
		b.lim.Backoff(b.opts.ThrottleDelay)
		b.mu.Lock()
		b.queue = append([]*batch{bt}, b.queue...)
		b.mu.Unlock()
		select {
		case b.wake <- struct{}{}:
		default:
		}
		return
	}
	for _, m := range bt.members {
		if err != nil {
			m.result <- outcome{err: err, sent: sent}
			continue
		}
		own := make(map[uint64]int, len(m.seqs))
		for _, s := range m.seqs {
			if c, ok := codes[s]; ok {
				own[s] = c
			}
		}
		m.result <- outcome{codes: own, sent: sent}
	}
}
