package recallbatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/ratelimit"
	"github.com/timq/timq/internal/testenv"
)

// gate is a Limiter that grants a token only when the test says so.
type gate struct {
	tokens   chan struct{}
	mu       sync.Mutex
	backoffs []time.Duration
}

func newGate() *gate { return &gate{tokens: make(chan struct{}, 1000)} }

func (g *gate) Wait(ctx context.Context) error {
	select {
	case <-g.tokens:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (g *gate) Backoff(d time.Duration) {
	g.mu.Lock()
	g.backoffs = append(g.backoffs, d)
	g.mu.Unlock()
}
func (g *gate) grant(n int) {
	for range n {
		g.tokens <- struct{}{}
	}
}

// open is a Limiter that never waits.
type open struct{}

func (open) Wait(ctx context.Context) error { return ctx.Err() }
func (open) Backoff(time.Duration)          {}

// recorder is a SendFunc that records calls and answers from a script.
type recorder struct {
	mu     sync.Mutex
	calls  []call
	answer func(key Key, seqs []uint64, n int) (map[uint64]int, error)
}

type call struct {
	key  Key
	seqs []uint64
}

func (r *recorder) send(_ context.Context, key Key, seqs []uint64) (map[uint64]int, error) {
	r.mu.Lock()
	n := len(r.calls)
	r.calls = append(r.calls, call{key, slices.Clone(seqs)})
	r.mu.Unlock()
	if r.answer != nil {
		return r.answer(key, seqs, n)
	}
	codes := map[uint64]int{}
	for _, s := range seqs {
		codes[s] = 0
	}
	return codes, nil
}

func (r *recorder) sizes(key Key) []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, c := range r.calls {
		if c.key == key {
			out = append(out, len(c.seqs))
		}
	}
	slices.Sort(out) // calls are sent concurrently: compare sizes, not order
	return out
}

func start(t *testing.T, lim interface {
	Wait(context.Context) error
	Backoff(time.Duration)
}, r *recorder) *Batcher {
	b := New(lim, r.send, Options{ThrottleDelay: 10 * time.Millisecond})
	b.Start()
	t.Cleanup(b.Stop)
	return b
}

// waitQueued waits until wantMsgs messages wait in wantBatches batches.
func waitQueued(t *testing.T, b *Batcher, wantBatches, wantMsgs int) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("%d batches with %d messages pending", wantBatches, wantMsgs), func() (bool, string) {
		batches, msgs := b.Pending(), b.pendingMessages()
		return batches == wantBatches && msgs == wantMsgs, fmt.Sprintf("%d batches with %d messages", batches, msgs)
	})
}

func TestLoneRecallIsSentAtOnce(t *testing.T) {
	t.Parallel()
	r := &recorder{}
	b := start(t, open{}, r)
	codes, err := b.Recall(context.Background(), Key{GroupID: "g"}, []uint64{7})
	if err != nil || len(codes) != 1 || codes[7] != 0 {
		t.Fatalf("Recall = %v, %v", codes, err)
	}
	if len(r.calls) != 1 || !slices.Equal(r.calls[0].seqs, []uint64{7}) {
		t.Fatalf("calls = %+v", r.calls)
	}
}

func TestRecallsOfOneGroupShareCalls(t *testing.T) {
	t.Parallel()
	g := newGate()
	r := &recorder{}
	b := start(t, g, r)
	a, c := Key{GroupID: "A"}, Key{GroupID: "B", TopicID: "t"}
	var wg sync.WaitGroup
	results := make([]map[uint64]int, 30)
	errs := make([]error, 30)
	recall := func(i int, key Key, seq uint64) {
		defer wg.Done()
		results[i], errs[i] = b.Recall(context.Background(), key, []uint64{seq})
	}
	// 25 one-message recalls of A and 5 of B queue while no token is granted.
	for i := range 25 {
		wg.Add(1)
		go recall(i, a, uint64(100+i))
	}
	waitQueued(t, b, 3, 25)
	for i := range 5 {
		wg.Add(1)
		go recall(25+i, c, uint64(i+1))
	}
	waitQueued(t, b, 4, 30)
	g.grant(4)
	wg.Wait()
	if got := r.sizes(a); !slices.Equal(got, []int{5, 10, 10}) {
		t.Errorf("calls for A carried %v messages, want [5 10 10]", got)
	}
	if got := r.sizes(c); !slices.Equal(got, []int{5}) {
		t.Errorf("calls for B carried %v messages, want [5]", got)
	}
	for i := range 30 {
		seq := uint64(100 + i)
		if i >= 25 {
			seq = uint64(i - 24)
		}
		if errs[i] != nil || len(results[i]) != 1 || results[i][seq] != 0 {
			t.Errorf("recall %d: %v %v, want only its own message %d", i, results[i], errs[i], seq)
		}
	}
}

func TestEachTaskGetsOnlyItsOwnMessageCodes(t *testing.T) {
	t.Parallel()
	g := newGate()
	r := &recorder{answer: func(_ Key, seqs []uint64, _ int) (map[uint64]int, error) {
		codes := map[uint64]int{}
		for _, s := range seqs {
			codes[s] = map[bool]int{true: 10030, false: 0}[s == 7]
		}
		return codes, nil
	}}
	b := start(t, g, r)
	key := Key{GroupID: "g"}
	var wg sync.WaitGroup
	got := map[uint64]map[uint64]int{}
	var mu sync.Mutex
	for _, seqs := range [][]uint64{{5}, {6, 7}, {8}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes, err := b.Recall(context.Background(), key, seqs)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			got[seqs[0]] = codes
			mu.Unlock()
		}()
	}
	waitQueued(t, b, 1, 4)
	g.grant(1)
	wg.Wait()
	if len(r.calls) != 1 || len(r.calls[0].seqs) != 4 {
		t.Fatalf("calls = %+v, want one call of 4 messages", r.calls)
	}
	want := map[uint64]map[uint64]int{5: {5: 0}, 6: {6: 0, 7: 10030}, 8: {8: 0}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("codes = %v, want %v", got, want)
	}
}

func TestWholeCallErrorReachesEveryMember(t *testing.T) {
	t.Parallel()
	g := newGate()
	boom := &chatapi.Error{Endpoint: chatapi.EndpointRecall, Code: 10010, Info: "group missing"}
	r := &recorder{answer: func(Key, []uint64, int) (map[uint64]int, error) { return nil, boom }}
	b := start(t, g, r)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Recall(context.Background(), Key{GroupID: "g"}, []uint64{uint64(i + 1)}); !errors.Is(err, boom) {
				t.Errorf("member %d: err = %v, want the call's error", i, err)
			}
		}()
	}
	waitQueued(t, b, 1, 3)
	g.grant(1)
	wg.Wait()
	if len(r.calls) != 1 {
		t.Fatalf("%d calls, want 1", len(r.calls))
	}
}

func TestThrottledBatchIsSentAgainWithoutFailing(t *testing.T) {
	t.Parallel()
	g := newGate()
	r := &recorder{answer: func(_ Key, seqs []uint64, n int) (map[uint64]int, error) {
		if n == 0 {
			return nil, &chatapi.Error{Endpoint: chatapi.EndpointRecall, Code: 60007, Info: "too fast"}
		}
		return map[uint64]int{seqs[0]: 0}, nil
	}}
	b := start(t, g, r)
	g.grant(2)
	codes, err := b.Recall(context.Background(), Key{GroupID: "g"}, []uint64{3})
	if err != nil || codes[3] != 0 {
		t.Fatalf("Recall = %v, %v", codes, err)
	}
	if len(r.calls) != 2 || len(g.backoffs) != 1 {
		t.Fatalf("%d calls and %d backoffs, want 2 and 1", len(r.calls), len(g.backoffs))
	}
}

func TestCanceledRecallLeavesItsBatch(t *testing.T) {
	t.Parallel()
	g := newGate()
	r := &recorder{}
	b := start(t, g, r)
	key := Key{GroupID: "g"}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := b.Recall(ctx, key, []uint64{1}); errc <- err }()
	waitQueued(t, b, 1, 1)
	done := make(chan struct{})
	go func() { defer close(done); _, _ = b.Recall(context.Background(), key, []uint64{2}) }()
	waitQueued(t, b, 1, 2)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled recall returned %v", err)
	}
	g.grant(1)
	<-done
	if len(r.calls) != 1 || !slices.Equal(r.calls[0].seqs, []uint64{2}) {
		t.Fatalf("calls = %+v, want one call with only message 2", r.calls)
	}
}

func TestRepeatedMessageGoesToAnotherBatch(t *testing.T) {
	t.Parallel()
	g := newGate()
	r := &recorder{}
	b := start(t, g, r)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = b.Recall(context.Background(), Key{GroupID: "g"}, []uint64{9}) }()
	}
	waitQueued(t, b, 2, 2)
	g.grant(2)
	wg.Wait()
	if got := r.sizes(Key{GroupID: "g"}); !slices.Equal(got, []int{1, 1}) {
		t.Fatalf("call sizes = %v, want two calls of one message", got)
	}
}

// countingGate is a gate that also counts the callers waiting in Wait.
type countingGate struct {
	*gate
	waiting atomic.Int32
}

func (g *countingGate) Wait(ctx context.Context) error {
	g.waiting.Add(1)
	defer g.waiting.Add(-1)
	return g.gate.Wait(ctx)
}

// waitWaiting waits until exactly want callers wait for a token and b's
// own accounting says no more can join them (a surplus waiter would take a
// token that no batch needs, a slot of the budget lost): a dispatcher
// registers as a waiter, under b's lock, before it waits, and only while
// the queue holds more batches than there are waiters; so once every
// queued batch, or every dispatcher, has its waiter, the count is final.
func (g *countingGate) waitWaiting(t *testing.T, b *Batcher, want int) {
	t.Helper()
	testenv.Eventually(t, 5*time.Second, fmt.Sprintf("%d callers wait for a token", want), func() (bool, string) {
		b.mu.Lock()
		waiters, queued := len(b.waiters), len(b.queue)
		b.mu.Unlock()
		waiting := int(g.waiting.Load())
		final := waiters == queued || waiters == b.opts.Dispatchers
		return waiting == want && waiters == want && final,
			fmt.Sprintf("%d wait in the limiter, %d registered waiters, %d batches queued", waiting, waiters, queued)
	})
}

func TestWaitsForOneTokenPerQueuedBatchUpToDispatchers(t *testing.T) {
	t.Parallel()
	g := &countingGate{gate: newGate()}
	r := &recorder{}
	b := start(t, g, r)
	const more = 8 // batches queued beyond the dispatchers
	var wg sync.WaitGroup
	errs := make(chan error, DefaultDispatchers+more)
	recall := func(group string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b.Recall(context.Background(), Key{GroupID: group}, []uint64{1})
			errs <- err
		}()
	}
	recall("A")
	recall("B")
	waitQueued(t, b, 2, 2)
	g.waitWaiting(t, b, 2)
	for i := range DefaultDispatchers + more - 2 {
		recall(fmt.Sprint("C", i))
	}
	waitQueued(t, b, DefaultDispatchers+more, DefaultDispatchers+more)
	// Each waiter's token is a slot the shared limiter reserves ahead:
	// every dispatcher waits, so the endpoint holds that many slots.
	g.waitWaiting(t, b, DefaultDispatchers)
	g.grant(DefaultDispatchers + more)
	if !waitGroupDone(&wg, 10*time.Second) {
		t.Fatalf("%d tokens did not send the %d batches (%d pending): a token went to a dispatcher with no batch",
			DefaultDispatchers+more, DefaultDispatchers+more, b.Pending())
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Recall: %v", err)
		}
	}
	if len(r.calls) != DefaultDispatchers+more {
		t.Errorf("%d calls for %d one-message recalls of as many groups, want %d", len(r.calls), DefaultDispatchers+more, DefaultDispatchers+more)
	}
	g.waitWaiting(t, b, 0)
}

// failingLimiter fails its first n Waits with an error that is not the
// context's, then never waits.
type failingLimiter struct{ n atomic.Int32 }

func (l *failingLimiter) Wait(ctx context.Context) error {
	if l.n.Add(-1) >= 0 {
		return errors.New("limiter trouble")
	}
	return ctx.Err()
}
func (l *failingLimiter) Backoff(time.Duration) {}

func TestLimiterErrorsDoNotStopTheDispatchers(t *testing.T) {
	t.Parallel()
	lim := &failingLimiter{}
	lim.n.Store(2 * DefaultDispatchers) // every dispatcher fails twice
	r := &recorder{}
	b := start(t, lim, r)
	var wg sync.WaitGroup
	for i := range DefaultDispatchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := b.Recall(context.Background(), Key{GroupID: fmt.Sprint("g", i)}, []uint64{1}); err != nil {
				t.Errorf("Recall: %v", err)
			}
		}()
	}
	if !waitGroupDone(&wg, 10*time.Second) {
		t.Fatalf("recalls still waiting after the limiter's errors; %d batches pending", b.Pending())
	}
}

// waitGroupDone waits up to d for wg and reports whether it finished.
func waitGroupDone(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestDispatchersCoverTheSharedLimitersHorizon keeps the recall endpoint's
// reach ahead as long as clear's and modify's: the shared limiter reserves
// slots only for callers that wait, up to its horizon, so fewer dispatchers
// than a horizon's slots leave the budget's next slot behind the clock
// whenever the process wakes late (see DefaultDispatchers).
func TestDispatchersCoverTheSharedLimitersHorizon(t *testing.T) {
	t.Parallel()
	for _, rate := range []float64{1, 200, 1000} {
		slots := int(ratelimit.DefaultSharedHorizon.Seconds() * rate * ratelimit.Headroom)
		if got := DispatchersFor(rate); got < slots {
			t.Errorf("DispatchersFor(%v) = %d, fewer than the %d slots of the shared limiter's %v horizon",
				rate, got, slots, ratelimit.DefaultSharedHorizon)
		}
	}
	if DispatchersFor(200) != DefaultDispatchers {
		t.Errorf("DispatchersFor(200) = %d, want DefaultDispatchers (%d): the default is for the API's limit", DispatchersFor(200), DefaultDispatchers)
	}
}

// TestWaitersBeyondTheQueueGiveTheirTokensBack: when recalls leave (their
// tasks cancelled) and take their batches with them, the DefaultDispatchers that
// waited for those batches stop waiting, so the limiter gets their slots
// back instead of granting slots no batch uses.
func TestWaitersBeyondTheQueueGiveTheirTokensBack(t *testing.T) {
	t.Parallel()
	g := &countingGate{gate: newGate()}
	r := &recorder{}
	b := start(t, g, r)
	const n, leaving = 10, 4
	var stay sync.WaitGroup
	errs := make(chan error, n)
	cancels := make([]context.CancelFunc, n)
	for i := range n {
		ctx, cancel := context.WithCancel(context.Background())
		cancels[i] = cancel
		t.Cleanup(cancel)
		if i >= leaving {
			stay.Add(1)
		}
		go func() {
			if i >= leaving {
				defer stay.Done()
			}
			_, err := b.Recall(ctx, Key{GroupID: fmt.Sprint("g", i)}, []uint64{1})
			errs <- err
		}()
	}
	waitQueued(t, b, n, n)
	g.waitWaiting(t, b, n)
	for i := range leaving {
		cancels[i]()
	}
	waitQueued(t, b, n-leaving, n-leaving)
	g.waitWaiting(t, b, n-leaving)
	g.grant(n - leaving)
	if !waitGroupDone(&stay, 10*time.Second) {
		t.Fatalf("%d tokens did not send the %d batches left (%d pending): a token went to a dispatcher with no batch",
			n-leaving, n-leaving, b.Pending())
	}
	var cancelled int
	for range n {
		if err := <-errs; errors.Is(err, context.Canceled) {
			cancelled++
		} else if err != nil {
			t.Errorf("Recall: %v", err)
		}
	}
	if cancelled != leaving || len(r.calls) != n-leaving {
		t.Errorf("%d recalls cancelled and %d calls, want %d and %d", cancelled, len(r.calls), leaving, n-leaving)
	}
	g.waitWaiting(t, b, 0)
}

func TestUrgentRecallsGoBeforeTheBacklog(t *testing.T) {
	t.Parallel()
	g := newGate()
	r := &recorder{}
	b := start(t, g, r)
	var wg sync.WaitGroup
	recall := func(key Key, seq uint64, urgent bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := b.RecallSent(context.Background(), key, []uint64{seq}, urgent); err != nil {
				t.Errorf("recall %v %d: %v", key, seq, err)
			}
		}()
	}
	// A backlog: 20 batches of one message each, none urgent.
	for i := range 20 {
		recall(Key{GroupID: fmt.Sprint("job", i)}, 1, false)
		waitQueued(t, b, i+1, i+1)
	}
	// An urgent recall of a new group, then one joining the open batch of
	// job7, then a second urgent one of a new group.
	recall(Key{GroupID: "first"}, 1, true)
	waitQueued(t, b, 21, 21)
	recall(Key{GroupID: "job7"}, 2, true)
	waitQueued(t, b, 21, 22)
	recall(Key{GroupID: "second"}, 1, true)
	waitQueued(t, b, 22, 23)

	nthCall := func(n int) call {
		t.Helper()
		g.grant(1)
		testenv.Eventually(t, 5*time.Second, fmt.Sprintf("%d calls", n+1), func() (bool, string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			return len(r.calls) == n+1, fmt.Sprintf("%d calls", len(r.calls))
		})
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.calls[n]
	}
	want := []call{
		{Key{GroupID: "first"}, []uint64{1}},
		{Key{GroupID: "job7"}, []uint64{1, 2}}, // moved up with its urgent member
		{Key{GroupID: "second"}, []uint64{1}},
		{Key{GroupID: "job0"}, []uint64{1}}, // then the backlog, oldest first
		{Key{GroupID: "job1"}, []uint64{1}},
	}
	for i, w := range want {
		if got := nthCall(i); got.key != w.key || !slices.Equal(got.seqs, w.seqs) {
			t.Fatalf("call %d = %+v, want %+v", i, got, w)
		}
	}
	g.grant(100)
	wg.Wait()
	if n := len(r.calls); n != 22 {
		t.Errorf("%d calls, want 22 (20 backlog batches, job7 carrying its urgent member, and 2 urgent)", n)
	}
}
