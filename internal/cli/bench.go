package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/timq/timq/internal/bench"
)

const benchUsage = `[flags]

Runs the benchmark behind "make bench": a Redis (the one at REDIS_ADDR or
127.0.0.1:6379 when it answers, else a redis-server or an embedded one), the
emulator with 40 ms + up to 20 ms latency, and 1, 2 then 4 timq worker
processes, each draining a mixed backlog (clear, recall, modify) sized to
keep every endpoint busy for --duration; then the recall scenarios; then
the jobs phase (interactive latency idle and behind a 100,000-operation job,
the shares of two concurrent jobs, timq bulk of 1,000,000 lines and the
Redis memory that job takes while it runs and after it ends).
Prints one table row per worker count and endpoint and writes results.md,
calls.csv, calls.png and logs/ to --out. Every process it starts is stopped
when it ends or is interrupted. The full run takes about 3.5 minutes.`

// runBench runs internal/bench with the command's flags.
func runBench(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "bench", benchUsage)
	quick := fs.Bool("quick", false, "a short smoke run: 5s per backlog, 1 and 2 workers (flags given explicitly still apply)")
	workers := fs.String("workers", "1,2,4", "worker-process counts to run in turn, comma-separated")
	out := fs.String("out", bench.DefaultOut, "directory for results.md, calls.csv, calls.png and logs/")
	duration := fs.Duration("duration", bench.DefaultDuration, "how long each backlog keeps every endpoint busy at its limit")
	skipRecall := fs.Bool("skip-recall-scenarios", false, "leave out the recall-only scenarios")
	indexOnly := fs.Bool("index-only", false, "run only the message-index phase: callbacks/s into timq api, bytes per indexed message, time to find a sender's messages")
	apiOnly := fs.Bool("api-only", false, "run only the HTTP API phase: enqueues/s over HTTP beside the Go client, and a 100,000-line job")
	bin := fs.String("bin", "", "the timq binary to run as sim and worker (default: this one)")
	busy := fs.Int("busy", 0, fmt.Sprintf("start `N` busy-loop processes (0 to %d) that compete for the CPU, as on a host busy with other work", bench.MaxBusyLoops))
	profDir := fs.String("cpuprofile", "", "write each worker's CPU profile to `DIR`/worker-RUN-N.pprof (for go tool pprof)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		if !set["duration"] {
			*duration = 5 * time.Second
		}
		if !set["workers"] {
			*workers = "1,2"
		}
	}
	var counts []int
	for _, s := range strings.Split(*workers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 16 {
			return UsageError("--workers: want counts from 1 to 16 like 1,2,4, got %q", *workers)
		}
		counts = append(counts, n)
	}
	if *duration < time.Second || *duration > 10*time.Minute {
		return UsageError("--duration: want 1s to 10m, got %v", *duration)
	}
	if *busy < 0 || *busy > bench.MaxBusyLoops {
		return UsageError("--busy: want 0 to %d busy loops, got %d", bench.MaxBusyLoops, *busy)
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find the timq binary (give --bin): %v", err)
		}
		*bin = exe
	}
	var workerEnv []string
	if *profDir != "" {
		abs, err := filepath.Abs(*profDir)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			return fmt.Errorf("--cpuprofile: %v", err)
		}
		workerEnv = append(workerEnv, envCPUProfile+"="+filepath.Join(abs, "worker-{i}.pprof"))
	}
	res, err := bench.Run(ctx, bench.Config{
		Bin:                 *bin,
		Workers:             counts,
		Duration:            *duration,
		Out:                 *out,
		SkipRecallScenarios: *skipRecall,
		APIOnly:             *apiOnly,
		IndexOnly:           *indexOnly,
		RedisAddr:           getenvOr(env)("REDIS_ADDR"),
		WorkerEnv:           workerEnv,
		BusyLoops:           *busy,
		Progress:            env.Stderr,
	})
	if err != nil {
		return err
	}
	return res.WriteText(env.Stdout)
}

// envCPUProfile is a hidden worker setting for benchmarks: write a CPU
// profile of the whole run to this file (see timq bench --cpuprofile).
const envCPUProfile = "TIMQ_CPUPROFILE"

// startCPUProfile starts a CPU profile written to path and returns the
// function that stops it; with an empty path it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", envCPUProfile, err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %v", envCPUProfile, err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
