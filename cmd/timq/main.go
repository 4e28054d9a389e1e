// Command timq queues and runs admin operations on Tencent Cloud Chat groups
// (clear history, recall messages, modify messages) at the API's rate limit.
// Run "timq help" for its subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/cli"
	"github.com/timq/timq/internal/redislog"
)

func main() {
	// go-redis logs to stderr in plain text unless told otherwise; its lines
	// go through slog instead (or nowhere, for a one-shot command).
	redisLog := new(redislog.Sink)
	redis.SetLogger(redisLog)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &cli.Env{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv, IsTerminal: isTerminal(os.Stderr),
		RedisLog: redisLog,
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
