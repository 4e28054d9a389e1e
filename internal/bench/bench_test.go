package bench

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/ratelimit"
)

func TestBusySpan(t *testing.T) {
	for _, c := range []struct {
		in   []int64
		want span
	}{
		{nil, span{}},
		{[]int64{0, 0}, span{}},
		{[]int64{5, 9}, span{}},                     // two partial seconds only
		{[]int64{0, 5, 197, 9, 0}, span{2, 3}},      // ramp-up and drain left out
		{[]int64{0, 5, 197, 0, 196, 9}, span{2, 5}}, // a stall inside is kept
	} {
		if got := busySpan(c.in); got != c.want {
			t.Errorf("busySpan(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	s := []int64{0, 5, 197, 0, 196, 9}
	if got := rate(s, busySpan(s)); got != (197+196)/3.0 {
		t.Errorf("rate = %v", got)
	}
	if got := rate(s, span{}); got != 0 {
		t.Errorf("rate over an empty span = %v", got)
	}
	if got := sum(s, span{4, 99}); got != 205 {
		t.Errorf("sum past the end = %v", got)
	}
	if u := (span{2, 4}).union(span{3, 7}); u != (span{2, 7}) {
		t.Errorf("union = %v", u)
	}
	if u := (span{}).union(span{3, 7}); u != (span{3, 7}) {
		t.Errorf("union with empty = %v", u)
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond, 1: time.Millisecond, 0.1: time.Millisecond} {
		if got := percentile(d, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if d[0] != 100*time.Millisecond {
		t.Error("percentile sorted its argument")
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of nothing = %v", got)
	}
	if got := percentile([]time.Duration{7}, 99); got != 7 {
		t.Errorf("p99 of one = %v", got)
	}
}

func TestInterpolate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := []sample{
		{At: t0, CPU: 1, Cmds: 100, Sleeps: 50, SleepsOK: true, Machine: cpuTimes{Steal: 10, Total: 1000}},
		{At: t0.Add(time.Second), CPU: 2, Cmds: 300, Self: 4, Sleeps: 250, SleepsOK: true, Machine: cpuTimes{Steal: 30, Total: 1200}},
	}
	for _, c := range []struct {
		at        time.Time
		cpu, cmds float64
	}{
		{t0.Add(-time.Second), 1, 100},
		{t0.Add(500 * time.Millisecond), 1.5, 200},
		{t0.Add(time.Hour), 2, 300},
	} {
		if cpu, cmds := at(s, c.at); cpu != c.cpu || cmds != c.cmds {
			t.Errorf("at(%v) = %v, %v, want %v, %v", c.at.Sub(t0), cpu, cmds, c.cpu, c.cmds)
		}
	}
	if self := atSelf(s, t0.Add(250*time.Millisecond)); self != 1 {
		t.Errorf("atSelf = %v, want 1", self)
	}
	// 20 of 200 ticks stolen over the second; half of each over its middle.
	if got := stealBetween(s, t0, t0.Add(time.Second)); got != 0.1 {
		t.Errorf("stealBetween(whole second) = %v, want 0.1", got)
	}
	if got := stealBetween(s, t0.Add(250*time.Millisecond), t0.Add(750*time.Millisecond)); got != 0.1 {
		t.Errorf("stealBetween(middle) = %v, want 0.1", got)
	}
	if got := sleepsBetween(s, t0.Add(250*time.Millisecond), t0.Add(750*time.Millisecond)); got != 100 {
		t.Errorf("sleepsBetween(middle) = %v, want 100", got)
	}
	// A sample whose reading failed makes the figure unknown, not wrong.
	holed := append(slices.Clone(s), sample{At: t0.Add(2 * time.Second)})
	if got := stealBetween(holed, t0, t0.Add(2*time.Second)); got != -1 {
		t.Errorf("stealBetween with a missing /proc/stat reading = %v, want -1", got)
	}
	if got := sleepsBetween(holed, t0, t0.Add(2*time.Second)); got != -1 {
		t.Errorf("sleepsBetween with a missing reading = %v, want -1", got)
	}
}

func TestSleeps(t *testing.T) {
	got, err := parseVoluntarySwitches("Name:\ttimq\nvoluntary_ctxt_switches:\t83475\nnonvoluntary_ctxt_switches:\t12\n")
	if err != nil || got != 83475 {
		t.Errorf("parseVoluntarySwitches = %d, %v; want 83475", got, err)
	}
	if _, err := parseVoluntarySwitches("Name:\ttimq\n"); err == nil {
		t.Error("parseVoluntarySwitches without the line: no error")
	}
	// This process's threads have slept (the Go runtime parks them); a
	// sum over threads counts at least the main thread's.
	before, err := sleeps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		time.Sleep(time.Millisecond)
	}
	after, err := sleeps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before {
		t.Errorf("sleeps went from %d to %d over 20 sleeps of 1 ms, want more", before, after)
	}
	if _, err := sleeps(-1); err == nil {
		t.Error("sleeps of no process: no error")
	}
}

func TestParseProcStat(t *testing.T) {
	const stat = "cpu  4705 150 1120 16250 520 0 30 875 0 0\ncpu0 2000 75 560 8125 260 0 15 437 0 0\nintr 1 2 3\n"
	got, err := parseProcStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := (cpuTimes{Steal: 875, Total: 4705 + 150 + 1120 + 16250 + 520 + 0 + 30 + 875}); got != want {
		t.Errorf("parseProcStat = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8\n", "cpu 1 2 3\n", "cpu 1 2 3 x 5 6 7 8\n"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
	if _, err := machineCPU(); err != nil {
		t.Errorf("machineCPU on this machine: %v", err)
	}
}

func TestTrimmedAndCSV(t *testing.T) {
	runs := []series{
		series{Run: "1 worker", Clear: []int64{0, 0, 3, 197}, Recall: []int64{0, 1, 198}, Modify: []int64{0, 0, 2, 196, 5}, Recalled: []int64{0, 1, 198}}.trimmed(),
		{Run: "7a recall", Recall: []int64{4}, Recalled: []int64{40}},
	}
	var b bytes.Buffer
	if err := writeCSV(&b, runs); err != nil {
		t.Fatal(err)
	}
	want := `run,second,clear_group_msg,group_msg_recall,modify_group_msg,messages_recalled
1 worker,0,0,1,0,1
1 worker,1,3,198,2,198
1 worker,2,197,0,196,0
1 worker,3,0,0,5,0
7a recall,0,0,4,0,40
`
	if b.String() != want {
		t.Errorf("CSV =\n%s\nwant\n%s", b.String(), want)
	}
}

func TestChartPNG(t *testing.T) {
	runs := []series{
		{Run: "1 worker", Clear: []int64{100, 197, 197, 50}, Recall: []int64{90, 197, 198, 10}, Modify: []int64{120, 196, 197}},
		{Run: "2 workers", Clear: []int64{350, 20, 300}},
		{Run: "empty"},
	}
	var b bytes.Buffer
	if err := writePNG(&b, drawChart(runs, 200)); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatalf("the chart does not decode: %v", err)
	}
	if img.Bounds().Dx() != chartW || img.Bounds().Dy() != chartH {
		t.Fatalf("size %v", img.Bounds())
	}
	count := func(want [3]uint32) int {
		n := 0
		for y := 0; y < chartH; y++ {
			for x := 0; x < chartW; x++ {
				r, g, bl, _ := img.At(x, y).RGBA()
				if [3]uint32{r >> 8, g >> 8, bl >> 8} == want {
					n++
				}
			}
		}
		return n
	}
	for name, c := range map[string][3]uint32{"limit": {214, 39, 40}, "clear": {31, 119, 180}, "recall": {255, 127, 14}, "modify": {44, 160, 44}} {
		if n := count(c); n < 100 {
			t.Errorf("%s drawn with %d pixels", name, n)
		}
	}
	// Nothing to draw is still a chart.
	if err := writePNG(&b, drawChart(nil, 200)); err != nil {
		t.Fatal(err)
	}
}

func TestTargetsAndTables(t *testing.T) {
	res := &Results{Cfg: Config{Rate: 200, Duration: time.Second, Out: "x"}, Redis: "test", Rows: []Row{
		{Config: "1 worker", Endpoint: "clear_group_msg", PerSecond: 197, MaxPerSecond: 199, CPUPer1k: 0.2, PeakRSS: 30 << 20, Drained: true, Dropped: -1, Steal: -1},
		{Config: "2 workers", Endpoint: "modify_group_msg", PerSecond: 190, MaxPerSecond: 203, MaxReadPerSecond: 205, Rejected: 2, CPUPer1k: 0.3, PeakRSS: 70 << 20, Dropped: 0.031, Steal: 0.12, SleepsPerCall: 9.75},
	}, Yardstick: Yardstick{PingCPU: 20 * time.Microsecond, DecodeCPU: 3 * time.Microsecond}}
	got := strings.Join(res.targets(), "\n")
	for _, want := range []string{"NOT met (lowest 190.0/s, modify_group_msg, 2 workers, 3.1% of its budget slots dropped (mostly for waking late), 12.0% CPU steal)",
		"NOT met (highest 203", "2 60007 answers",
		"= 0.417 CPU s per 1k calls): highest 0.300, 2 workers, the CPU of 15 Redis PING round trips per call", "NOT met (highest 70.0 MB"} {
		if !strings.Contains(got, want) {
			t.Errorf("targets lack %q:\n%s", want, got)
		}
	}
	if md := string(res.Markdown()); !strings.Contains(md, "| 203 (205 as read) | 2 | 3.1% | 0.00 | 0.300 | 9.8 | 0.000 | 12.0% | 70.0 |") {
		t.Errorf("markdown lacks the second row's sliding second as read, or its dropped and steal shares:\n%s", md)
	}
	res.Rows = res.Rows[:1]
	if got := strings.Join(res.targets(), "\n"); strings.Contains(got, "NOT") || strings.Contains(got, "steal") {
		t.Errorf("all targets met, but:\n%s", got)
	}
	// A configuration that made no calls meets nothing.
	idle := &Results{Cfg: res.Cfg, Rows: []Row{res.Rows[0], {Config: "4 workers", Endpoint: "clear_group_msg", Dropped: -1, Steal: -1}}}
	if got := strings.Join(idle.targets(), "\n"); strings.Count(got, "NOT met") != 3 {
		t.Errorf("a row without calls, but not each of the three targets is NOT met:\n%s", got)
	}
	var b bytes.Buffer
	if err := res.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	i := slices.IndexFunc(lines, func(l string) bool { return strings.Contains(l, "config") })
	if i < 0 || i+1 >= len(lines) {
		t.Fatalf("no table header:\n%s", b.String())
	}
	if head, row := lines[i], lines[i+1]; len(head) != len(row) || !strings.HasSuffix(row, "-") {
		t.Errorf("table not aligned:\n%s\n%s", head, row)
	}
	if md := string(res.Markdown()); !strings.Contains(md, "| 1 worker | clear_group_msg |") ||
		!strings.Contains(md, "a Redis PING round trip costs 20.0 µs of client CPU, parsing a modify payload 3.0 µs") {
		t.Errorf("markdown lacks the row or the yardstick:\n%s", md)
	}
}

// TestYardstick measures the yardstick against an embedded Redis: both
// figures are CPU times that a real machine cannot do in zero.
func TestYardstick(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	y, err := measureYardstick(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if y.PingCPU <= 0 || y.PingCPU > 10*time.Millisecond || y.DecodeCPU <= 0 || y.DecodeCPU > time.Millisecond {
		t.Errorf("yardstick = %+v: want a PING in (0, 10ms] and a decode in (0, 1ms]", y)
	}
	if got := y.InPings(10 * y.PingCPU); got != 10 {
		t.Errorf("InPings(10 PINGs) = %v", got)
	}
	if got := (Yardstick{}).InPings(time.Millisecond); got != 0 {
		t.Errorf("InPings without a yardstick = %v, want 0", got)
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "4242 (timq (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 12 0 100 1000000 2000 18446744073709551615"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3.25 {
		t.Fatalf("parseStatCPU = %v, %v; want 3.25", got, err)
	}
	if _, err := parseStatCPU("garbage"); err == nil {
		t.Fatal("no error for garbage")
	}
	if cpu, err := cpuSeconds(os.Getpid()); err != nil || cpu < 0 {
		t.Fatalf("cpuSeconds(self) = %v, %v", cpu, err)
	}
	if rss, err := peakRSS(os.Getpid()); err != nil || rss < 1<<20 {
		t.Fatalf("peakRSS(self) = %v, %v", rss, err)
	}
}

// TestProxyCounts checks the counting proxy against an embedded Redis: a
// pipeline counts each command, a script call counts once, answers pass.
func TestProxyCounts(t *testing.T) {
	m := miniredis.RunT(t)
	p, err := newCountingProxy(m.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := redis.NewClient(&redis.Options{Addr: p.Addr()})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", strings.Repeat("v", 100000), 0).Err(); err != nil {
		t.Fatal(err)
	}
	before, beforeBy := p.Total(), p.ByCommand()
	pipe := c.Pipeline()
	for range 5 {
		pipe.Incr(ctx, "n")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Eval(ctx, "redis.call('INCR', KEYS[1]); return redis.call('INCR', KEYS[1])", []string{"n"}).Int(); err != nil || v != 7 {
		t.Fatalf("EVAL = %v, %v", v, err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || len(v) != 100000 {
		t.Fatalf("GET through the proxy: %d bytes, %v", len(v), err)
	}
	// go-redis may open another connection (HELLO, CLIENT SETINFO): count
	// by name, and check that the names add up to the total.
	by := p.ByCommand()
	var named int64
	for k, v := range by {
		named += v - beforeBy[k]
	}
	if got := p.Total() - before; got != named {
		t.Errorf("total grew by %d, the per-command counts by %d", got, named)
	}
	if d := by["incr"] - beforeBy["incr"]; d != 5 {
		t.Errorf("counted %d INCR, want 5 (pipelined)", d)
	}
	if d := by["eval"] - beforeBy["eval"]; d != 1 {
		t.Errorf("counted %d EVAL, want 1 (its script's commands do not count)", d)
	}
	if by["get"] != 1 || by["set"] != 1 {
		t.Errorf("by command = %v", by)
	}
}

// TestBenchSmoke builds timq and runs the whole bench with tiny settings:
// one worker, 3 s backlogs and every recall scenario.
func TestBenchSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs processes for about 30 s")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "timq")
	build := exec.Command("go", "build", "-o", bin, "./cmd/timq")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	out := filepath.Join(dir, "out")
	res, err := Run(ctx, Config{Bin: bin, Workers: []int{1}, Duration: 3 * time.Second, Out: out, SkipJobs: true, SkipAPI: true, SkipIndex: true,
		RedisAddr: os.Getenv("REDIS_ADDR"), Progress: &progress})
	if err != nil {
		t.Fatalf("Run: %v\nprogress:\n%s", err, progress.String())
	}
	if len(res.Rows) != 3 {
		t.Fatalf("%d rows, want 3", len(res.Rows))
	}
	for _, r := range res.Rows {
		if r.Calls == 0 || r.PerSecond <= 0 || !r.Drained || r.LatN == 0 {
			t.Errorf("row %+v: want calls, a rate, a drained backlog and latencies", r)
		}
		// The workers' logs and /proc gave every figure.
		if r.Dropped < 0 || r.Dropped > 0.5 || r.SleepsPerCall <= 0 || r.Steal < 0 {
			t.Errorf("row %+v: want a dropped share, sleeps per call and a steal share", r)
		}
	}
	// The worker runs with Go's own GOMAXPROCS.
	log, err := os.ReadFile(filepath.Join(out, "logs", "worker-1w-0.log"))
	if err != nil || !strings.Contains(string(log), fmt.Sprintf(`"gomaxprocs":%d`, runtime.NumCPU())) {
		t.Errorf("the worker's log does not say gomaxprocs %d (%v):\n%.2000s", runtime.NumCPU(), err, log)
	}
	if len(res.Recall) != 3 {
		t.Fatalf("%d recall rows, want 3", len(res.Recall))
	}
	for _, r := range res.Recall {
		if r.Recalled == 0 {
			t.Errorf("scenario %s recalled nothing: %+v", r.Scenario, r)
		}
	}
	var text bytes.Buffer
	if err := res.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"1 worker", "clear_group_msg", "group_msg_recall", "modify_group_msg", "7a", "7b", "7c"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, text.String())
		}
	}
	for _, f := range []string{"results.md", "calls.csv", "calls.png", "logs/sim.log", "logs/worker-1w-0.log"} {
		if st, err := os.Stat(filepath.Join(out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v (size %v)", f, err, st)
		}
	}
	t.Logf("\n%s", text.String())
}

func TestParseBudgetStats(t *testing.T) {
	const log = `{"time":"2026-11-30T10:33:20Z","level":"INFO","msg":"connecting","redis":"redis://127.0.0.1:6379/1"}
not json: a runtime message
{"time":"2026-11-30T10:33:23Z","level":"INFO","msg":"worker stopped","clear_group_msg":{"Commands":487,"Grants":3104,"Reserved":3188,"Wasted":84,"FallbackGrants":0},"group_msg_recall":{"Commands":508,"Grants":3042,"Reserved":3111,"Wasted":69,"FallbackGrants":2}}
`
	got, err := parseBudgetStats(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]ratelimit.SharedStats{
		"clear_group_msg":  {Commands: 487, Grants: 3104, Reserved: 3188, Wasted: 84},
		"group_msg_recall": {Commands: 508, Grants: 3042, Reserved: 3111, Wasted: 69, FallbackGrants: 2},
	}
	if !maps.Equal(got, want) {
		t.Errorf("parseBudgetStats = %+v, want %+v", got, want)
	}
	if _, err := parseBudgetStats(strings.NewReader(`{"msg":"connecting"}` + "\n")); err == nil {
		t.Error("a log without a worker stopped line: no error")
	}
	if got := droppedShare(want["clear_group_msg"]); got != 84.0/3188 {
		t.Errorf("droppedShare = %v, want %v", got, 84.0/3188)
	}
	if got := droppedShare(ratelimit.SharedStats{}); got != -1 {
		t.Errorf("droppedShare of nothing = %v, want -1", got)
	}
}

func TestJobsTables(t *testing.T) {
	j := &JobsResult{BacklogOps: 100_000, BulkLines: 1_000_000, BacklogPerSecond: 590,
		Latency: []JobLatencyRow{{Endpoint: "clear_group_msg",
			Idle:    LatencyStat{N: 50, P50: 12 * time.Millisecond, P99: 30 * time.Millisecond},
			Backlog: LatencyStat{N: 49, Missing: 1, P50: 15 * time.Millisecond, P99: 80 * time.Millisecond}}},
		Shares: []ShareRow{
			{Weights: [2]int{1, 1}, Ops: 20_000, Applied: [2]int64{790, 800}, Window: 8 * time.Second, Calls: 1600},
			{Weights: [2]int{1, 3}, Ops: 20_000, Applied: [2]int64{600, 1000}, Window: 8 * time.Second, Calls: -1},
		},
		BulkWall: 12 * time.Second, MemBaseline: 1 << 20, MemRunning: 90 << 20, MemPeak: 210 << 20, MemAfter: 2 << 20, BulkApplied: 1234}
	if !j.Shares[0].Met() || j.Shares[1].Met() {
		t.Errorf("shares met: %v %v, want true false", j.Shares[0].Met(), j.Shares[1].Met())
	}
	res := &Results{Cfg: Config{Rate: 200, Out: "x"}, Jobs: j}
	var b bytes.Buffer
	if err := res.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, want := range []string{"Jobs (one worker)", "behind 100,000-op job p50 ms", "80.0 (1 missing)",
		"49.7% / 50.3% (790 / 800 ops)", "50.0% / 50.0% +- 5 points", "37.5% / 62.5%", "198.8 ops/s (99.4% of the limit), 200.0 modify calls/s",
		"12.0 s", "<= 30s", "peak 210.0 MB", "+1.0 MB over baseline", "after it ends (cancelled)", "1,234 applied before the cancel"} {
		if !strings.Contains(text, want) {
			t.Errorf("text lacks %q:\n%s", want, text)
		}
	}
	// The running memory target fails on its peak, the 1:3 share on its split.
	if n := strings.Count(text, " NO"); n != 2 {
		t.Errorf("%d targets NOT met, want 2:\n%s", n, text)
	}
	if md := string(res.Markdown()); !strings.Contains(md, "## Jobs (one worker)") || !strings.Contains(md, "| share of calls |") {
		t.Errorf("markdown lacks the jobs section:\n%s", md)
	}
	if got := thousands(1234567); got != "1,234,567" {
		t.Errorf("thousands = %q", got)
	}
}
