package ratelimit

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

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

func newProcess(c *redis.Client, log *slotLog, id int, opts ...SharedOption) process {
	cc := &cmdCounter{}
	c.AddHook(cc)
	s := NewShared(c, "1400000001:clear_group_msg", 200, opts...)
	if log != nil {
		s.onSlots = log.hook(id)
	}
	return process{lim: s, cmds: cc}
}

// fakeRedis is a miniredis server inside a testing/synctest bubble, served
// on in-memory pipes (miniredis's Dial). Inside the bubble time.Now, timers,
// context deadlines and x/time/rate read the bubble's fake clock, and so do
// the server's TIME and, with ClockTTL, its expiry: the limiter and Redis
// share one clock, which moves only when every goroutine of the bubble
// waits. A round trip takes no time on it unless a hook makes it, so the
// tests below see exact windows, not wall-clock ones, and take no wall
// time for the seconds they simulate.
type fakeRedis struct{ m *miniredis.Miniredis }

// inBubble runs f in a new bubble with a fresh fakeRedis.
func inBubble(t *testing.T, f func(t *testing.T, r fakeRedis)) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		m := miniredis.NewMiniRedis()
		m.ClockTTL(true)
		t.Cleanup(m.Close) // after the clients, which are registered later
		f(t, fakeRedis{m})
	})
}

// client returns a connection to the server, closed when the test ends.
func (r fakeRedis) client(t *testing.T) *redis.Client {
	return r.clientWith(t, func() (net.Conn, error) { return r.m.Dial() })
}

// clientWith returns a client whose connections come from dial.
func (r fakeRedis) clientWith(t *testing.T, dial func() (net.Conn, error)) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Dialer:     func(context.Context, string, string) (net.Conn, error) { return dial() },
		MaxRetries: -1,
		// Maintenance notifications resolve the address's host name when
		// the client is made, a lookup outside the bubble.
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// fetcherStopped waits until every goroutine of the bubble waits (for a
// slot's time, a reply, a timer) and returns whether s's fetch goroutine
// has stopped.
func fetcherStopped(s *Shared) bool {
	synctest.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.fetching
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

// spawnWaits starts goroutines goroutines that each call s.Wait each
// times, added to wg.
func spawnWaits(t *testing.T, wg *sync.WaitGroup, s *Shared, goroutines, each int) {
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if err := s.Wait(context.Background()); err != nil {
					t.Error(err)
					return
				}
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

// The one test on the configured Redis (a real server when one answers): the
// script on the server's own Lua, with its number formatting, and four
// processes with their own connections. Its checks hold whatever the timing
// of the machine: slot arithmetic on the Redis clock, not windows of wall
// time.
func TestSharedSlotsNeverExceedTheBudgetAcrossProcesses(t *testing.T) {
	t.Parallel()
	r := testenv.Redis(t)
	log := &slotLog{}
	const procs, perProc, total = 4, 12, 600
	ps := make([]process, procs)
	for i := range ps {
		ps[i] = newProcess(r.Client(t), log, i)
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
	checkSlots(t, ps, log, total)
	for _, p := range ps {
		waitFetcherStops(t, p.lim)
	}
}

// The same on the fake clock, where the schedule is exact.
func TestSharedSlotsNeverExceedTheBudgetOnTheFakeClock(t *testing.T) {
	inBubble(t, func(t *testing.T, r fakeRedis) {
		log := &slotLog{}
		const procs, perProc, total = 4, 10, 600
		ps := make([]process, procs)
		for i := range ps {
			ps[i] = newProcess(r.client(t), log, i)
		}
		start := time.Now()
		var wg sync.WaitGroup
		for _, p := range ps {
			spawnWaits(t, &wg, p.lim, perProc, total/procs/perProc)
		}
		wg.Wait()
		checkSlots(t, ps, log, total)
		// 600 grants at one per 5077 µs take 599 intervals at least.
		if took, least := time.Since(start), 599*ps[0].lim.Interval(); took < least {
			t.Fatalf("600 grants took %v, less than 599 intervals (%v)", took, least)
		}
		for i, p := range ps {
			if !fetcherStopped(p.lim) {
				t.Errorf("process %d: the fetch goroutine runs with no goroutine waiting", i)
			}
		}
	})
}

// checkSlots checks what the processes ps were handed for total grants: the
// slots an interval apart on the Redis clock, at most 197 in any sliding
// second, every process served, and at most 2 Redis commands per grant.
func checkSlots(t *testing.T, ps []process, log *slotLog, total int64) {
	t.Helper()
	slots := log.sorted()
	us := make([]int64, len(slots))
	perProcSlots := make([]int, len(ps))
	for i, s := range slots {
		us[i] = s.us
		perProcSlots[s.proc]++
		if i > 0 && s.us-slots[i-1].us < ps[0].lim.ivUS {
			t.Fatalf("slots %d and %d are %d µs apart, less than the interval %d µs", i-1, i, s.us-slots[i-1].us, ps[0].lim.ivUS)
		}
	}
	if int64(len(slots)) < total {
		t.Fatalf("%d slots reserved for %d grants", len(slots), total)
	}
	// 1 s / 5077 µs = 196.96: at most 197 slots in any sliding second.
	if got := maxInWindow(us, 1e6); got > 197 {
		t.Fatalf("%d slots in one sliding second, want at most 197", got)
	}
	var grants, wire int64
	for i, p := range ps {
		st := p.lim.Stats()
		grants += st.Grants
		wire += p.cmds.n.Load()
		if st.Commands != p.cmds.n.Load() {
			t.Errorf("process %d: Stats().Commands = %d, the client sent %d", i, st.Commands, p.cmds.n.Load())
		}
		if perProcSlots[i] == 0 {
			t.Errorf("process %d got no slot", i)
		}
	}
	if grants != total {
		t.Fatalf("%d grants, want %d", grants, total)
	}
	if perGrant := float64(wire) / float64(grants); perGrant > 2 {
		t.Fatalf("%.2f Redis commands per grant, want at most 2", perGrant)
	}
	t.Logf("%d grants, %d slots, %d Redis commands (%.3f per grant), per process %v", grants, len(slots), wire, float64(wire)/float64(grants), perProcSlots)
}

func TestSharedCrashedHolderShareComesBackAndANewcomerGetsItsShare(t *testing.T) {
	inBubble(t, func(t *testing.T, r fakeRedis) {
		clock := r.client(t)
		log := &slotLog{}
		a, b, c := newProcess(r.client(t), log, 0), newProcess(r.client(t), log, 1), newProcess(r.client(t), log, 2)
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
		// The newcomer's fair share of 197 is 65 a second; from half a
		// second after joining it has most of it (68 in most runs; the
		// order in which the bubble's goroutines run varies, and with it
		// who gets the first slots after a horizon).
		newcomer := count(joinUS+500_000, joinUS+1_500_000, 2)
		if newcomer < 50 {
			t.Errorf("the newcomer got %d slots in the second from half a second after it joined, want at least 50 (a fair share is 65)", newcomer)
		}
		// After the crash the survivors get the whole budget again (a
		// third of it stranded would leave them 131): every slot of a
		// second but the one its start may cut.
		survivors := count(crashUS+500_000, crashUS+1_500_000, 0, 1)
		if survivors < 196 {
			t.Errorf("the survivors got %d slots in the second after the crash, want at least 196 of 197", survivors)
		}
		us := []int64{}
		for _, s := range log.sorted() {
			us = append(us, s.us)
		}
		if got := maxInWindow(us, 1e6); got > 197 {
			t.Fatalf("%d slots in one sliding second, want at most 197", got)
		}
		t.Logf("newcomer %d, survivors %d, wasted by the crashed one %d", newcomer, survivors, c.lim.Stats().Wasted)
	})
}

func TestSharedBackoffPausesEveryProcess(t *testing.T) {
	inBubble(t, func(t *testing.T, r fakeRedis) {
		clock := r.client(t)
		log := &slotLog{}
		a, b := newProcess(r.client(t), log, 0), newProcess(r.client(t), log, 1)
		ctx := context.Background()
		if err := a.lim.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		before := redisNow(t, clock)
		log.mu.Lock()
		earlier := len(log.slots)
		log.mu.Unlock()
		start := time.Now()
		a.lim.Backoff(400 * time.Millisecond)
		if err := b.lim.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 400*time.Millisecond {
			t.Fatalf("another process's Wait returned %v after a 400ms backoff", d)
		}
		if err := a.lim.Wait(ctx); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 400*time.Millisecond {
			t.Fatalf("Wait returned %v after a 400ms backoff", d)
		}
		log.mu.Lock()
		slots := slices.Clone(log.slots[earlier:])
		log.mu.Unlock()
		if len(slots) == 0 {
			t.Fatal("no slot reserved after the backoff")
		}
		for _, s := range slots {
			if s.us < before+400_000 {
				t.Fatalf("process %d got a slot %d µs after the backoff began, want at least 400000", s.proc, s.us-before)
			}
		}
	})
}

func TestSharedIdleGrantCostsOneCommandAndSurvivesScriptFlush(t *testing.T) {
	inBubble(t, func(t *testing.T, r fakeRedis) {
		c := r.client(t)
		p := newProcess(c, nil, 0)
		ctx := context.Background()
		if err := p.lim.Wait(ctx); err != nil { // EVALSHA, then EVAL
			t.Fatal(err)
		}
		if st := p.lim.Stats(); st.Commands != 2 || st.Wasted != 0 {
			t.Fatalf("the first Wait: %+v, want 2 commands (EVALSHA, EVAL) and nothing wasted", st)
		}
		for range 3 {
			before := p.lim.Stats()
			time.Sleep(10 * time.Millisecond)
			if err := p.lim.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			after := p.lim.Stats()
			if n, wasted := after.Commands-before.Commands, after.Wasted-before.Wasted; n != 1 || wasted != 0 {
				t.Fatalf("an idle Wait sent %d commands and wasted %d slots, want 1 and none", n, wasted)
			}
		}
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		before := p.lim.Stats()
		if err := p.lim.Wait(ctx); err != nil {
			t.Fatalf("Wait after SCRIPT FLUSH: %v", err)
		}
		after := p.lim.Stats()
		if n := after.Commands - before.Commands; n != 2 {
			t.Fatalf("Wait after SCRIPT FLUSH sent %d commands, want 2 (EVALSHA, then EVAL)", n)
		}
		ttl, err := c.PTTL(ctx, p.lim.Key()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= 0 || ttl > DefaultSharedHorizon+time.Second {
			t.Fatalf("budget key TTL %v, want a little over a second", ttl)
		}
		// The key expires a second after its last slot.
		time.Sleep(ttl + time.Millisecond)
		if n, err := c.Exists(ctx, p.lim.Key()).Result(); err != nil || n != 0 {
			t.Fatalf("budget key still there %v after its last slot (EXISTS %d, %v)", ttl, n, err)
		}
		if !strings.HasSuffix(p.lim.Key(), "{1400000001:clear_group_msg}") {
			t.Fatalf("key %q is not hash-tagged with its name", p.lim.Key())
		}
		if !fetcherStopped(p.lim) {
			t.Fatal("the fetch goroutine runs with no goroutine waiting")
		}
	})
}

// A caller that waits for one slot at a time and comes straight back (the
// recall batcher's dispatcher) gets growing reservations instead of costing
// a command per call, and every reserved slot is accounted for.
func TestSharedSerialCallerIsNotACommandPerCall(t *testing.T) {
	inBubble(t, func(t *testing.T, r fakeRedis) {
		p := newProcess(r.client(t), nil, 0)
		ctx := context.Background()
		const calls = 60
		for range calls {
			if err := p.lim.Wait(ctx); err != nil {
				t.Fatal(err)
			}
		}
		st := p.lim.Stats()
		// Reservations of 1, 2, 4, 8 and then a batch of 16: 7 of them for
		// 60 calls, plus the EVAL after the first EVALSHA.
		if st.Commands != 8 {
			t.Fatalf("%d Redis commands for %d calls of one goroutine, want 8; stats %+v", st.Commands, calls, st)
		}
		if st.Grants != calls || st.Wasted != 0 {
			t.Fatalf("%d grants and %d wasted, want %d and none", st.Grants, st.Wasted, calls)
		}
		p.lim.mu.Lock()
		pooled := len(p.lim.pool)
		p.lim.mu.Unlock()
		if st.Reserved != st.Grants+int64(pooled) {
			t.Fatalf("reserved %d slots but granted %d and pooled %d", st.Reserved, st.Grants, pooled)
		}
		// A caller that stops leaves at most the rest of one reservation.
		if pooled >= DefaultSharedBatch {
			t.Fatalf("%d slots left in the pool, want fewer than a batch (%d)", pooled, DefaultSharedBatch)
		}
	})
}

func TestSharedWaitCanceledGivesTheSlotBack(t *testing.T) {
	inBubble(t, func(t *testing.T, r fakeRedis) {
		p := newProcess(r.client(t), nil, 0)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		hammer(ctx, &wg, p.lim, 16)
		time.Sleep(200 * time.Millisecond)
		cancel()
		wg.Wait()
		if !fetcherStopped(p.lim) {
			t.Fatal("the fetch goroutine runs with no goroutine waiting")
		}
		st := p.lim.Stats()
		p.lim.mu.Lock()
		pooled := len(p.lim.pool)
		p.lim.mu.Unlock()
		if st.Grants == 0 {
			t.Fatalf("no grant in 200ms: %+v", st)
		}
		if st.Reserved != st.Grants+st.Wasted+int64(pooled) {
			t.Fatalf("reserved %d slots but granted %d, wasted %d and pooled %d", st.Reserved, st.Grants, st.Wasted, pooled)
		}
		if err := p.lim.Wait(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait with a canceled context = %v", err)
		}
	})
}

// switchedRedis is a client whose connections fail while down is set, as
// when nothing listens on Redis's port.
type switchedRedis struct {
	down atomic.Bool
}

func (sw *switchedRedis) client(t *testing.T, r fakeRedis) *redis.Client {
	return r.clientWith(t, func() (net.Conn, error) {
		if sw.down.Load() {
			return nil, errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
		}
		return r.m.Dial()
	})
}

func TestSharedBlocksWhileRedisIsDown(t *testing.T) {
	inBubble(t, func(t *testing.T, r fakeRedis) {
		logger, logs := testenv.Logger(t)
		sw := &switchedRedis{}
		sw.down.Store(true)
		s := NewShared(sw.client(t, r), "x", 200, WithLogger(logger))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait with Redis down = %v, want the context's deadline", err)
		}
		if st := s.Stats(); st.Grants != 0 {
			t.Fatalf("granted %d calls without Redis", st.Grants)
		}
		if !fetcherStopped(s) {
			t.Fatal("the fetch goroutine runs with no goroutine waiting")
		}
		if l := logs.String(); strings.Count(l, "Redis does not answer") != 1 {
			t.Fatalf("want one warning that Redis does not answer in 5 s of retries; log:\n%s", l)
		}
		// Redis comes back: the next Wait is granted, and the limiter says so.
		sw.down.Store(false)
		if err := s.Wait(context.Background()); err != nil {
			t.Fatalf("Wait once Redis answers again: %v", err)
		}
		if l := logs.String(); !strings.Contains(l, "Redis answers again") {
			t.Fatalf("no line saying Redis answers again; log:\n%s", l)
		}
		logs.Stop()
	})
}

func TestSharedFallbackRateWhileRedisIsDown(t *testing.T) {
	inBubble(t, func(t *testing.T, r fakeRedis) {
		sw := &switchedRedis{}
		sw.down.Store(true)
		s := NewShared(sw.client(t, r), "x", 200, WithFallbackRate(50))
		ctx := context.Background()
		var at []time.Time
		for range 3 {
			if err := s.Wait(ctx); err != nil {
				t.Fatalf("Wait with a fallback rate: %v", err)
			}
			at = append(at, time.Now())
		}
		if st := s.Stats(); st.FallbackGrants != 3 || st.Grants != 3 {
			t.Fatalf("stats %+v, want 3 grants from the fallback", st)
		}
		// 50 per second: the grants are 20 ms apart.
		for i := 1; i < len(at); i++ {
			if gap := at[i].Sub(at[i-1]); gap < 20*time.Millisecond {
				t.Fatalf("fallback grants %d and %d are %v apart, want at least 20ms at 50/s", i-1, i, gap)
			}
		}
		// With nobody waiting, the fetch goroutine stops at its next retry.
		time.Sleep(maxRedisRetry)
		if !fetcherStopped(s) {
			t.Fatalf("the fetch goroutine runs %v after the last grant with no goroutine waiting", maxRedisRetry)
		}
	})
}

func TestSharedBudgetThatGoesBackInTimeIsPushedPastEveryHeldSlot(t *testing.T) {
	inBubble(t, func(t *testing.T, r fakeRedis) {
		log := &slotLog{}
		const held = 50
		// WithoutRamp: one slot per waiting goroutine, none left over in
		// the pool for the Wait after the DEL to take instead of asking.
		p := newProcess(r.client(t), log, 0, WithBatch(held), WithoutRamp())
		ctx := context.Background()
		// 50 goroutines hold 50 slots, 250 ms of budget.
		var wg sync.WaitGroup
		for range held {
			wg.Add(1)
			go func() { defer wg.Done(); _ = p.lim.Wait(ctx) }()
		}
		for p.lim.Stats().Reserved < held {
			time.Sleep(time.Millisecond)
		}
		if got := p.lim.Stats().Reserved; got != held {
			t.Fatalf("%d slots reserved for %d waiting goroutines, want %d", got, held, held)
		}
		// A failover that loses the key's last writes looks like this.
		if err := r.client(t).Del(ctx, p.lim.Key()).Err(); err != nil {
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
		// After the held slots: the reservation that went back in time,
		// dropped, and the one past every held slot plus a horizon, used.
		after := slots[held:]
		if len(after) != 2 {
			t.Fatalf("%d slots reserved after the DEL, want 2 (one dropped, one used)", len(after))
		}
		if after[0].us >= lastEnd {
			t.Fatalf("the reservation after the DEL starts %d µs after the held slots: the budget did not go back in time", after[0].us-lastEnd)
		}
		if want := lastEnd + DefaultSharedHorizon.Microseconds(); after[1].us < want {
			t.Fatalf("after the budget went back in time the next slot is at %d, want at least %d (past the held slots plus a horizon)", after[1].us, want)
		}
		if st := p.lim.Stats(); st.Wasted != 1 || st.Grants != held+1 {
			t.Fatalf("stats %+v, want the slot that went back in time wasted and %d grants", st, held+1)
		}
	})
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
	inBubble(t, func(t *testing.T, r fakeRedis) {
		c := r.client(t)
		slow := &slowReply{nth: 3, delay: 40 * time.Millisecond}
		c.AddHook(slow)
		s := NewShared(c, "1400000001:group_msg_recall", 200)
		var mu sync.Mutex
		var local []time.Time
		var redisUS []int64
		s.onSlots = func(start int64, k int, iv int64) {
			mu.Lock()
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
		var wg sync.WaitGroup
		spawnWaits(t, &wg, s, 20, 5)
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
		// And the slow reply did not move the map: every slot's local time
		// is its Redis time plus one offset. Redis's clock is the local one
		// here and the other round trips take no time, so the offset is 0;
		// taken from the slow reply's middle, it would be 20 ms.
		if len(redisUS) != len(local) {
			t.Fatalf("%d slots from Redis, %d mapped", len(redisUS), len(local))
		}
		for i := range local {
			if off := local[i].Sub(time.UnixMicro(redisUS[i])); off < 0 || off >= time.Microsecond {
				t.Fatalf("slot %d maps %v off its Redis time, want 0", i, off)
			}
		}
	})
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
	inBubble(t, func(t *testing.T, r fakeRedis) { testSlotsOnOneGrid(t, r.client) })
}

func testSlotsOnOneGrid(t *testing.T, client func(*testing.T) *redis.Client) {
	log := &slotLog{}
	c := client(t)
	// An earlier timq's budget: 1.5 s ahead (beyond a reservation's
	// reach, so modify waits for it), 1 µs off the grid.
	iv := NewShared(c, "probe", 200).ivUS
	offGrid := (redisNow(t, c)+1_500_000)/iv*iv + 1
	if err := c.Set(context.Background(), DefaultSharedKeyPrefix+":{1400000001:modify_group_msg}", offGrid, 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	var lims []*Shared
	for proc, name := range []string{"1400000001:clear_group_msg", "1400000001:modify_group_msg", "1400000001:clear_group_msg", "1400000001:modify_group_msg"} {
		s := NewShared(client(t), name, 200)
		s.onSlots = log.hook(proc)
		lims = append(lims, s)
	}
	var wg sync.WaitGroup
	for _, s := range lims {
		spawnWaits(t, &wg, s, 4, 10)
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
	inBubble(t, func(t *testing.T, r fakeRedis) { testPauseBeyondTheRoom(t, r.client(t)) })
}

func testPauseBeyondTheRoom(t *testing.T, c *redis.Client) {
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
