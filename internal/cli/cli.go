// Package cli implements the timq command's subcommands. Each subcommand is
// a function of (ctx, *Env, args) so tests run it in-process with their own
// environment and output.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/timq/timq/internal/redislog"
)

// Env is the process environment a subcommand sees.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads an environment variable; os.Getenv in the real binary.
	Getenv func(string) string
	// IsTerminal reports whether Stderr is a terminal (for progress bars).
	IsTerminal bool
	// RedisLog is the sink the binary installed as go-redis's logger (see
	// package redislog). A long-running command points it at its own
	// logger; nil (as in tests) leaves go-redis's logging alone.
	RedisLog *redislog.Sink
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

func commands() []command {
	return []command{
		{"dev", "run everything in one process: embedded Redis, emulator, worker, dashboard, sample work", runDev},
		{"worker", "process queued tasks against the Chat REST API", runWorker},
		{"enqueue", "queue one clear, recall or modify operation", runEnqueue},
		{"bulk", "validate and queue operations from a JSON-lines file", runBulk},
		{"jobs", "list, show, watch, pause, resume or cancel bulk jobs; their failures", runJobs},
		{"purge", "recall a sender's indexed messages as a job", runPurge},
		{"dlq", "list, show, requeue or purge dead-lettered operations", runDLQ},
		{"stats", "print queue sizes and the dead-letter count", runStats},
		{"dash", "serve the asynqmon dashboard", runDash},
		{"api", "serve the HTTP API", runAPI},
		{"sim", "run the local emulator of the Chat REST API", runSim},
		{"bench", "benchmark workers against the emulator (make bench)", runBench},
	}
}

// usageError is a mistake in how a command was called: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// UsageError returns an error that makes Main print one line and exit 2.
func UsageError(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// Main runs the subcommand named by args[0] and returns the exit status:
// 0 on success, 1 on failure, 2 on a usage error. Errors are printed as one
// line "timq CMD: message" on Stderr.
func Main(ctx context.Context, env *Env, args []string) int {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Stdin == nil {
		env.Stdin = strings.NewReader("")
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printHelp(env.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "version" {
		fmt.Fprintln(env.Stdout, "timq", Version())
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, env, args[1:])
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case isUsage(err):
			fmt.Fprintf(env.Stderr, "timq %s: %v\n", c.name, err)
			return 2
		default:
			fmt.Fprintf(env.Stderr, "timq %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(env.Stderr, "timq: unknown command %q (run \"timq help\")\n", args[0])
	return 2
}

func isUsage(err error) bool {
	var u *usageError
	return errors.As(err, &u)
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "timq: queue and run Tencent Cloud Chat group admin operations at the API's rate limit.")
	fmt.Fprintln(w, "\nUsage: timq COMMAND [flags]   (timq COMMAND --help for a command's flags)")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nSettings come from TIMQ_* environment variables; see README.md.")
	fmt.Fprintln(w, "timq --version prints the version.")
}

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints its usage to the command's Stderr.
func newFlagSet(env *Env, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("timq "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: timq %s %s\n\nFlags:\n", name, usage)
		fs.PrintDefaults()
	}
	return fs
}

// flagGiven reports whether the command line set the flag called name.
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// parseFlags parses args, turning a bad flag into a one-line usage error.
// The flag package has already printed the usage text for -h.
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return err
	}
	if err != nil {
		return UsageError("%v", err)
	}
	return nil
}

// parseInterspersed parses args like parseFlags but lets flags come after
// positional arguments too (timq bulk FILE --skip-invalid), as most command
// lines allow; "--" still ends the flags. It returns the positional
// arguments in order.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// Version returns the binary's version: its module version when built from
// a tagged module, else "devel", with the VCS revision (and "+dirty") the
// Go toolchain stamped into it.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		v += " (" + rev[:min(12, len(rev))] + dirty + ")"
	}
	return v
}

// getenvOr returns env.Getenv, falling back to os.Getenv when unset.
func getenvOr(env *Env) func(string) string {
	if env.Getenv != nil {
		return env.Getenv
	}
	return os.Getenv
}
