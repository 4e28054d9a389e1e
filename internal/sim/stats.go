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

// timeline holds the events of the last two windows, in time order, for
// counting events in sliding windows of length size. Events may be added
// out of time order (calls are stamped when they arrive but handled in the
// order they are read); one more than a window older than the newest
// counts as a window before it.
type timeline struct {
	size time.Duration
	q    []time.Time // from head on
	head int
}

// place prunes what no window can reach any more and returns t, moved up
// to a window before the newest event if older, and the index at which it
// goes: after every event at or before it.
func (tl *timeline) place(t time.Time) (time.Time, int) {
	if n := len(tl.q); n > tl.head {
		newest := tl.q[n-1]
		if floor := newest.Add(-tl.size); t.Before(floor) {
			t = floor
		}
		for newest.Sub(tl.q[tl.head]) >= 2*tl.size {
			tl.head++
		}
	}
	if tl.head > 1024 && tl.head > len(tl.q)/2 {
		tl.q = append(tl.q[:0], tl.q[tl.head:]...)
		tl.head = 0
	}
	i := len(tl.q)
	for i > tl.head && tl.q[i-1].After(t) {
		i--
	}
	return t, i
}

// windows calls f with the number of events in each window (e-size, e]
// that would hold t if it were inserted at i (t not counted): the window
// ending at t, then those ending at each later event less than size after
// it. It stops when f returns false.
func (tl *timeline) windows(t time.Time, i int, f func(n int) bool) {
	lo := tl.head + sort.Search(i-tl.head, func(k int) bool { return t.Sub(tl.q[tl.head+k]) < tl.size })
	if !f(i - lo) {
		return
	}
	for j := i; j < len(tl.q) && tl.q[j].Sub(t) < tl.size; j++ {
		for tl.q[j].Sub(tl.q[lo]) >= tl.size {
			lo++
		}
		if !f(j - lo + 1) {
			return
		}
	}
}

// limiter admits at most limit calls in any window of length size, by
// their arrival times, in whatever order they come: a call is admitted
// when no window holding it would then hold more than limit admitted calls.
type limiter struct {
	limit    int // < 0: unlimited
	admitted timeline
}

func newLimiter(limit int, size time.Duration) limiter {
	return limiter{limit: limit, admitted: timeline{size: size}}
}

func (l *limiter) allow(t time.Time) bool {
	if l.limit < 0 {
		return true
	}
	if l.limit == 0 {
		return false
	}
	t, i := l.admitted.place(t)
	fits := true
	l.admitted.windows(t, i, func(n int) bool {
		fits = n+1 <= l.limit
		return fits
	})
	if fits {
		l.admitted.q = slices.Insert(l.admitted.q, i, t)
	}
	return fits
}

// peak tracks the most events seen in any window (t-1s, t], exactly, in
// whatever order they are added (see timeline).
type peak struct {
	events timeline
	max    int64
}

func newPeak() peak { return peak{events: timeline{size: time.Second}} }

func (p *peak) add(t time.Time) {
	t, i := p.events.place(t)
	p.events.windows(t, i, func(n int) bool {
		p.max = max(p.max, int64(n+1))
		return true
	})
	p.events.q = slices.Insert(p.events.q, i, t)
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
	return epStats{EndpointStats: EndpointStats{Codes: map[int]int64{}, RecallRetCodes: map[int]int64{}},
		all: newPeak(), read: newPeak(), admitted: newPeak()}
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
