package cli

import (
	"context"
	"fmt"
	"net"

	"github.com/timq/timq/internal/devrun"
)

func runDev(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "dev", "[flags]\n\nRuns everything in one process with nothing to set up: an embedded Redis,\nthe API emulator (with a few injected faults), a worker, the asynqmon dashboard\nand a stream of sample work, some of it meant to fail. Ctrl-C stops it.")
	var opts devrun.Options
	fs.StringVar(&opts.DashboardAddr, "addr", "127.0.0.1:8080", "dashboard address HOST:PORT")
	fs.Float64Var(&opts.SampleRate, "sample-rate", 20, "sample operations queued per second (negative: none)")
	fs.DurationVar(&opts.Duration, "duration", 0, "stop after this long (0: run until Ctrl-C)")
	var lf logFlags
	lf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := devrun.CheckSampleRate(opts.SampleRate); err != nil {
		return UsageError("--sample-rate: %v", err)
	}
	if opts.Duration < 0 {
		return UsageError("--duration: must not be negative (0: run until Ctrl-C), got %v", opts.Duration)
	}
	// Checked before Redis, the emulator and the worker start for nothing.
	if _, err := net.ResolveTCPAddr("tcp", opts.DashboardAddr); err != nil {
		return UsageError("--addr: want HOST:PORT, got %q: %v", opts.DashboardAddr, err)
	}
	log, err := lf.logger(env)
	if err != nil {
		return err
	}
	opts.Logger = log
	opts.Ready = func(e devrun.Endpoints) {
		fmt.Fprintf(env.Stdout, "timq dev: dashboard at %s (jobs at %sjobs/, dead letters at %sdlq/)\n", e.DashboardURL, e.DashboardURL, e.DashboardURL)
		fmt.Fprintf(env.Stdout, "timq dev: HTTP API at %s (described at %sopenapi.json; try: curl -d '{\"GroupId\":\"dev-group-00\",\"MsgSeqList\":[{\"MsgSeq\":1}]}' %srecall)\n", e.APIURL, e.DashboardURL, e.APIURL)
		fmt.Fprintf(env.Stdout, "timq dev: embedded Redis at %s (try: TIMQ_REDIS_URL=%s timq stats)\n", e.RedisURL, e.RedisURL)
		fmt.Fprintf(env.Stdout, "timq dev: API emulator at %s; Ctrl-C to stop\n", e.EmulatorURL)
	}
	return devrun.Run(ctx, opts)
}
