package cli

import (
	"strconv"
	"strings"
)

// sysmonPollMS is the schedtrace period, in milliseconds, that `timq worker`
// runs with unless --sysmon-poll=false: the largest the runtime takes (an
// int32, about 24.8 days).
//
// Why: with GOMAXPROCS=1 the runtime's sysmon thread sleeps deeply whenever
// the one P is idle, and the next system call wakes it (entersyscall), after
// which it polls every 20 µs until the P is idle again. A worker is idle
// between a few thousand short bursts of work a second (a timer, an HTTP
// answer, a Redis reply), each with a write or two, so sysmon woke about 10
// times per API call in make bench: 12 thread wake-ups per call in all, and
// a quarter of the worker's CPU. The runtime keeps sysmon out of deep sleep
// only while a schedtrace period is set (golang/go#18236 asks for a real
// switch); it then backs off to one poll per 10 ms and nothing wakes it.
// Wake-ups fell to 3-5 per call and CPU by 15-28%.
//
// The cost: the runtime prints a "SCHED" line on stderr once per period,
// and once at start on a host up longer than the period (sysmon compares
// it with the monotonic clock); and a fatal runtime error prints a dump of
// the scheduler's state before the stack traces, which could hang a crash
// that happens inside the scheduler while it holds its own lock.
const sysmonPollMS = "2147483647"

// SysmonPollGODEBUG decides whether the timq binary, run with args (without
// the program name), re-executes itself at start with the runtime's sysmon
// polling, and returns the GODEBUG to do it with: for `timq worker` unless
// --sysmon-poll is false or not a boolean, and unless GODEBUG (read with
// getenv) already names schedtrace, the user's own choice. main runs it
// before it installs any signal handler, so a stop signal that arrives
// before the new process starts still stops the process.
func SysmonPollGODEBUG(args []string, getenv func(string) string) (string, bool) {
	if len(args) == 0 || args[0] != "worker" || !sysmonPollFlag(args[1:]) {
		return "", false
	}
	godebug := getenv("GODEBUG")
	for _, kv := range strings.Split(godebug, ",") {
		if k, _, _ := strings.Cut(kv, "="); k == "schedtrace" {
			return "", false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	return godebug + "schedtrace=" + sysmonPollMS, true
}

// sysmonPollFlag returns the value of --sysmon-poll in the worker's flags
// (true when absent), reading them as package flag does: -name or --name,
// a boolean only as name=value, and no flags after "--" or the first
// argument that is not one. A value that is not a boolean counts as false;
// the worker's flag parsing then reports it.
func sysmonPollFlag(args []string) bool {
	on := true
	for _, a := range args {
		if a == "--" || len(a) < 2 || a[0] != '-' {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		if name != "sysmon-poll" {
			continue
		}
		if !hasValue {
			on = true
			continue
		}
		v, err := strconv.ParseBool(value)
		on = err == nil && v
	}
	return on
}

// ReexecEnv returns environ with GODEBUG set to godebug, for re-executing.
func ReexecEnv(environ []string, godebug string) []string {
	out := []string{"GODEBUG=" + godebug}
	for _, kv := range environ {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			out = append(out, kv)
		}
	}
	return out
}

// schedtraceMS is the schedtrace period the runtime took from the GODEBUG
// value godebug at start: the last valid one, as the runtime reads it
// (exact key, no spaces trimmed, an int32; others ignored), 0 for none.
// Over 0, sysmon polls.
func schedtraceMS(godebug string) int64 {
	var ms int64
	for _, kv := range strings.Split(godebug, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k != "schedtrace" {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 32); err == nil {
			ms = n
		}
	}
	return ms
}
