package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// Defaults for a Shared limiter's options.
const (
	// DefaultSharedBatch is the most slots one reservation asks for: 80 ms
	// of a 200/s budget. Twice the earlier 8 halved the reservations under
	// load, and with four workers the worker's CPU fell with them (make
	// bench); a crashed process still wastes at most its horizon.
	DefaultSharedBatch = 16
	// DefaultSharedHorizon is how far ahead of the Redis clock slots are
	// reserved.
	DefaultSharedHorizon = 300 * time.Millisecond
	// DefaultSharedKeyPrefix starts every budget key.
	DefaultSharedKeyPrefix = "timq:budget"
	// DefaultSharedCallTimeout bounds one Redis command of the limiter.
	DefaultSharedCallTimeout = 2 * time.Second
)

const (
	// maxAheadFactor times the horizon is the furthest ahead the script
	// reserves, whatever the number of processes.
	maxAheadFactor = 4
	minRedisRetry  = 100 * time.Millisecond
	maxRedisRetry  = 2 * time.Second
)

// reserveScript reserves up to ARGV[2] slots on the budget in KEYS[1].
//
// KEYS[1]: the budget key; its value is the next free slot (TAT), in
// microseconds on the Redis clock.
// ARGV[1]: the interval between slots in microseconds.
// ARGV[2]: slots wanted (0: none, only ARGV[4]).
// ARGV[3]: the furthest ahead of now a reservation may start, in
// microseconds (maxAheadFactor horizons: processes keep themselves within
// a horizon, this bounds the total).
// ARGV[4]: a pause in microseconds: TAT becomes at least now + pause first.
//
// It returns {now, k, t}: k slots were reserved starting at t (slot i is
// at t + i*interval), or k = 0 and t is when a full batch will fit.
// Numbers are written with %.0f because Redis's Lua prints numbers with 14
// digits, which would round a microsecond timestamp.
var reserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local want = tonumber(ARGV[2])
local ahead = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < now then tat = now end
local pause = now + tonumber(ARGV[4])
if pause > tat then tat = pause end
-- Every budget's slots lie on one grid, whole intervals of the Redis clock.
local off = tat % interval
if off > 0 then tat = tat + interval - off end
local start = tat
local k = 0
local reply = nil
if want > 0 then
  local room = math.floor((now + ahead - tat) / interval) + 1
  if room < 1 then
    -- Come back later; the SET below still keeps a pause that reaches
    -- beyond the room, which the caller's next request does not repeat.
    reply = {now, 0, tat - ahead + (want - 1) * interval}
  else
    k = want
    if room < k then k = room end
    tat = tat + k * interval
  end
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', string.format('%.0f', math.floor((tat - now) / 1000) + 1000))
return reply or {now, k, start}
`)

// SharedOption configures a Shared limiter.
type SharedOption func(*sharedOptions)

type sharedOptions struct {
	batch        int
	horizon      time.Duration
	keyPrefix    string
	callTimeout  time.Duration
	fallbackRate float64
	log          *slog.Logger
	noRamp       bool
}

// WithBatch sets the most slots one reservation asks for. Larger batches
// mean fewer Redis commands and more slots wasted when a process dies.
// Defaults to DefaultSharedBatch.
func WithBatch(n int) SharedOption { return func(o *sharedOptions) { o.batch = n } }

// WithHorizon sets how far ahead of the Redis clock slots may be reserved.
// It bounds how long a goroutine waits once it holds a slot and what a
// crashed process wastes. Defaults to DefaultSharedHorizon.
func WithHorizon(d time.Duration) SharedOption { return func(o *sharedOptions) { o.horizon = d } }

// WithKeyPrefix sets the prefix of the budget key, PREFIX:{NAME}.
// Defaults to DefaultSharedKeyPrefix.
func WithKeyPrefix(p string) SharedOption { return func(o *sharedOptions) { o.keyPrefix = p } }

// WithCallTimeout bounds each Redis command of the limiter. Defaults to
// DefaultSharedCallTimeout.
func WithCallTimeout(d time.Duration) SharedOption {
	return func(o *sharedOptions) { o.callTimeout = d }
}

// WithFallbackRate lets the limiter grant calls at r per second from a
// local token bucket while Redis does not answer. Set it to at most
// limit*Headroom divided by the number of processes sharing the budget.
// Defaults to 0: while Redis does not answer, Wait blocks.
func WithFallbackRate(r float64) SharedOption {
	return func(o *sharedOptions) { o.fallbackRate = r }
}

// WithoutRamp turns off the reservation ramp for a caller that waits for
// one slot at a time (see want), so that each reservation asks for one slot
// per waiting goroutine. Use it where many goroutines wait at once (one per
// task): there the ramp buys nothing under load, and at low load, when a
// second lone caller comes just after the first, its extra slot goes unused.
// The recall batcher needs the ramp: when recalls come one by one, one
// dispatcher waits at a time and comes straight back.
func WithoutRamp() SharedOption { return func(o *sharedOptions) { o.noRamp = true } }

// WithLogger sets where the limiter reports losing and regaining Redis.
// Defaults to a logger that discards.
func WithLogger(l *slog.Logger) SharedOption { return func(o *sharedOptions) { o.log = l } }

// SharedStats counts what a Shared limiter did since it was made.
type SharedStats struct {
	// Commands is the number of Redis commands the limiter sent (EVALSHA,
	// and EVAL when the server did not have the script).
	Commands int64
	// Grants is the number of Wait calls that returned nil.
	Grants int64
	// Reserved is the number of slots Redis handed to this process.
	Reserved int64
	// Wasted is the number of reserved slots not used: their goroutine
	// gave up, woke too late, or a Backoff cancelled them.
	Wasted int64
	// FallbackGrants is the number of grants made from the fallback rate
	// while Redis did not answer.
	FallbackGrants int64
}

// Shared is a Limiter whose budget holds across every process that makes
// one with the same Redis and name (see the package documentation). It is
// safe for concurrent use. It runs a goroutine only while goroutines wait
// in Wait, so it needs no Close.
type Shared struct {
	rdb      redis.UniversalClient
	key      string
	opts     sharedOptions
	interval time.Duration
	ivUS     int64 // interval in whole microseconds
	local    *rate.Limiter
	fallback *rate.Limiter // nil: block while Redis is down

	commands, grants, reserved, wasted, fallbackGrants atomic.Int64

	mu       sync.Mutex
	queue    []*slotWaiter // goroutines waiting for a slot, first come first served
	pool     []time.Time   // slots reserved and not yet taken, ascending
	fetching bool          // the fetch goroutine runs
	kick     chan struct{} // wakes a sleeping fetch goroutine; capacity 1
	until    time.Time     // no call before this (Backoff)
	down     bool          // the last Redis command failed
	lastSlot time.Time     // the latest slot Redis gave this process
	srtt     time.Duration // smoothed round trip to Redis
	clock    redisClock    // the Redis clock on the local one (own lock)
	// lastLocal is the local time of the latest slot mapped (only the
	// fetch goroutine uses it).
	lastLocal time.Time
	// lastEndUS is, on the Redis clock, the end of the last slots Redis
	// gave this process (only the fetch goroutine uses it).
	lastEndUS int64
	// ramp and wastedSeen size reservations for a caller that waits for
	// one slot at a time but comes back at once (see want); only the fetch
	// goroutine uses them.
	ramp       int
	wastedSeen int64
	// onSlots, when set (tests), sees every reservation: the Redis time of
	// its first slot, the count and the interval, all in microseconds.
	onSlots func(startUS int64, k int, intervalUS int64)
	// onLocalSlots, when set (tests), sees every reservation's slots in
	// local time, as Wait will use them.
	onLocalSlots func(slots []time.Time)
}

type slotWaiter struct{ ch chan time.Time }

// NewShared returns a limiter that holds name's budget of limit calls per
// second, paced at limit*Headroom, across every process sharing rdb. name
// identifies the budget: the API's limit is per app and endpoint, so use
// both (the worker uses "SDKAPPID:ENDPOINT"). Its key is PREFIX:{name}, one
// key in one hash slot, so it works on Redis Cluster.
func NewShared(rdb redis.UniversalClient, name string, limit float64, opts ...SharedOption) *Shared {
	o := sharedOptions{
		batch:       DefaultSharedBatch,
		horizon:     DefaultSharedHorizon,
		keyPrefix:   DefaultSharedKeyPrefix,
		callTimeout: DefaultSharedCallTimeout,
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.batch < 1 {
		o.batch = 1
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	paced := limit * Headroom
	ivUS := int64(math.Ceil(1e6 / paced))
	if ivUS < 1 {
		ivUS = 1
	}
	iv := time.Duration(ivUS) * time.Microsecond
	if o.horizon < iv {
		o.horizon = iv
	}
	s := &Shared{
		rdb:      rdb,
		key:      o.keyPrefix + ":{" + name + "}",
		opts:     o,
		interval: iv,
		ivUS:     ivUS,
		local:    rate.NewLimiter(rate.Limit(paced), 1),
		kick:     make(chan struct{}, 1),
		srtt:     time.Millisecond,
	}
	if o.fallbackRate > 0 {
		s.fallback = rate.NewLimiter(rate.Limit(o.fallbackRate), 1)
	}
	return s
}

// Key returns the Redis key that holds the budget.
func (s *Shared) Key() string { return s.key }

// Interval returns the time between two slots of the budget.
func (s *Shared) Interval() time.Duration { return s.interval }

// Stats returns the limiter's counters.
func (s *Shared) Stats() SharedStats {
	return SharedStats{
		Commands:       s.commands.Load(),
		Grants:         s.grants.Load(),
		Reserved:       s.reserved.Load(),
		Wasted:         s.wasted.Load(),
		FallbackGrants: s.fallbackGrants.Load(),
	}
}

// Wait blocks until the caller holds a slot of the shared budget and the
// slot's time has come, or ctx ends (then it returns ctx's error and the
// caller must not call). A slot the caller cannot use in time is given
// back or dropped, never used late.
func (s *Shared) Wait(ctx context.Context) error {
	for {
		slot, err := s.take(ctx)
		if err != nil {
			return err
		}
		if d := time.Until(slot); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				s.giveBack(slot)
				return ctx.Err()
			case <-t.C:
			}
		}
		s.mu.Lock()
		void := slot.Before(s.until)
		s.mu.Unlock()
		if void || time.Since(slot) > s.interval {
			s.wasted.Add(1)
			continue
		}
		s.grants.Add(1)
		return nil
	}
}

// Backoff pauses every process sharing the budget for at least d: it
// pushes the budget's next free slot to now+d in Redis (one command) and
// drops the slots this process holds before then. Processes other than
// this one stop at their next reservation, within the horizon.
func (s *Shared) Backoff(d time.Duration) {
	end := time.Now().Add(d)
	s.mu.Lock()
	if end.After(s.until) {
		s.until = end
	}
	kept := s.pool[:0]
	for _, t := range s.pool {
		if t.Before(s.until) {
			s.wasted.Add(1)
			continue
		}
		kept = append(kept, t)
	}
	s.pool = kept
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.callTimeout)
	defer cancel()
	if _, err := s.reserve(ctx, 0, d); err != nil {
		s.noteDown(err)
	}
}

// take returns a slot: one from the pool, or one the fetch goroutine
// reserves for this caller.
func (s *Shared) take(ctx context.Context) (time.Time, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, err
	}
	s.mu.Lock()
	s.dropStaleLocked(time.Now())
	if len(s.pool) > 0 {
		t := s.pool[0]
		s.pool = s.pool[1:]
		s.mu.Unlock()
		return t, nil
	}
	w := &slotWaiter{ch: make(chan time.Time, 1)}
	s.queue = append(s.queue, w)
	if !s.fetching {
		s.fetching = true
		go s.fetch()
	} else {
		s.kickLocked()
	}
	s.mu.Unlock()
	select {
	case t := <-w.ch:
		return t, nil
	case <-ctx.Done():
		s.mu.Lock()
		if i := slices.Index(s.queue, w); i >= 0 {
			s.queue = slices.Delete(s.queue, i, i+1)
			s.kickLocked()
		}
		s.mu.Unlock()
		// Slots are sent under s.mu, so one sent before the removal is in
		// the channel now.
		select {
		case t := <-w.ch:
			s.giveBack(t)
		default:
		}
		return time.Time{}, ctx.Err()
	}
}

// giveBack returns an unused slot to the pool for another goroutine.
func (s *Shared) giveBack(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !t.After(time.Now().Add(-s.interval)) || t.Before(s.until) {
		s.wasted.Add(1)
		return
	}
	if len(s.queue) > 0 {
		s.deliverLocked(t)
		return
	}
	i, _ := slices.BinarySearchFunc(s.pool, t, time.Time.Compare)
	s.pool = slices.Insert(s.pool, i, t)
}

func (s *Shared) dropStaleLocked(now time.Time) {
	n := 0
	for n < len(s.pool) && (now.Sub(s.pool[n]) > s.interval || s.pool[n].Before(s.until)) {
		n++
	}
	if n > 0 {
		s.wasted.Add(int64(n))
		s.pool = s.pool[n:]
	}
}

// deliverLocked hands t to the first waiter. There must be one.
func (s *Shared) deliverLocked(t time.Time) {
	w := s.queue[0]
	s.queue = s.queue[1:]
	w.ch <- t
}

func (s *Shared) kickLocked() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// fetch reserves slots for the waiting goroutines until none is left. It
// is the only goroutine of this limiter that talks to Redis for slots.
//
// It asks for a batch only when the slots this process already holds run
// out soon (within lowWater) or enough goroutines wait to fill a batch, and
// never while they reach a horizon ahead: so one command usually buys a
// full batch, and the process holds at most a horizon plus a batch of the
// budget.
func (s *Shared) fetch() {
	retry := minRedisRetry
	pause := time.Duration(0)
	lowWater := s.opts.horizon / 3
	for {
		s.mu.Lock()
		want := len(s.queue)
		ahead := time.Until(s.lastSlot)
		if want == 0 {
			s.fetching = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		switch {
		case ahead > s.opts.horizon:
			// Strictly: at exactly a horizon the sleep would be zero and
			// the loop would spin until the clock moved.
			s.sleep(time.Now().Add(ahead-s.opts.horizon), false)
			continue
		case want < s.opts.batch && ahead > lowWater:
			s.sleep(time.Now().Add(ahead-lowWater), true)
			continue
		}
		want = s.want(want)
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.callTimeout)
		// A slot at Redis's "now" is in the past when the reply arrives;
		// ask for slots a round trip ahead instead, so an idle budget's
		// first slot is still usable after a slow round trip.
		res, err := s.reserve(ctx, want, max(pause, min(s.roundTrip(), s.opts.horizon)))
		cancel()
		if err != nil {
			s.noteDown(err)
			pause = s.opts.horizon
			deadline := time.Now().Add(retry)
			retry = min(2*retry, maxRedisRetry)
			for {
				if s.fallback != nil {
					s.serveFallback()
				}
				if s.sleep(deadline, s.fallback != nil) != wokeByArrival {
					break
				}
			}
			continue
		}
		pause, retry = 0, minRedisRetry
		s.noteUp()
		if res.k == 0 {
			s.sleep(res.retryAt, false)
			continue
		}
		if res.startUS < s.lastEndUS {
			// The budget went back in time: Redis lost the key's last
			// writes (a failover before they reached the replica, a
			// restart, a flush) or a new primary's clock is behind. Slots
			// handed out before may come again, so drop these and push
			// the budget past every slot this process held, plus a
			// horizon for the other processes'.
			s.wasted.Add(int64(res.k))
			pause = time.Duration(s.lastEndUS-res.nowUS)*time.Microsecond + s.opts.horizon
			s.lastEndUS = 0
			s.clock.reset() // perhaps another server, another clock
			s.opts.log.Warn("rate budget: the budget in Redis went back in time (failover?); pausing past the slots already handed out",
				"key", s.key, "pause", pause)
			continue
		}
		s.lastEndUS = res.startUS + int64(res.k)*s.ivUS
		s.mu.Lock()
		for _, t := range res.slots {
			if t.After(s.lastSlot) {
				s.lastSlot = t
			}
			if t.Before(s.until) {
				s.wasted.Add(1)
				continue
			}
			if len(s.queue) > 0 {
				s.deliverLocked(t)
			} else {
				s.pool = append(s.pool, t)
			}
		}
		s.mu.Unlock()
	}
}

// want returns how many slots to reserve for waiting goroutines.
//
// Usually that is one per goroutine, at most a batch. But a caller that
// waits for one slot at a time, using each as soon as it comes (the recall
// batcher with one batch queued at a time), would then cost a Redis command
// per call. So
// when no slot was wasted since the last reservation and a goroutine
// waits again within one interval of the last slot (every slot was used,
// and the next would have been in time), the reservation doubles, up to a
// batch, as in TCP's slow start; the slots nobody waits for yet go to the
// pool. Any wasted slot, or a late return, starts again from the waiters.
// A caller that stops wastes at most the rest of one reservation.
func (s *Shared) want(waiting int) int {
	if s.opts.noRamp {
		return min(waiting, s.opts.batch)
	}
	wasted := s.wasted.Load()
	s.mu.Lock()
	prompt := !s.lastSlot.IsZero() && time.Since(s.lastSlot) < s.interval && len(s.pool) == 0
	s.mu.Unlock()
	if prompt && wasted == s.wastedSeen {
		s.ramp = min(max(2*s.ramp, 1), s.opts.batch)
	} else {
		s.ramp = 1
	}
	s.wastedSeen = wasted
	return min(max(waiting, s.ramp), s.opts.batch)
}

type wake int

const (
	wokeByDeadline wake = iota
	wokeByEmptyQueue
	wokeByArrival
)

// sleep waits until deadline. It returns early when no goroutine waits any
// more, and when one arrives if onArrival is set.
func (s *Shared) sleep(deadline time.Time, onArrival bool) wake {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return wokeByDeadline
		case <-s.kick:
			s.mu.Lock()
			n := len(s.queue)
			s.mu.Unlock()
			if n == 0 {
				return wokeByEmptyQueue
			}
			if onArrival {
				return wokeByArrival
			}
		}
	}
}

// serveFallback hands every waiting goroutine a slot from the fallback
// token bucket.
func (s *Shared) serveFallback() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for len(s.queue) > 0 {
		t := now.Add(s.fallback.ReserveN(now, 1).DelayFrom(now))
		s.fallbackGrants.Add(1)
		s.deliverLocked(t)
	}
}

type reservation struct {
	nowUS   int64 // Redis's clock when it answered
	startUS int64 // the first slot on Redis's clock
	k       int
	slots   []time.Time // local times, k of them
	retryAt time.Time   // local time, when k == 0
}

// reserve runs the script: want slots (0: none) after pushing the budget
// to at least now+pause.
func (s *Shared) reserve(ctx context.Context, want int, pause time.Duration) (reservation, error) {
	keys := []string{s.key}
	args := []any{s.ivUS, want, maxAheadFactor * s.opts.horizon.Microseconds(), pause.Microseconds()}
	sent := time.Now()
	s.commands.Add(1)
	v, err := reserveScript.EvalSha(ctx, s.rdb, keys, args...).Result()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		sent = time.Now()
		s.commands.Add(1)
		v, err = reserveScript.Eval(ctx, s.rdb, keys, args...).Result()
	}
	recv := time.Now()
	if err != nil {
		return reservation{}, err
	}
	s.noteRoundTrip(recv.Sub(sent))
	now, k, at, err := parseReply(v)
	if err != nil {
		return reservation{}, err
	}
	local := s.clock.sample(sent, recv, now)
	if k == 0 {
		return reservation{nowUS: now, retryAt: local(at)}, nil
	}
	if want == 0 {
		return reservation{nowUS: now}, nil
	}
	s.reserved.Add(int64(k))
	if s.onSlots != nil {
		s.onSlots(at, k, s.ivUS)
	}
	r := reservation{nowUS: now, startUS: at, k: k, slots: make([]time.Time, k)}
	for i := range k {
		t := local(at + int64(i)*s.ivUS)
		// The process's own token bucket keeps its slots an interval apart
		// when the clock estimate moved since the last reply. It reserves in
		// time order only: a slot the new estimate puts before the last one
		// is asked for at the last one's time, or the bucket would let the
		// two bunch.
		if t.Before(s.lastLocal) {
			t = s.lastLocal
		}
		r.slots[i] = t.Add(s.local.ReserveN(t, 1).DelayFrom(t))
		s.lastLocal = r.slots[i]
	}
	if s.onLocalSlots != nil {
		s.onLocalSlots(r.slots)
	}
	return r, nil
}

// clockSamples is how many recent round trips the clock estimate weighs.
const clockSamples = 16

// clockSlack is how much slower than twice the fastest recent round trip a
// reply may be and still move the clock estimate, and how far beyond half
// the estimate's own round trip a reply's mapped time must fall to prove
// the estimate wrong.
const clockSlack = 500 * time.Microsecond

// redisClock maps the Redis clock onto the process's monotonic clock.
//
// Each reply says what Redis's clock read at some moment of the round trip;
// the middle of the round trip is the best guess, wrong by up to half of
// it. Taking every reply's guess moved the mapping by half of any slow reply:
// a process busy starting 600 tasks read one reply 30-50 ms late, mapped
// that reservation's slots 15-25 ms late, and the next reservation's,
// mapped from a fast reply, fell among them. Up to five calls bunched, and
// make bench's recall scenarios saw 201-205 calls in a sliding second and
// 60007s. So only a reply about as fast as the fastest of the recent ones
// (at most twice it plus clockSlack) moves the estimate, as NTP trusts its
// fastest exchanges; the first reply sets it whatever its speed, and so
// does a reply that proves the estimate wrong (its Redis time, mapped,
// falls outside its own round trip). Because the window holds the slow
// round trips too, a network that has become slower for good is trusted
// again within clockSamples replies, and after a Redis error or a budget
// that went back in time (a failover) the estimate starts afresh.
type redisClock struct {
	mu     sync.Mutex
	set    bool
	base   time.Time // the local time Redis's clock read baseUS
	baseUS int64
	rtt    time.Duration // the round trip of the reply that set base
	rtts   [clockSamples]time.Duration
	n      int // replies seen
}

// sample folds one reply (sent and received at local times sent and recv,
// Redis's clock reading nowUS) into the estimate and returns the mapping to
// use for that reply's times.
func (c *redisClock) sample(sent, recv time.Time, nowUS int64) func(us int64) time.Time {
	rtt := recv.Sub(sent)
	c.mu.Lock()
	c.rtts[c.n%clockSamples] = rtt
	c.n++
	fastest := rtt
	for _, d := range c.rtts[:min(c.n, clockSamples)] {
		fastest = min(fastest, d)
	}
	// A reply whose Redis time the estimate puts outside its own round
	// trip, by more than the estimate's own uncertainty, proves the
	// estimate wrong (a new primary, a clock step, a path that got slower):
	// take it whatever its speed. Without the margin, a slow reply whose
	// Redis time fell at the very end of its trip could pass for proof and
	// move the estimate by half of that trip.
	wrong := false
	if c.set {
		p := c.base.Add(time.Duration(nowUS-c.baseUS) * time.Microsecond)
		margin := c.rtt/2 + clockSlack
		wrong = p.Before(sent.Add(-margin)) || p.After(recv.Add(margin))
	}
	if !c.set || wrong || rtt <= 2*fastest+clockSlack {
		c.set, c.base, c.baseUS, c.rtt = true, sent.Add(rtt/2), nowUS, rtt
	}
	base, baseUS := c.base, c.baseUS
	c.mu.Unlock()
	return func(us int64) time.Time { return base.Add(time.Duration(us-baseUS) * time.Microsecond) }
}

// reset forgets the estimate: the next reply sets it.
func (c *redisClock) reset() {
	c.mu.Lock()
	c.set, c.n = false, 0
	c.mu.Unlock()
}

func parseReply(v any) (now int64, k int, at int64, err error) {
	a, ok := v.([]any)
	if !ok || len(a) != 3 {
		return 0, 0, 0, fmt.Errorf("ratelimit: unexpected script reply %v", v)
	}
	var n [3]int64
	for i, x := range a {
		switch x := x.(type) {
		case int64:
			n[i] = x
		case string: // some servers answer numbers as strings
			if n[i], err = strconv.ParseInt(x, 10, 64); err != nil {
				return 0, 0, 0, fmt.Errorf("ratelimit: unexpected script reply %v", v)
			}
		default:
			return 0, 0, 0, fmt.Errorf("ratelimit: unexpected script reply %v", v)
		}
	}
	return n[0], int(n[1]), n[2], nil
}

// roundTrip returns the smoothed round trip to Redis.
func (s *Shared) roundTrip() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srtt
}

// noteRoundTrip folds one round trip into the smoothed one (like TCP's
// SRTT, weight 1/8), taking a slower one at once.
func (s *Shared) noteRoundTrip(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d > s.srtt {
		s.srtt = d
	} else {
		s.srtt += (d - s.srtt) / 8
	}
}

func (s *Shared) noteDown(err error) {
	s.clock.reset() // the next answer may come from another server
	s.mu.Lock()
	was := s.down
	s.down = true
	s.mu.Unlock()
	if !was {
		msg := "rate budget: Redis does not answer; calls wait until it does"
		if s.fallback != nil {
			msg = "rate budget: Redis does not answer; pacing at the fallback rate"
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %v", s.opts.callTimeout)
		}
		s.opts.log.Warn(msg, "key", s.key, "err", err.Error())
	}
}

func (s *Shared) noteUp() {
	s.mu.Lock()
	was := s.down
	s.down = false
	s.mu.Unlock()
	if was {
		s.opts.log.Info("rate budget: Redis answers again", "key", s.key)
	}
}
