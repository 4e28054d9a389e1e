package ratelimit

import (
	"context"
	"errors"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/testenv"
)

// cmdCounter is a go-redis hook counting the scripts a client sends, to
// check the limiter's own count against what reached the wire. (A new
// connection also sends HELLO and CLIENT SETINFO, once per connection, not
// per call.)
type cmdCounter struct{ n atomic.Int64 }

func (c *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if name := cmd.Name(); name == "evalsha" || name == "eval" {
			c.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (c *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			if name := cmd.Name(); name == "evalsha" || name == "eval" {
				c.n.Add(1)
			}
		}
		return next(ctx, cmds)
	}
}

// slotLog records every slot the script handed out, in Redis microseconds,
// with the process it went to.
type slotLog struct {
	mu    sync.Mutex
	slots []slotAt
}

type slotAt struct {
	us   int64
	proc int
}

func (l *slotLog) hook(proc int) func(int64, int, int64) {
	return func(start int64, k int, iv int64) {
		l.mu.Lock()
		defer l.mu.Unlock()
		for i := range k {
			l.slots = append(l.slots, slotAt{start + int64(i)*iv, proc})
		}
	}
}

func (l *slotLog) sorted() []slotAt {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := slices.Clone(l.slots)
	slices.SortFunc(out, func(a, b slotAt) int { return int(a.us - b.us) })
	return out
}

// process is one simulated worker process: its own Redis connection, its
// own limiter, and a command counter on the connection.
type process struct {
	lim  *Shared
	cmds *cmdCounter
}

func newProcess(t *testing.T, r *testenv.RedisDB, log *slotLog, id int, opts ...SharedOption) process {
	t.Helper()
	c := r.Client(t)
	cc := &cmdCounter{}
	c.AddHook(cc)
	s := NewShared(c, "1400000001:clear_group_msg", 200, opts...)
	if log != nil {
		s.onSlots = log.hook(id)
	}
	return process{lim: s, cmds: cc}
}

// hammer runs n goroutines calling Wait until ctx ends.
func hammer(ctx context.Context, wg *sync.WaitGroup, s *Shared, n int) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.Wait(ctx) == nil {
			}
		}()
	}
}

// redisNow reads the Redis clock in microseconds.
func redisNow(t *testing.T, c *redis.Client) int64 {
	t.Helper()
	now, err := c.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now.UnixMicro()
}

// maxInWindow returns the most slots in any half-open window (t-w, t].
func maxInWindow(us []int64, w int64) int {
	best, lo := 0, 0
	for hi := range us {
		for us[hi]-us[lo] >= w {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

func waitFetcherStops(t *testing.T, s *Shared) {
	t.Helper()
	testenv.WaitFor(t, 3*time.Second, "the fetch goroutine stops with no goroutine waiting", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.fetching
	})
}

func TestSharedSlotsNeverExceedTheBudgetAcrossProcesses(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	log := &slotLog{}
	const procs, perProc, total = 4, 12, 600
	ps := make([]process, procs)
	for i := range ps {
		ps[i] = newProcess(t, r, log, i)
	}
	var granted atomic.Int64
	var wg sync.WaitGroup
	for _, p := range ps {
		for range perProc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for granted.Add(1) <= total {
					if err := p.lim.Wait(context.Background()); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()

	slots := log.sorted()
	us := make([]int64, len(slots))
	perProcSlots := make([]int, procs)
	for i, s := range slots {
		us[i] = s.us
		perProcSlots[s.proc]++
		if i > 0 && s.us-slots[i-1].us < ps[0].lim.ivUS {
			t.Fatalf("slots %d and %d are %d µs apart, less than the interval %d µs", i-1, i, s.us-slots[i-1].us, ps[0].lim.ivUS)
		}
	}
	if len(slots) < total {
		t.Fatalf("%d slots reserved for %d grants", len(slots), total)
	}
	// 1 s / 5077 µs = 196.96: at most 197 slots in any sliding second.
	if got := maxInWindow(us, 1e6); got > 197 {
		t.Fatalf("%d slots in one sliding second, want at most 197", got)
	}
	var grants, commands, wire int64
	for i, p := range ps {
		st := p.lim.Stats()
		grants += st.Grants
		commands += st.Commands
		wire += p.cmds.n.Load()
		if st.Commands != p.cmds.n.Load() {
			t.Errorf("process %d: Stats().Commands = %d, the client sent %d", i, st.Commands, p.cmds.n.Load())
		}
		if perProcSlots[i] == 0 {
			t.Errorf("process %d got no slot", i)
		}
		waitFetcherStops(t, p.lim)
	}
	if grants != total {
		t.Fatalf("%d grants, want %d", grants, total)
	}
	if perGrant := float64(wire) / float64(grants); perGrant > 2 {
		t.Fatalf("%.2f Redis commands per grant, want at most 2", perGrant)
	}
	for i, p := range ps {
		t.Logf("process %d: %+v", i, p.lim.Stats())
	}
	t.Logf("%d grants, %d slots, %d Redis commands (%.3f per grant), per process %v", grants, len(slots), wire, float64(wire)/float64(grants), perProcSlots)
}

func TestSharedCrashedHolderShareComesBackAndANewcomerGetsItsShare(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	clock := r.Client(t)
	log := &slotLog{}
	a, b, c := newProcess(t, r, log, 0), newProcess(t, r, log, 1), newProcess(t, r, log, 2)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	hammer(ctx, &wg, a.lim, 8)
	hammer(ctx, &wg, b.lim, 8)
	time.Sleep(time.Second)

	joinUS := redisNow(t, clock)
	cctx, crash := context.WithCancel(ctx)
	var cwg sync.WaitGroup
	hammer(cctx, &cwg, c.lim, 8)
	time.Sleep(2 * time.Second)

	// c "crashes": its goroutines stop at once; it wastes what it reserved.
	crash()
	crashUS := redisNow(t, clock)
	cwg.Wait()
	time.Sleep(2 * time.Second)
	stop()
	wg.Wait()

	count := func(from, to int64, procs ...int) int {
		n := 0
		for _, s := range log.sorted() {
			if s.us >= from && s.us < to && slices.Contains(procs, s.proc) {
				n++
			}
		}
		return n
	}
	// The newcomer's fair share of 197 is 65 a second; within a second and
	// a half of joining it has a good part of it.
	if got := count(joinUS+500_000, joinUS+1_500_000, 2); got < 40 {
		t.Errorf("the newcomer got %d slots in its second second, want at least 40 (a fair share is 65)", got)
	}
	// After the crash the survivors get the whole budget again: a third of
	// it stranded would leave them 131.
	if got := count(crashUS+500_000, crashUS+1_500_000, 0, 1); got < 170 {
		t.Errorf("the survivors got %d slots in the second after the crash, want at least 170 of 197", got)
	}
	us := []int64{}
	for _, s := range log.sorted() {
		us = append(us, s.us)
	}
	if got := maxInWindow(us, 1e6); got > 197 {
		t.Fatalf("%d slots in one sliding second, want at most 197", got)
	}
	t.Logf("newcomer %d, survivors %d, wasted by the crashed one %d",
		count(joinUS+500_000, joinUS+1_500_000, 2), count(crashUS+500_000, crashUS+1_500_000, 0, 1), c.lim.Stats().Wasted)
}

func TestSharedBackoffPausesEveryProcess(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	clock := r.Client(t)
	log := &slotLog{}
	a, b := newProcess(t, r, log, 0), newProcess(t, r, log, 1)
	ctx := context.Background()
	if err := a.lim.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	before := redisNow(t, clock)
	log.mu.Lock()
	earlier := len(log.slots)
	log.mu.Unlock()
	a.lim.Backoff(400 * time.Millisecond)
	start := time.Now()
	if err := b.lim.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.lim.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	slots := slices.Clone(log.slots[earlier:])
	log.mu.Unlock()
	for _, s := range slots {
		if s.us < before+400_000 {
			t.Fatalf("process %d got a slot %d µs after the backoff began, want at least 400000", s.proc, s.us-before)
		}
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("Waits returned %v after a 400ms backoff", d)
	}
}

func TestSharedIdleGrantCostsOneCommandAndSurvivesScriptFlush(t *testing.T) {
	t.Parallel()
	// A server of its own: SCRIPT FLUSH is server-wide.
	m := miniredis.RunT(t)
	r := &testenv.RedisDB{Addr: m.Addr(), Mini: m}
	p := newProcess(t, r, nil, 0)
	ctx := context.Background()
	if err := p.lim.Wait(ctx); err != nil { // may cost EVALSHA + EVAL
		t.Fatal(err)
	}
	// A slot is reserved a round trip ahead; on a loaded machine the
	// reply or the wake-up can come more than an interval late, and the
	// slot is then dropped (counted as wasted) and reserved again. So each
	// wasted slot allows one more command.
	for range 3 {
		before := p.lim.Stats()
		time.Sleep(10 * time.Millisecond)
		if err := p.lim.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		after := p.lim.Stats()
		if n, wasted := after.Commands-before.Commands, after.Wasted-before.Wasted; n != 1+wasted {
			t.Fatalf("an idle Wait sent %d commands with %d slots wasted, want 1 plus one per wasted slot", n, wasted)
		}
	}
	if err := r.Client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	before := p.lim.Stats()
	if err := p.lim.Wait(ctx); err != nil {
		t.Fatalf("Wait after SCRIPT FLUSH: %v", err)
	}
	after := p.lim.Stats()
	if n, wasted := after.Commands-before.Commands, after.Wasted-before.Wasted; n != 2+wasted {
		t.Fatalf("Wait after SCRIPT FLUSH sent %d commands with %d slots wasted, want 2 (EVALSHA, then EVAL) plus one per wasted slot", n, wasted)
	}
	ttl, err := r.Client(t).PTTL(ctx, p.lim.Key()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > DefaultSharedHorizon+time.Second {
		t.Fatalf("budget key TTL %v, want a little over a second", ttl)
	}
	if !strings.HasSuffix(p.lim.Key(), "{1400000001:clear_group_msg}") {
		t.Fatalf("key %q is not hash-tagged with its name", p.lim.Key())
	}
	waitFetcherStops(t, p.lim)
}

// A caller that waits for one slot at a time and comes straight back (as
// the recall batcher did when it had one dispatcher) gets growing reservations instead of
// costing a command per call, and every reserved slot is still accounted
// for.
func TestSharedSerialCallerIsNotACommandPerCall(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	p := newProcess(t, r, nil, 0)
	ctx := context.Background()
	const calls = 60
	for range calls {
		if err := p.lim.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st := p.lim.Stats()
	// Unhindered: reservations of 1, 2, 4 and then 8 slots, 10 commands.
	// A stall (a slow machine) starts the ramp again; half the calls still
	// leaves room for several.
	if st.Commands > calls/2 {
		t.Fatalf("%d Redis commands for %d calls of one goroutine, want at most %d; stats %+v", st.Commands, calls, calls/2, st)
	}
	if st.Grants != calls {
		t.Fatalf("%d grants, want %d", st.Grants, calls)
	}
	p.lim.mu.Lock()
	pooled := len(p.lim.pool)
	p.lim.mu.Unlock()
	if st.Reserved != st.Grants+st.Wasted+int64(pooled) {
		t.Fatalf("reserved %d slots but granted %d, wasted %d and pooled %d", st.Reserved, st.Grants, st.Wasted, pooled)
	}
	// A caller that stops leaves at most the rest of one reservation.
	if pooled >= DefaultSharedBatch {
		t.Fatalf("%d slots left in the pool, want fewer than a batch (%d)", pooled, DefaultSharedBatch)
	}
	t.Logf("%+v, %d pooled", st, pooled)
}

func TestSharedWaitCanceledGivesTheSlotBack(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	p := newProcess(t, r, nil, 0)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hammer(ctx, &wg, p.lim, 16)
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	waitFetcherStops(t, p.lim)
	st := p.lim.Stats()
	p.lim.mu.Lock()
	pooled := len(p.lim.pool)
	p.lim.mu.Unlock()
	if st.Reserved != st.Grants+st.Wasted+int64(pooled) {
		t.Fatalf("reserved %d slots but granted %d, wasted %d and pooled %d", st.Reserved, st.Grants, st.Wasted, pooled)
	}
	if err := p.lim.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a canceled context = %v", err)
	}
}

// deadRedis returns a client for a loopback port nothing listens on.
func deadRedis(t *testing.T) *redis.Client {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSharedBlocksWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	logger, logs := testenv.Logger(t)
	t.Cleanup(logs.Stop)
	s := NewShared(deadRedis(t), "x", 200, WithLogger(logger))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with Redis down = %v, want the context's deadline", err)
	}
	if st := s.Stats(); st.Grants != 0 {
		t.Fatalf("granted %d calls without Redis", st.Grants)
	}
	testenv.Eventually(t, 5*time.Second, "a warning that Redis does not answer", func() (bool, string) {
		l := logs.String()
		return strings.Contains(l, "Redis does not answer"), "log: " + l
	})
	waitFetcherStops(t, s)
}

func TestSharedFallbackRateWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	s := NewShared(deadRedis(t), "x", 200, WithFallbackRate(50))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		if err := s.Wait(ctx); err != nil {
			t.Fatalf("Wait with a fallback rate: %v", err)
		}
	}
	if st := s.Stats(); st.FallbackGrants < 3 || st.Grants != 3 {
		t.Fatalf("stats %+v, want 3 grants from the fallback", st)
	}
	waitFetcherStops(t, s)
}

func TestSharedBudgetThatGoesBackInTimeIsPushedPastEveryHeldSlot(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	log := &slotLog{}
	const held = 50
	p := newProcess(t, r, log, 0, WithBatch(held))
	ctx := context.Background()
	// 50 goroutines hold one reservation of 50 slots, 250 ms of budget.
	var wg sync.WaitGroup
	for range held {
		wg.Add(1)
		go func() { defer wg.Done(); _ = p.lim.Wait(ctx) }()
	}
	testenv.WaitFor(t, 5*time.Second, "50 slots reserved", func() bool { return p.lim.Stats().Reserved >= held })
	// A failover that loses the key's last writes looks like this.
	if err := r.Client(t).Del(ctx, p.lim.Key()).Err(); err != nil {
		t.Fatal(err)
	}
	if err := p.lim.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	log.mu.Lock()
	slots := slices.Clone(log.slots)
	log.mu.Unlock()
	lastEnd := int64(0)
	for _, s := range slots[:held] {
		lastEnd = max(lastEnd, s.us+p.lim.ivUS)
	}
	used := slots[len(slots)-1].us
	if want := lastEnd + DefaultSharedHorizon.Microseconds(); used < want {
		t.Fatalf("after the budget went back in time the next slot is at %d, want at least %d (past the held slots plus a horizon)", used, want)
	}
	if len(slots) < held+2 {
		t.Fatalf("%d reservations: the one that went back in time was not dropped", len(slots))
	}
}

// slowReply is a go-redis hook that returns the nth script reply late, as a
// process busy elsewhere reads a reply late.
type slowReply struct {
	nth   int64
	delay time.Duration
	seen  atomic.Int64
}

func (h *slowReply) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *slowReply) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if name := cmd.Name(); (name == "evalsha" || name == "eval") && h.seen.Add(1) == h.nth {
			time.Sleep(h.delay)
		}
		return err
	}
}
func (h *slowReply) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A reply read late must not move the process's map of the Redis clock:
// mapped from it, a reservation's slots fell 20 ms late, among the next
// reservation's, and calls bunched past the limit. Every slot the process
// hands out stays at least an interval after the one before, in local time.
func TestSharedSlowReplyDoesNotBunchSlots(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	c := r.Client(t)
	// Open the connection first: the first reply sets the clock estimate
	// whatever its speed.
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	slow := &slowReply{nth: 3, delay: 40 * time.Millisecond}
	c.AddHook(slow)
	s := NewShared(c, "1400000001:group_msg_recall", 200)
	var mu sync.Mutex
	var local []time.Time
	var redisUS []int64
	first := -1 // slots in the first reservation
	s.onSlots = func(start int64, k int, iv int64) {
		mu.Lock()
		if first < 0 {
			first = k
		}
		for i := range k {
			redisUS = append(redisUS, start+int64(i)*iv)
		}
		mu.Unlock()
	}
	s.onLocalSlots = func(slots []time.Time) {
		mu.Lock()
		local = append(local, slots...)
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hammer(ctx, &wg, s, 20)
	testenv.WaitFor(t, 10*time.Second, "100 grants", func() bool { return s.Stats().Grants >= 100 })
	cancel()
	wg.Wait()
	if n := slow.seen.Load(); n < 5 {
		t.Fatalf("%d reservations, want at least 5 (the 3rd one slow)", n)
	}
	mu.Lock()
	defer mu.Unlock()
	// In the order the process mapped them, each slot comes an interval
	// after the one before (less a microsecond of rounding).
	for i := 1; i < len(local); i++ {
		if gap := local[i].Sub(local[i-1]); gap < s.Interval()-time.Microsecond {
			t.Fatalf("slot %d is %v after slot %d, want at least the interval %v (%d slots mapped)", i, gap, i-1, s.Interval(), len(local))
		}
	}
	// And the slow reply did not move the map: every slot's local time is
	// its Redis time plus one offset, give or take less than an interval
	// (the slow reply's own estimate was about 20 ms off). The first
	// reservation is left out: its reply alone set the estimate, however
	// slow a loaded machine made it, and the next fast reply corrects it.
	if len(redisUS) != len(local) {
		t.Fatalf("%d slots from Redis, %d mapped", len(redisUS), len(local))
	}
	lo, hi := time.Duration(math.MaxInt64), time.Duration(math.MinInt64)
	for i := first; i < len(local); i++ {
		off := time.Duration(local[i].UnixNano()) - time.Duration(redisUS[i])*time.Microsecond
		lo, hi = min(lo, off), max(hi, off)
	}
	if hi-lo >= s.Interval() {
		t.Fatalf("local slot times stray %v from one offset to the Redis clock, want under %v", hi-lo, s.Interval())
	}
}

// The clock estimate moves on fast replies, on replies that prove it wrong,
// and on the first reply after a reset; not on a slow reply that fits it.
func TestRedisClockTakesFastOrProvenReplies(t *testing.T) {
	t.Parallel()
	var c redisClock
	t0 := time.Now()
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	const ms = int64(1000) // microseconds
	// Redis time 1,000,000 µs is local t0+0.5ms (mid of a 1 ms trip).
	m := c.sample(at(0), at(time.Millisecond), 1_000_000)
	if got := m(1_000_000); !got.Equal(at(500 * time.Microsecond)) {
		t.Fatalf("first reply maps its time to %v, want the middle of its trip", got.Sub(t0))
	}
	// 100 ms later a reply read 40 ms late; Redis's time (100.5 ms after the
	// first) fits the estimate, which must not move to the middle of 40 ms.
	m = c.sample(at(100*time.Millisecond), at(140*time.Millisecond), 1_000_000+100*ms)
	if got := m(1_000_000 + 100*ms); !got.Equal(at(100*time.Millisecond + 500*time.Microsecond)) {
		t.Fatalf("a slow reply that fits moved the estimate: maps to %v, want 100.5ms", got.Sub(t0))
	}
	// Nor does one whose Redis time falls just after its end (0.3 ms, less
	// than the estimate's own uncertainty): that proves nothing.
	m = c.sample(at(150*time.Millisecond), at(160*time.Millisecond), 1_000_000+159_800)
	if got := m(1_000_000 + 159_800); !got.Equal(at(160*time.Millisecond + 300*time.Microsecond)) {
		t.Fatalf("a slow reply within the estimate's uncertainty moved it: maps to %v, want 160.3ms", got.Sub(t0))
	}
	// A slow reply whose Redis time is a second ahead of the estimate (a
	// new primary) proves it wrong: it is taken.
	m = c.sample(at(200*time.Millisecond), at(240*time.Millisecond), 1_000_000+1200*ms)
	if got := m(1_000_000 + 1200*ms); !got.Equal(at(220 * time.Millisecond)) {
		t.Fatalf("a reply proving the estimate wrong was not taken: maps to %v, want 220ms", got.Sub(t0))
	}
	// After a reset, the next reply sets the estimate whatever its speed.
	c.reset()
	m = c.sample(at(300*time.Millisecond), at(340*time.Millisecond), 1_000_000+1310*ms)
	if got := m(1_000_000 + 1310*ms); !got.Equal(at(320 * time.Millisecond)) {
		t.Fatalf("the first reply after a reset was not taken: maps to %v, want 320ms", got.Sub(t0))
	}
}

// WithoutRamp: each reservation is one slot per waiting goroutine, however
// promptly a caller comes back.
func TestWithoutRampReservesOnlyForWaiters(t *testing.T) {
	s := NewShared(nil, "no-ramp", 10, WithoutRamp()) // want does not use Redis
	ramped := NewShared(nil, "ramp", 10)
	for range 4 {
		s.lastSlot = time.Now().Add(-time.Millisecond) // back just after its slot
		ramped.lastSlot = s.lastSlot
		if got := s.want(1); got != 1 {
			t.Fatalf("WithoutRamp: want(1) = %d, want 1", got)
		}
		ramped.want(1)
	}
	if got := ramped.want(1); got < 2 {
		t.Fatalf("with the ramp, a serial caller's fifth reservation is %d slots; the comparison needs it to ramp", got)
	}
	if got := s.want(20); got != DefaultSharedBatch {
		t.Fatalf("WithoutRamp: want(20) = %d, want a batch (%d)", got, DefaultSharedBatch)
	}
}

// TestSharedSlotsOfEveryEndpointLieOnOneGrid checks that every slot, of
// every endpoint and process, is a whole number of intervals on the Redis
// clock, so that one process's slots of different endpoints coincide and
// share its wake-ups; and that a budget left off the grid (by an earlier
// timq) is moved up to it, never back.
func TestSharedSlotsOfEveryEndpointLieOnOneGrid(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	log := &slotLog{}
	c := r.Client(t)
	// An earlier timq's budget: 1.5 s ahead (beyond a reservation's
	// reach, so modify waits for it), 1 µs off the grid.
	iv := NewShared(c, "probe", 200).ivUS
	offGrid := (redisNow(t, c)+1_500_000)/iv*iv + 1
	if err := c.Set(context.Background(), DefaultSharedKeyPrefix+":{1400000001:modify_group_msg}", offGrid, 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	var lims []*Shared
	for proc, name := range []string{"1400000001:clear_group_msg", "1400000001:modify_group_msg", "1400000001:clear_group_msg", "1400000001:modify_group_msg"} {
		s := NewShared(r.Client(t), name, 200)
		s.onSlots = log.hook(proc)
		lims = append(lims, s)
	}
	var wg sync.WaitGroup
	for _, s := range lims {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 10 {
					if err := s.Wait(context.Background()); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	slots := log.sorted()
	if len(slots) < 160 {
		t.Fatalf("%d slots for 160 grants", len(slots))
	}
	perEndpoint := [2][]int64{}
	for _, s := range slots {
		if s.us%iv != 0 {
			t.Fatalf("slot at %d µs (process %d) is %d µs off the %d µs grid", s.us, s.proc, s.us%iv, iv)
		}
		ep := perEndpoint[s.proc%2]
		if len(ep) > 0 && s.us-ep[len(ep)-1] < iv {
			t.Fatalf("endpoint %d: slots %d µs apart, less than the interval", s.proc%2, s.us-ep[len(ep)-1])
		}
		perEndpoint[s.proc%2] = append(ep, s.us)
	}
	// The off-grid budget moves up to the next grid point, not back.
	if first, want := perEndpoint[1][0], offGrid-1+iv; first != want {
		t.Fatalf("modify's first slot at %d µs, want %d (the budget an earlier timq left at %d µs, moved up to the grid)", first, want, offGrid)
	}
}

// TestSharedPauseBeyondTheRoomIsKept asks for slots with a pause longer
// than the script lets a reservation start ahead (a failover's pause past
// the slots already handed out can be): the answer is "come back", and the
// pause must still be in Redis, because the next request carries none.
// Without it the next reservation could hand out the slots the pause was
// meant to skip.
func TestSharedPauseBeyondTheRoomIsKept(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	c := r.Client(t)
	s := NewShared(c, "1400000001:clear_group_msg", 200)
	pause := maxAheadFactor*s.opts.horizon + time.Second
	before := redisNow(t, c)
	res, err := s.reserve(context.Background(), 8, pause)
	if err != nil {
		t.Fatal(err)
	}
	if res.k != 0 {
		t.Fatalf("reserved %d slots %v ahead, want a come-back answer", res.k, pause)
	}
	res, err = s.reserve(context.Background(), 8, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.k != 0 {
		t.Fatalf("the next request reserved %d slots from %d µs, inside the pause that ends after %d µs", res.k, res.startUS, before+pause.Microseconds())
	}
	tat, err := c.Get(context.Background(), s.key).Int64()
	if err != nil {
		t.Fatalf("budget key after a pause beyond the room: %v", err)
	}
	if tat < before+pause.Microseconds() {
		t.Fatalf("budget at %d µs, before the pause's end %d µs", tat, before+pause.Microseconds())
	}
}
