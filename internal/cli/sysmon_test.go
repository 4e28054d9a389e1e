package cli

import (
	"slices"
	"testing"
)

func TestSysmonPollGODEBUG(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		args    []string
		godebug string
		want    string // "": no re-execution
	}{
		{"worker", []string{"worker"}, "", "schedtrace=2147483647"},
		{"worker with flags", []string{"worker", "--http-addr", "127.0.0.1:9090", "-procs=1"}, "", "schedtrace=2147483647"},
		{"other settings kept", []string{"worker"}, "madvdontneed=1,http2debug=0", "madvdontneed=1,http2debug=0,schedtrace=2147483647"},
		{"a schedtrace of the user's own", []string{"worker"}, "schedtrace=1000", ""},
		{"the user's schedtrace=0", []string{"worker"}, "madvdontneed=1,schedtrace=0", ""},
		// The runtime trims nothing: " schedtrace" is another key.
		{"a spaced key is not schedtrace", []string{"worker"}, "a=1, schedtrace=0", "a=1, schedtrace=0,schedtrace=2147483647"},
		{"a longer key is not schedtrace", []string{"worker"}, "schedtracex=1", "schedtracex=1,schedtrace=2147483647"},
		{"--sysmon-poll=false", []string{"worker", "--sysmon-poll=false"}, "", ""},
		{"-sysmon-poll=0", []string{"worker", "-sysmon-poll=0"}, "", ""},
		{"not a boolean: the flag parser reports it", []string{"worker", "--sysmon-poll=maybe"}, "", ""},
		{"the last one wins", []string{"worker", "--sysmon-poll=false", "--sysmon-poll"}, "", "schedtrace=2147483647"},
		{"after --, not a flag", []string{"worker", "--", "--sysmon-poll=false"}, "", "schedtrace=2147483647"},
		{"other commands", []string{"enqueue", "clear"}, "", ""},
		{"no command", nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := SysmonPollGODEBUG(tc.args, func(k string) string {
				if k == "GODEBUG" {
					return tc.godebug
				}
				return ""
			})
			if got != tc.want || ok != (tc.want != "") {
				t.Errorf("SysmonPollGODEBUG(%q, GODEBUG=%q) = %q, %v; want %q", tc.args, tc.godebug, got, ok, tc.want)
			}
			// What it returns is what the runtime then reads as polling.
			if ok && schedtraceMS(got) != 2147483647 {
				t.Errorf("schedtraceMS(%q) = %d, want 2147483647", got, schedtraceMS(got))
			}
		})
	}
}

func TestSchedtraceMS(t *testing.T) {
	t.Parallel()
	for godebug, want := range map[string]int64{
		"":                                0,
		"schedtrace=0":                    0,
		"madvdontneed=1,schedtrace=1000":  1000,
		"schedtrace=5,schedtrace=7":       7,
		"schedtrace=5,schedtrace=bad":     5,
		" schedtrace=5":                   0,
		"schedtrace=2147483648":           0,
		"schedtrace=2147483647,other=1":   2147483647,
		"schedtracex=5,schedtrace":        0,
		"http2debug=1,schedtrace=20,x=y=": 20,
	} {
		if got := schedtraceMS(godebug); got != want {
			t.Errorf("schedtraceMS(%q) = %d, want %d", godebug, got, want)
		}
	}
}

func TestReexecEnv(t *testing.T) {
	t.Parallel()
	got := ReexecEnv([]string{"PATH=/bin", "GODEBUG=a=1", "TIMQ_RATE=190", "GODEBUGX=1"}, "a=1,schedtrace=2147483647")
	want := []string{"GODEBUG=a=1,schedtrace=2147483647", "PATH=/bin", "TIMQ_RATE=190", "GODEBUGX=1"}
	if !slices.Equal(got, want) {
		t.Errorf("ReexecEnv = %q, want %q", got, want)
	}
	if got := ReexecEnv(nil, "schedtrace=1"); !slices.Equal(got, []string{"GODEBUG=schedtrace=1"}) {
		t.Errorf("ReexecEnv(nil) = %q", got)
	}
}
