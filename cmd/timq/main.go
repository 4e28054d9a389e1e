// Command timq queues and runs admin operations on Tencent Cloud Chat groups
// (clear history, recall messages, modify messages) at the API's rate limit.
// Run "timq help" for its subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/cli"
	"github.com/timq/timq/internal/redislog"
)

func main() {
	// First of all, before any signal handler, file or log line: a stop
	// signal until the new process starts keeps its default action and
	// ends the process, and nothing is done twice.
	var reexecErr error
	if godebug, ok := cli.SysmonPollGODEBUG(os.Args[1:], os.Getenv); ok {
		reexecErr = reexec(godebug) // returns only on failure
	}
	// go-redis logs to stderr in plain text unless told otherwise; its lines
	// go through slog instead (or nowhere, for a one-shot command).
	redisLog := new(redislog.Sink)
	redis.SetLogger(redisLog)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, IsTerminal: isTerminal(os.Stderr),
		SetProcs:  func(n int) { runtime.GOMAXPROCS(n) },
		ReexecErr: reexecErr,
		RedisLog:  redisLog,
	}
	code := cli.Main(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal), for
// progress bars and text logs.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// reexec replaces this process with the same binary and arguments and
// GODEBUG=godebug; the PID, open descriptors and the rest of the
// environment stay. On Linux it runs /proc/self/exe, which still works when
// the binary on disk was replaced since the start.
func reexec(godebug string) error {
	self := "/proc/self/exe"
	if runtime.GOOS != "linux" {
		var err error
		if self, err = os.Executable(); err != nil {
			return err
		}
	}
	return syscall.Exec(self, os.Args, cli.ReexecEnv(os.Environ(), godebug))
}
