package bench

import (
	"encoding/csv"
	"io"
	"math"
	"slices"
	"strconv"
	"time"
)

// span is the half-open range [From, To) of seconds in a per-second series.
type span struct{ From, To int }

// Len is the number of seconds in the span.
func (s span) Len() int { return max(s.To-s.From, 0) }

// union is the smallest span holding both (an empty span holds nothing).
func (s span) union(o span) span {
	switch {
	case s.Len() == 0:
		return o
	case o.Len() == 0:
		return s
	}
	return span{min(s.From, o.From), max(s.To, o.To)}
}

// busySpan returns the seconds from the first to the last non-zero second of
// series, without those two: they are partial (the ramp-up second in which
// the first call came and the drain second in which the last one did), so
// counting them would understate the sustained rate. A stall in between is
// kept. It returns an empty span when fewer than three seconds saw calls.
func busySpan(series []int64) span {
	first, last := -1, -1
	for i, n := range series {
		if n > 0 {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 || last-first < 2 {
		return span{}
	}
	return span{first + 1, last}
}

// sum adds series over s (seconds past the series' end count as 0).
func sum(series []int64, s span) int64 {
	var n int64
	for i := max(s.From, 0); i < s.To && i < len(series); i++ {
		n += series[i]
	}
	return n
}

// rate is the mean of series over s, per second; 0 for an empty span.
func rate(series []int64, s span) float64 {
	if s.Len() == 0 {
		return 0
	}
	return float64(sum(series, s)) / float64(s.Len())
}

// percentile returns the p-th percentile (0 < p <= 100) of d by the
// nearest-rank method: the smallest value with at least p% of the values at
// or below it. It returns 0 for no values and does not change d.
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(rank, 1), len(s))-1]
}

// sample is a reading of the worker processes' counters at one instant.
type sample struct {
	At   time.Time
	CPU  float64 // utime+stime of every worker, seconds
	Cmds int64   // Redis commands the workers sent so far
	Self float64 // the bench process's own CPU time, seconds
	// Sleeps is every worker thread's voluntary context switches so far;
	// SleepsOK is false when a worker's could not be read.
	Sleeps   int64
	SleepsOK bool
	// Machine is the whole machine's CPU time so far (/proc/stat); its
	// Total is 0 when /proc/stat could not be read.
	Machine cpuTimes
}

// interp linearly interpolates field over the samples (sorted by time) at
// t; before the first or after the last it returns that sample's value.
func interp(samples []sample, t time.Time, field func(sample) float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	if !t.After(samples[0].At) {
		return field(samples[0])
	}
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		if t.After(b.At) {
			continue
		}
		f := 0.0
		if d := b.At.Sub(a.At); d > 0 {
			f = float64(t.Sub(a.At)) / float64(d)
		}
		return field(a) + f*(field(b)-field(a))
	}
	return field(samples[len(samples)-1])
}

// at interpolates the workers' CPU seconds and Redis commands at t.
func at(samples []sample, t time.Time) (cpu, cmds float64) {
	return interp(samples, t, func(s sample) float64 { return s.CPU }),
		interp(samples, t, func(s sample) float64 { return float64(s.Cmds) })
}

// sleepsBetween is the workers' voluntary context switches between t0 and
// t1, or -1 when a sample lacks them.
func sleepsBetween(samples []sample, t0, t1 time.Time) float64 {
	if len(samples) == 0 || slices.ContainsFunc(samples, func(s sample) bool { return !s.SleepsOK }) {
		return -1
	}
	sl := func(s sample) float64 { return float64(s.Sleeps) }
	return interp(samples, t1, sl) - interp(samples, t0, sl)
}

// atSelf interpolates the bench's own CPU time at t.
func atSelf(samples []sample, t time.Time) float64 {
	return interp(samples, t, func(s sample) float64 { return s.Self })
}

// stealBetween is the share of the machine's CPU time the hypervisor took
// (steal) between t0 and t1, or -1 when /proc/stat was not read for every
// sample (interpolating across a missing reading would be wrong).
func stealBetween(samples []sample, t0, t1 time.Time) float64 {
	if slices.ContainsFunc(samples, func(s sample) bool { return s.Machine.Total == 0 }) {
		return -1
	}
	steal := func(s sample) float64 { return s.Machine.Steal }
	total := func(s sample) float64 { return s.Machine.Total }
	dt := interp(samples, t1, total) - interp(samples, t0, total)
	if dt <= 0 {
		return -1
	}
	return (interp(samples, t1, steal) - interp(samples, t0, steal)) / dt
}

// series is one run's per-second counts, as the emulator reported them.
type series struct {
	Run      string
	Clear    []int64 // clear_group_msg calls per second
	Recall   []int64 // group_msg_recall calls per second
	Modify   []int64 // modify_group_msg calls per second
	Recalled []int64 // messages newly recalled per second
}

// trimmed returns the run without the seconds before its first call to any
// endpoint (seeding and enqueueing), so that second 0 is the first with a
// call.
func (s series) trimmed() series {
	first := -1
	for _, c := range [][]int64{s.Clear, s.Recall, s.Modify} {
		for i, n := range c {
			if n > 0 {
				if first < 0 || i < first {
					first = i
				}
				break
			}
		}
	}
	if first <= 0 {
		return s
	}
	cut := func(c []int64) []int64 {
		if len(c) <= first {
			return nil
		}
		return c[first:]
	}
	return series{Run: s.Run, Clear: cut(s.Clear), Recall: cut(s.Recall), Modify: cut(s.Modify), Recalled: cut(s.Recalled)}
}

// seconds is the length of the longest of the run's series.
func (s series) seconds() int {
	return max(len(s.Clear), len(s.Recall), len(s.Modify), len(s.Recalled))
}

func at64(s []int64, i int) int64 {
	if i < len(s) {
		return s[i]
	}
	return 0
}

// writeCSV writes one line per run and second: the run's name, the second
// (0 is the run's first second with a call), calls per endpoint and
// messages recalled.
func writeCSV(w io.Writer, runs []series) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"run", "second", "clear_group_msg", "group_msg_recall", "modify_group_msg", "messages_recalled"})
	for _, r := range runs {
		for i := range r.seconds() {
			cw.Write([]string{r.Run, strconv.Itoa(i),
				strconv.FormatInt(at64(r.Clear, i), 10), strconv.FormatInt(at64(r.Recall, i), 10),
				strconv.FormatInt(at64(r.Modify, i), 10), strconv.FormatInt(at64(r.Recalled, i), 10)})
		}
	}
	cw.Flush()
	return cw.Error()
}
