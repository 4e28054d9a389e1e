package sim

import (
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

// maxSeriesSeconds bounds Stats' per-second series (two days); calls after
// that are counted in the last second.
const maxSeriesSeconds = 2 * 24 * 60 * 60

// limiter admits at most limit calls in any window of length size: a call
// at t is admitted when fewer than limit admitted calls lie in (t-size, t].
// It keeps the last limit admission times in a ring, so it is exact.
type limiter struct {
	size  time.Duration
	limit int // < 0: unlimited
	ring  []time.Time
	head  int // oldest entry
	n     int
	last  time.Time
}

func newLimiter(limit int, size time.Duration) limiter {
	l := limiter{size: size, limit: limit}
	if limit > 0 {
		l.ring = make([]time.Time, limit)
	}
	return l
}

func (l *limiter) allow(t time.Time) bool {
	if l.limit < 0 {
		return true
	}
	if l.limit == 0 {
		return false
	}
	if t.Before(l.last) {
		t = l.last // concurrent calls may read the clock out of order
	}
	if l.n == l.limit {
		if t.Sub(l.ring[l.head]) < l.size {
			return false
		}
		l.ring[l.head] = t
		l.head = (l.head + 1) % l.limit
	} else {
		l.ring[(l.head+l.n)%l.limit] = t
		l.n++
	}
	l.last = t
	return true
}

// peak tracks the most events seen in any window (t-1s, t], exactly, also
// when events are added out of time order (by up to a second; one older
// than that counts as a second before the newest).
type peak struct {
	q    []time.Time // in time order from head; the last 2 s are kept
	head int
	max  int64
}

func (p *peak) add(t time.Time) {
	if n := len(p.q); n > p.head {
		newest := p.q[n-1]
		if floor := newest.Add(-time.Second); t.Before(floor) {
			t = floor
		}
		for newest.Sub(p.q[p.head]) >= 2*time.Second {
			p.head++
		}
	}
	if p.head > 1024 && p.head > len(p.q)/2 {
		p.q = append(p.q[:0], p.q[p.head:]...)
		p.head = 0
	}
	i := len(p.q)
	for i > p.head && p.q[i-1].After(t) {
		i--
	}
	p.q = slices.Insert(p.q, i, t)
	// Only the windows that end at t or at an event less than a second
	// after it hold t; lo is the oldest event in the window ending at q[j].
	lo := p.head + sort.Search(i-p.head, func(k int) bool { return t.Sub(p.q[p.head+k]) < time.Second })
	for j := i; j < len(p.q) && p.q[j].Sub(t) < time.Second; j++ {
		for p.q[j].Sub(p.q[lo]) >= time.Second {
			lo++
		}
		p.max = max(p.max, int64(j-lo+1))
	}
}

// EndpointStats counts one endpoint's calls. Every call ends in exactly one
// of Codes, HTTP502, Hangs or Aborted, so their sum is Calls.
type EndpointStats struct {
	// Calls is every request made to the endpoint, refused or not.
	Calls int64 `json:"Calls"`
	// Codes counts answers by ErrorCode; 0 is OK.
	Codes map[int]int64 `json:"Codes"`
	// HTTP502 counts injected 502 answers.
	HTTP502 int64 `json:"HTTP502"`
	// Hangs counts injected hangs.
	Hangs int64 `json:"Hangs"`
	// Aborted counts calls whose client went away during injected latency,
	// before any answer.
	Aborted int64 `json:"Aborted"`
	// PerSecond counts calls in each second since the start (or the last
	// Reset), by the Config.Now clock: index i is [start+i s, start+(i+1) s).
	PerSecond []int64 `json:"PerSecond"`
	// MaxPerSecond is the most calls, refused or not, seen in any sliding
	// one-second window (t-1s, t], by when they arrived (Config.Arrived).
	MaxPerSecond int64 `json:"MaxPerSecond"`
	// MaxReadPerSecond is MaxPerSecond by when the emulator read each call
	// (Config.Now). It is higher where the emulator, kept off the CPU, read
	// calls late and bunched. Without Config.Arrived the two are equal.
	MaxReadPerSecond int64 `json:"MaxReadPerSecond"`
	// MaxAdmittedPerSecond is the most calls the rate limiter admitted in any
	// sliding one-second window. With the default one-second Window it never
	// exceeds Config.Rate.
	MaxAdmittedPerSecond int64 `json:"MaxAdmittedPerSecond"`
	// RecallRetCodes counts group_msg_recall's per-message RetCodes.
	RecallRetCodes map[int]int64 `json:"RecallRetCodes,omitempty"`
}

// Stats is a snapshot of everything the emulator counted.
type Stats struct {
	// Start is when counting began (New or the last Reset), by Config.Now.
	Start time.Time `json:"Start"`
	// Endpoints holds one entry per emulated endpoint.
	Endpoints map[chatapi.Endpoint]EndpointStats `json:"Endpoints"`
	// OtherCalls counts requests to paths that are no emulated endpoint.
	OtherCalls int64 `json:"OtherCalls"`
	// MessagesRecalled counts messages newly recalled (not repeated recalls).
	MessagesRecalled int64 `json:"MessagesRecalled"`
	// RecalledPerSecond splits MessagesRecalled by second since Start, like
	// EndpointStats.PerSecond: index i counts messages newly recalled by calls
	// that arrived in [Start+i s, Start+(i+1) s). Left out when empty.
	RecalledPerSecond []int64 `json:"RecalledPerSecond,omitempty"`
	// MessagesModified counts successful modifications.
	MessagesModified int64 `json:"MessagesModified"`
	// MessagesCleared counts messages newly covered by a clear.
	MessagesCleared int64 `json:"MessagesCleared"`
	// MessagesSent counts messages added by send_group_msg.
	MessagesSent int64 `json:"MessagesSent"`
}

// epStats is an endpoint's counters; the endpoint's mutex guards it.
type epStats struct {
	EndpointStats
	all, read, admitted peak
}

func newEpStats() epStats {
	return epStats{EndpointStats: EndpointStats{Codes: map[int]int64{}, RecallRetCodes: map[int]int64{}}}
}

// call counts a call that arrived at t and was read at read.
func (st *epStats) call(start, t, read time.Time) {
	st.Calls++
	i := int(t.Sub(start) / time.Second)
	if i < 0 {
		i = 0
	}
	if i >= maxSeriesSeconds {
		i = maxSeriesSeconds - 1
	}
	for len(st.PerSecond) <= i {
		st.PerSecond = append(st.PerSecond, 0)
	}
	st.PerSecond[i]++
	st.all.add(t)
	st.MaxPerSecond = st.all.max
	st.read.add(read)
	st.MaxReadPerSecond = st.read.max
}

// secondIndex is the index of t's second since start in a per-second
// series, clamped to the series' bounds.
func secondIndex(start, t time.Time) int {
	i := int(t.Sub(start) / time.Second)
	return min(max(i, 0), maxSeriesSeconds-1)
}

// countRecalledLocked counts one message newly recalled by a call that
// arrived at t. s.mu is held.
func (s *Server) countRecalledLocked(t time.Time) {
	i := secondIndex(s.start, t)
	for len(s.recalledPerSecond) <= i {
		s.recalledPerSecond = append(s.recalledPerSecond, 0)
	}
	s.recalledPerSecond[i]++
}

func (st *epStats) admit(t time.Time) {
	st.admitted.add(t)
	st.MaxAdmittedPerSecond = st.admitted.max
}

func (st *epStats) snapshot() EndpointStats {
	out := st.EndpointStats
	out.Codes = maps.Clone(st.Codes)
	out.RecallRetCodes = maps.Clone(st.RecallRetCodes)
	out.PerSecond = slices.Clone(st.PerSecond)
	if out.PerSecond == nil {
		out.PerSecond = []int64{}
	}
	return out
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	out := Stats{
		Start:            s.start,
		Endpoints:        make(map[chatapi.Endpoint]EndpointStats, len(s.eps)),
		MessagesRecalled: s.totals.recalled,
		MessagesModified: s.totals.modified,
		MessagesCleared:  s.totals.cleared,
		MessagesSent:     s.totals.sent,
	}
	out.RecalledPerSecond = slices.Clone(s.recalledPerSecond)
	s.mu.Unlock()
	out.OtherCalls = s.other.Load()
	for name, e := range s.eps {
		e.mu.Lock()
		out.Endpoints[name] = e.stats.snapshot()
		e.mu.Unlock()
	}
	return out
}
