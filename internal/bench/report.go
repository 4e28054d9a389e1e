package bench

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// table is a header and rows of cells, printed as aligned text or markdown.
type table struct {
	head []string
	rows [][]string
}

func (t table) text(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, strings.Join(t.head, "\t")+"\t")
	for _, r := range t.rows {
		fmt.Fprintln(tw, strings.Join(r, "\t")+"\t")
	}
	return tw.Flush()
}

func (t table) markdown(w io.Writer) {
	fmt.Fprintln(w, "| "+strings.Join(t.head, " | ")+" |")
	seps := make([]string, len(t.head))
	for i := range seps {
		seps[i] = "---:"
		if i < 2 {
			seps[i] = "---"
		}
	}
	fmt.Fprintln(w, "| "+strings.Join(seps, " | ")+" |")
	for _, r := range t.rows {
		fmt.Fprintln(w, "| "+strings.Join(r, " | ")+" |")
	}
}

// busyNote warns when other programs loaded the machine before the run.
func busyNote(load string) string {
	if busyMachine(load) {
		return " -- other programs were busy: expect lower, noisier figures than on a quiet machine"
	}
	return ""
}

// pct formats a share as a percentage with one decimal, or "-" when it is
// negative (not measured).
func pct(share float64) string {
	if share < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*share)
}

// perCall formats a per-call figure with one decimal, or "-" when it is
// negative (not measured).
func perCall(v float64) string {
	if v < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", v)
}

// maxCell formats the most calls in a sliding second by arrival, followed
// by the count as the emulator read them when that is different (and
// known: an emulator from before the two were told apart reports 0).
func maxCell(arrived, read int64) string {
	if read == arrived || read == 0 {
		return fmt.Sprint(arrived)
	}
	return fmt.Sprintf("%d (%d as read)", arrived, read)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// mainTable is one row per worker count and endpoint.
func (res *Results) mainTable() table {
	t := table{head: []string{"config", "endpoint", "tasks", "busy s", "calls/s", "of limit", "max 1s", "60007", "dropped",
		"redis cmd/call", "CPU s/1k calls", "sleeps/call", "cores", "steal", "peak RSS MB", "idle p50 ms", "idle p99 ms"}}
	for _, r := range res.Rows {
		busy := fmt.Sprint(r.BusySeconds)
		if !r.Drained {
			busy += " (not drained)"
		}
		p50, p99 := "-", "-"
		if r.LatN > 0 {
			p50, p99 = ms(r.LatP50), ms(r.LatP99)
			if r.LatMissing > 0 {
				p99 += fmt.Sprintf(" (%d missing)", r.LatMissing)
			}
		}
		t.rows = append(t.rows, []string{r.Config, r.Endpoint, fmt.Sprint(r.Tasks), busy,
			fmt.Sprintf("%.1f", r.PerSecond), fmt.Sprintf("%.1f%%", 100*r.Ratio), maxCell(r.MaxPerSecond, r.MaxReadPerSecond), fmt.Sprint(r.Rejected), pct(r.Dropped),
			fmt.Sprintf("%.2f", r.RedisPerCall), fmt.Sprintf("%.3f", r.CPUPer1k), perCall(r.SleepsPerCall), fmt.Sprintf("%.3f", r.Cores), pct(r.Steal),
			fmt.Sprintf("%.1f", float64(r.PeakRSS)/(1<<20)), p50, p99})
	}
	return t
}

// recallTable is one row per recall scenario.
func (res *Results) recallTable() table {
	t := table{head: []string{"scenario", "what", "busy s", "msgs/s", "calls/s", "msgs/call", "max 1s", "60007",
		"lone p50 ms", "lone p99 ms", "lone max ms", "target", "met"}}
	for _, r := range res.Recall {
		row := []string{r.Scenario, r.Desc, "-", "-", "-", "-", maxCell(r.MaxPerSecond, r.MaxReadPerSecond), fmt.Sprint(r.Rejected), "-", "-", "-", r.Target, r.Met}
		if r.LatN == 0 {
			row[2] = fmt.Sprint(r.BusySeconds)
			if !r.Drained {
				row[2] += " (capped)"
			}
			row[3], row[4], row[5] = fmt.Sprintf("%.0f", r.MsgPerSecond), fmt.Sprintf("%.1f", r.CallsPerSecond), fmt.Sprintf("%.2f", r.MsgPerCall)
		} else {
			row[8], row[9], row[10] = ms(r.LatP50), ms(r.LatP99), ms(r.LatMax)
		}
		t.rows = append(t.rows, row)
	}
	return t
}

// targets checks the targets against the rows, one line each.
func (res *Results) targets() []string {
	if len(res.Rows) == 0 {
		return nil
	}
	met := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	limit := float64(res.Cfg.Rate)
	low, peak, rej, cpu, rss := res.Rows[0], res.Rows[0], int64(0), res.Rows[0], res.Rows[0]
	// A row without calls or CPU measured nothing: no target is met on it
	// (its zero CPU and window would otherwise pass).
	ran := true
	for _, r := range res.Rows {
		ran = ran && r.PerSecond > 0 && r.CPUPer1k > 0 && r.PeakRSS > 0
	}
	for _, r := range res.Rows {
		if r.PerSecond < low.PerSecond {
			low = r
		}
		if r.MaxPerSecond > peak.MaxPerSecond {
			peak = r
		}
		rej += r.Rejected
		if r.CPUPer1k > cpu.CPUPer1k {
			cpu = r
		}
		if r.PeakRSS > rss.PeakRSS {
			rss = r
		}
	}
	// Reported, not a target: the line a worker should stay under.
	cpuWatch := 0.25 / (3 * limit) * 1000 // 0.25 core for all three endpoints at their limit
	return []string{
		fmt.Sprintf("every endpoint >= 97.5%% of its limit (%.0f calls/s) with every worker count: %s (lowest %.1f/s, %s, %s%s)",
			0.975*limit, met(low.PerSecond >= 0.975*limit), low.PerSecond, low.Endpoint, low.Config, lostSlots(low)),
		fmt.Sprintf("no sliding second over %d calls and no 60007: %s (highest %d, %s, %s; %d 60007 answers in all)",
			res.Cfg.Rate, met(ran && peak.MaxPerSecond <= int64(res.Cfg.Rate) && rej == 0), peak.MaxPerSecond, peak.Endpoint, peak.Config, rej),
		fmt.Sprintf("worker CPU (reported; watch line 0.25 core per worker at %.0f calls/s = %.3f CPU s per 1k calls): highest %.3f, %s%s%s",
			3*limit, cpuWatch, cpu.CPUPer1k, cpu.Config, res.inPings(cpu.CPUPer1k), watch(cpu.CPUPer1k > cpuWatch)),
		fmt.Sprintf("peak RSS <= 64 MB per worker: %s (highest %.1f MB, %s)", met(ran && rss.PeakRSS <= 64<<20), float64(rss.PeakRSS)/(1<<20), rss.Config),
	}
}

// watch is the note on a CPU figure beyond the watch line.
func watch(over bool) string {
	if over {
		return " (beyond the watch line)"
	}
	return ""
}

// lostSlots is ", D of its budget slots dropped, S CPU steal" for a row,
// leaving out what was not measured: why an endpoint ran below its pace.
func lostSlots(r Row) string {
	out := ""
	if r.Dropped >= 0 {
		out += fmt.Sprintf(", %s of its budget slots dropped (mostly for waking late)", pct(r.Dropped))
	}
	if r.Steal >= 0 {
		out += fmt.Sprintf(", %s CPU steal", pct(r.Steal))
	}
	return out
}

// inPings is ", N PING round trips per call" for a CPU figure in CPU s per
// 1k calls, or "" without a yardstick.
func (res *Results) inPings(cpuPer1k float64) string {
	n := res.Yardstick.InPings(time.Duration(cpuPer1k * float64(time.Millisecond)))
	if n <= 0 {
		return ""
	}
	return fmt.Sprintf(", the CPU of %.0f Redis PING round trips per call", n)
}

// WriteText prints the results as aligned text tables.
func (res *Results) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "timq bench: %s busy per backlog, emulator limit %d/s per endpoint, latency %v + up to %v jitter\n",
		res.Cfg.Duration, res.Cfg.Rate, res.Cfg.Latency, res.Cfg.Jitter)
	fmt.Fprintf(w, "Redis: %s\n", res.Redis)
	fmt.Fprintf(w, "Machine: %d cores, load average %s at the start (before the bench's own load)%s\n", numCPU(), res.LoadBefore, busyNote(res.LoadBefore))
	if n := res.Cfg.BusyLoops; n > 0 {
		fmt.Fprintf(w, "Busy loops: %d processes spinning from after the yardstick to the end (--busy), competing with every process for the %d cores\n", n, numCPU())
	}
	fmt.Fprintf(w, "Yardstick: %s\n\n", res.Yardstick)
	if len(res.Rows) > 0 {
		if err := res.mainTable().text(w); err != nil {
			return err
		}
	}
	if t := res.targets(); len(t) > 0 {
		fmt.Fprintln(w, "\nTargets:")
		for _, l := range t {
			fmt.Fprintln(w, "  - "+l)
		}
	}
	if len(res.Recall) > 0 {
		fmt.Fprintln(w, "\nRecall scenarios (recall only, one worker):")
		if err := res.recallTable().text(w); err != nil {
			return err
		}
	}
	if j := res.Jobs; j != nil {
		fmt.Fprintln(w, "\nJobs (one worker):")
		fmt.Fprintln(w, "Interactive operation latency, enqueue-to-call:")
		if err := j.jobLatencyTable().text(w); err != nil {
			return err
		}
		fmt.Fprintln(w, j.backlogNote())
		fmt.Fprintln(w)
		if err := j.jobsTable(res.Cfg.Rate).text(w); err != nil {
			return err
		}
	}
	if a := res.API; a != nil {
		fmt.Fprintln(w, "\nHTTP API (timq api, no worker running):")
		if err := a.apiTable().text(w); err != nil {
			return err
		}
	}
	if x := res.Index; x != nil {
		fmt.Fprintln(w, "\nMessage index (timq api's callback receiver, no worker running):")
		if err := x.indexTable().text(w); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\n(%v in all; results.md, calls.csv, calls.png and logs/ in %s)\n", res.Elapsed.Round(time.Second), res.Cfg.Out)
	return err
}

// Markdown renders the results, with how each figure is measured.
func (res *Results) Markdown() []byte {
	var b bytes.Buffer
	c := res.Cfg
	fmt.Fprintf(&b, "# timq bench results\n\n")
	fmt.Fprintf(&b, "Run %s, %v in all. Redis: %s. Emulator (`timq sim`): limit %d calls per sliding second per endpoint, "+
		"%v latency plus up to %v jitter on every call. Workers: `timq worker` processes with default settings "+
		"(TIMQ_RATE=%d), on this machine's %d cores alongside the emulator, Redis and the bench itself.\n\n",
		res.Started.UTC().Format(time.RFC3339), res.Elapsed.Round(time.Second), res.Redis, c.Rate, c.Latency, c.Jitter, c.Rate, numCPU())
	fmt.Fprintf(&b, "Load average (1, 5, 15 min) at the start: %s; at the end: %s%s\n\n", res.LoadBefore, res.LoadAfter, busyNote(res.LoadBefore))
	if n := c.BusyLoops; n > 0 {
		fmt.Fprintf(&b, "Busy loops (`--busy %d`): %d processes spinning on the CPU from after the yardstick to the end, "+
			"competing with every process for the %d cores, as on a host busy with other work.\n\n", n, n, numCPU())
	}
	fmt.Fprintf(&b, "Yardstick, measured by the bench before the workers start: %s. "+
		"CPU per call depends on the machine as much as on timq: compare CPU figures only between runs with similar yardsticks.\n\n", res.Yardstick)
	if len(res.Rows) > 0 {
		fmt.Fprintf(&b, "## Mixed backlog (clear, recall and modify at once)\n\n")
		res.mainTable().markdown(&b)
		if t := res.targets(); len(t) > 0 {
			fmt.Fprintf(&b, "\nTargets:\n\n")
			for _, l := range t {
				fmt.Fprintf(&b, "- %s\n", l)
			}
		}
		fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(mainNotes))
		var bench []string
		for _, r := range res.Rows {
			if r.Endpoint == res.Rows[0].Endpoint {
				bench = append(bench, fmt.Sprintf("%.2f cores with %s", r.BenchCores, r.Config))
			}
		}
		fmt.Fprintf(&b, "- The bench process itself (mostly the counting proxy) used %s over the same spans; the emulator and Redis run on the same cores too. The recall scenarios connect the worker to Redis directly.\n", strings.Join(bench, ", "))
	}
	if len(res.Recall) > 0 {
		fmt.Fprintf(&b, "\n## Recall coalescing (recall only, one worker)\n\n")
		res.recallTable().markdown(&b)
		fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(recallNotes))
	}
	if j := res.Jobs; j != nil {
		fmt.Fprintf(&b, "\n## Jobs (one worker)\n\nInteractive operation latency, enqueue-to-call:\n\n")
		j.jobLatencyTable().markdown(&b)
		fmt.Fprintf(&b, "\n%s\n\n", j.backlogNote())
		j.jobsTable(c.Rate).markdown(&b)
		fmt.Fprintf(&b, "\n%s\n", strings.TrimSpace(jobsNotes))
	}
	if a := res.API; a != nil {
		fmt.Fprintf(&b, "\n## HTTP API (timq api, no worker running)\n\n")
		a.apiTable().markdown(&b)
	}
	if x := res.Index; x != nil {
		fmt.Fprintf(&b, "\n## Message index (timq api's callback receiver, no worker running)\n\n")
		x.indexTable().markdown(&b)
	}
	if len(res.Commands) > 0 {
		fmt.Fprintf(&b, "\n## Redis commands per API call, by command\n\nWhole backlog run (worker start-up and drain included), all endpoints; commands under 0.01 per call left out.\n\n")
		names := map[string]bool{}
		for _, m := range res.Commands {
			for k, v := range m.PerCall {
				if v >= 0.01 {
					names[k] = true
				}
			}
		}
		cols := slices.Sorted(maps.Keys(names))
		t := table{head: append([]string{"config", "total"}, cols...)}
		for _, m := range res.Commands {
			total := 0.0
			for _, v := range m.PerCall {
				total += v
			}
			row := []string{m.Config, fmt.Sprintf("%.2f", total)}
			for _, k := range cols {
				row = append(row, fmt.Sprintf("%.2f", m.PerCall[k]))
			}
			t.rows = append(t.rows, row)
		}
		t.markdown(&b)
	}
	fmt.Fprintf(&b, "\n![calls per second](calls.png)\n")
	return b.Bytes()
}

const mainNotes = `
How each column is measured:

- **tasks**: tasks enqueued per endpoint before the workers start (rate x 0.985 x the run's duration). Clears go to 50 groups, modifies to distinct messages of 50 groups, and each single-message recall to a group of its own, so recall coalescing cannot shrink this backlog: it measures the call budget.
- **busy s**: the endpoint's busy span, from the emulator's calls per wall-clock second: the seconds between the first and the last second with calls, both left out as partial (ramp-up, drain).
- **calls/s**, **of limit**: calls in the busy span divided by its length, and that over the limit.
- **max 1s**: the emulator's most calls (refused or not) in any sliding one-second window over the whole backlog run, by when the kernel received each call (SO_TIMESTAMPNS; on loopback, when the worker's write handed it over). The emulator shares the machine's two cores with the workers and Redis, and when it is kept off them it reads the calls of those milliseconds late, in one burst; "(N as read)" follows when the count by the emulator's own clock at reading is different. The emulator's 60007s go by arrival too, as Tencent's servers, which do not share a CPU with the workers, would count them.
- **60007**: rate-limit answers during the backlog run.
- **dropped**: the share of the endpoint's budget slots the workers took and left unused, from the counters each worker logs when it stops (over its whole run, idle phase included). Nearly all are slots whose caller woke more than one slot interval (5 ms) late: the worker drops them rather than send late and bunch calls into one second. They are why calls/s falls short of the pace of 197/s; the same counters are the metric timq_ratelimit_slots_total.
- **redis cmd/call**: commands the worker processes sent to Redis, counted by a RESP proxy between them and Redis (so other users of a shared server do not count; an EVALSHA counts as one command whatever its script does, a pipeline of n commands as n), over the union of the three busy spans, divided by API calls in that span. It includes everything the workers do: asynq's dequeue, completion, lease extension, heartbeat, forwarder, recoverer, janitor and idle polling, the result writer, recall progress, dead letters and the rate limiter. The bench's own enqueueing and drain checks bypass the proxy.
- **CPU s/1k calls**, **cores**: user+system CPU seconds of all worker processes (from /proc/PID/stat, sampled every 250 ms and interpolated) over the same span, per 1,000 API calls and per second. It is reported, not a target; a worker should stay under 0.25 core at 600 calls/s.
- **steal**: the share of the whole machine's CPU time its hypervisor took over the same span (the steal column of /proc/stat): every process here, workers, emulator and Redis, wanted to run and could not. Above a few percent, timers fire late, slots are dropped and CPU per call rises; compare such runs only with runs that saw similar steal.
- **sleeps/call**: voluntary context switches of every worker thread (/proc/PID/task/*/status) over the same span, per API call: how often a thread went to sleep until a timer, a reply or another thread woke it. Each costs a kernel round trip and cold caches; they, more than the work itself, make up the CPU per call. They depend on the load and on GOMAXPROCS, but far less than CPU seconds on the machine's speed, so they compare better across machines.
- **peak RSS MB**: the largest VmHWM (/proc/PID/status) of any one worker, read before it stops.
- **idle p50/p99 ms**: after the backlog, 20 tasks per second per endpoint for a few seconds through the enqueue package while the queues are otherwise empty; the time from just before each enqueue call to the emulator's arrival time of its API call (before the emulator's injected latency). The modify's CloudCustomData carries its enqueue time. It includes asynq's idle poll (the worker's IdlePollInterval) and the pacer.
`

const recallNotes = `
- **7a**, **7b**: the backlog is enqueued, then one worker runs for at most a fixed time (or until drained). **msgs/s** is messages newly recalled per second and **calls/s** group_msg_recall calls per second, both over the busy span of recall calls, from the emulator; **msgs/call** is their ratio (10 at most).
- **7c**: one recall at a time to an idle worker, each waited for; enqueue-to-call as in the main table. A dequeue-to-call latency would be measured from dequeue, which the bench cannot see from outside: these times add asynq's idle poll (up to the worker's IdlePollInterval) to it.
- **met**: 7a/7b meet their message rate with no sliding second over the limit and no 60007; 7c is left to the reader.
`

// writeFiles writes results.md, calls.csv and calls.png into dir.
func (res *Results) writeFiles(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, "results.md"), res.Markdown(), 0o644); err != nil {
		return err
	}
	var csvBuf bytes.Buffer
	if err := writeCSV(&csvBuf, res.Series); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "calls.csv"), csvBuf.Bytes(), 0o644); err != nil {
		return err
	}
	var png bytes.Buffer
	if err := writePNG(&png, drawChart(res.Series, res.Cfg.Rate)); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "calls.png"), png.Bytes(), 0o644)
}

// latCells is a LatencyStat's p50 and p99 cells in ms, "-" without
// samples; p99 is followed by "(N missing)" when some never arrived.
func latCells(s LatencyStat) (p50, p99 string) {
	if s.N == 0 {
		return "-", "-"
	}
	p50, p99 = ms(s.P50), ms(s.P99)
	if s.Missing > 0 {
		p99 += fmt.Sprintf(" (%d missing)", s.Missing)
	}
	return p50, p99
}

// jobLatencyTable is one row per endpoint: interactive enqueue-to-call on
// an idle worker and behind the backlog job, side by side.
func (j *JobsResult) jobLatencyTable() table {
	t := table{head: []string{"endpoint", "samples idle / behind", "idle p50 ms", "idle p99 ms",
		fmt.Sprintf("behind %s-op job p50 ms", thousands(int64(j.BacklogOps))), "behind job p99 ms"}}
	for _, r := range j.Latency {
		i50, i99 := latCells(r.Idle)
		b50, b99 := latCells(r.Backlog)
		t.rows = append(t.rows, []string{r.Endpoint, fmt.Sprintf("%d / %d", r.Idle.N, r.Backlog.N), i50, i99, b50, b99})
	}
	return t
}

// metCell is "yes" or "NO" for a target, "-" when the figure is missing.
func metCell(measured, ok bool) string {
	switch {
	case !measured:
		return "-"
	case ok:
		return "yes"
	}
	return "NO"
}

// jobsTable is the jobs phase's other figures: shares, throughput, the
// bulk command's wall time and Redis's memory, each with its target.
func (j *JobsResult) jobsTable(rate int) table {
	t := table{head: []string{"measure", "what", "figure", "target", "met"}}
	add := func(cells ...string) { t.rows = append(t.rows, cells) }
	for _, s := range j.Shares {
		what := fmt.Sprintf("2 jobs x %s modifies, weights %d:%d, over %.1f s while both ran", thousands(int64(s.Ops)), s.Weights[0], s.Weights[1], s.Window.Seconds())
		fig := "-"
		if s.Share(0) >= 0 {
			fig = fmt.Sprintf("%s / %s (%d / %d ops)", pct(s.Share(0)), pct(s.Share(1)), s.Applied[0], s.Applied[1])
		}
		add("share of calls", what, fig,
			fmt.Sprintf("%s / %s +- %.0f points", pct(s.Want(0)), pct(s.Want(1)), 100*targetShareTolerant), metCell(s.Share(0) >= 0, s.Met()))
		fig = fmt.Sprintf("%.1f ops/s (%.1f%% of the limit)", s.PerSecond(), 100*s.PerSecond()/float64(rate))
		if s.Calls >= 0 {
			fig += fmt.Sprintf(", %.1f modify calls/s", float64(s.Calls)/s.Window.Seconds())
		}
		add("throughput", fmt.Sprintf("the same pair (%d:%d)", s.Weights[0], s.Weights[1]), fig, "reported", "-")
	}
	bulkWhat := fmt.Sprintf("timq bulk of a %s-line file (a third each clear, recall, modify), start to exit", thousands(int64(j.BulkLines)))
	if j.BulkErr != "" {
		add("bulk wall time", bulkWhat, fmt.Sprintf("%.1f s, failed: %s", j.BulkWall.Seconds(), j.BulkErr), fmt.Sprintf("<= %v", targetBulkWall), "NO")
	} else {
		add("bulk wall time", bulkWhat, fmt.Sprintf("%.1f s", j.BulkWall.Seconds()), fmt.Sprintf("<= %v", targetBulkWall),
			metCell(j.BulkWall > 0, j.BulkWall <= targetBulkWall))
	}
	over := func(v int64) string {
		if v < 0 || j.MemBaseline < 0 {
			return mb(v)
		}
		return fmt.Sprintf("%s (%+.1f MB over baseline)", mb(v), float64(v-j.MemBaseline)/(1<<20))
	}
	add("Redis used_memory", "baseline, before timq bulk", mb(j.MemBaseline), "reported", "-")
	running := over(j.MemRunning)
	if j.MemPeak >= 0 {
		running += fmt.Sprintf("; peak %s from bulk start", mb(j.MemPeak))
	}
	add("Redis used_memory", fmt.Sprintf("the %s-op job queued/running (%s applied before the cancel)", thousands(int64(j.BulkLines)), thousands(j.BulkApplied)),
		running, fmt.Sprintf("<= %s", mb(targetMemRunning)), metCell(j.MemRunning >= 0, max(j.MemRunning, j.MemPeak) <= targetMemRunning))
	add("Redis used_memory", "after it ends (cancelled)", over(j.MemAfter), fmt.Sprintf("<= %s", mb(targetMemAfter)),
		metCell(j.MemAfter >= 0, j.MemAfter <= targetMemAfter))
	return t
}

// thousands formats n with commas: 1,000,000.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	if neg {
		return "-" + s
	}
	return s
}

// backlogNote says how fast the backlog job ran while measured behind.
func (j *JobsResult) backlogNote() string {
	return fmt.Sprintf("The %s-operation job (a third each clear, recall, modify) applied %.1f operations/s across the three endpoints while the latencies behind it were measured.",
		thousands(int64(j.BacklogOps)), j.BacklogPerSecond)
}

const jobsNotes = `
- **latency**: the main table's idle measurement (20 operations per second per endpoint through the enqueue package, enqueue to the emulator's arrival time of the call), 50 per endpoint, with one worker process: first with nothing else queued, then while a job runs in every endpoint's job lane (it has applied a second's worth first, so the lanes are full). The job lane is served after the interactive queues; what an interactive operation still waits behind is the job tasks already running and the shared pacer.
- **share of calls**: two jobs of modifies stored at once, measured from the job store's applied counts at the two ends of a window that starts 3 s after both applied their first operation; each modify is one modify_group_msg call. Both jobs still have most of their operations left at the end, then are cancelled.
- **bulk wall time**: the timq binary's bulk command on a file the bench writes (and removes afterwards), from start to exit: it validates every line, then stores the job. A worker is running, so the feeder starts the job as soon as it is stored.
- **Redis used_memory**: INFO memory of the whole server (other databases of a shared server count too, hence the baseline), before the bulk command; once the job has applied its first operations (and the highest of samples every 200 ms from the bulk command's start); and after the job, cancelled (running 1,000,000 operations at the limit would take over an hour), has ended: its operation lists and bitmaps are then deleted and only its summary stays for its retention.
`
