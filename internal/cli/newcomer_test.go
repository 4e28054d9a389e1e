package cli

import (
	"context"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--version", "version"} {
		env, out, errb := simEnv(nil)
		if code := Main(context.Background(), env, []string{arg}); code != 0 || !strings.HasPrefix(out.String(), "timq ") || errb.String() != "" {
			t.Errorf("timq %s: exit %d, stdout %q, stderr %q; want 0 and \"timq VERSION\"", arg, code, out, errb)
		}
	}
}

// Settings with a bad value name the environment variable and what it
// accepts, not the library underneath.
func TestBadSettingsNameTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		vars map[string]string
		args []string
		want []string
	}{
		{map[string]string{"TIMQ_REGION": "mars", "TIMQ_SDKAPPID": "1400000001", "TIMQ_SECRET_KEY": "k"}, []string{"worker"},
			[]string{"TIMQ_REGION", `"mars"`, "sgp"}},
		{map[string]string{"TIMQ_REDIS_URL": "garbage"}, []string{"stats"},
			[]string{"TIMQ_REDIS_URL", "redis://", "rediss://", "redis-socket://", "redis-sentinel://"}},
	} {
		env, _, errb := simEnv(tc.vars)
		code := Main(context.Background(), env, tc.args)
		msg := errb.String()
		if code == 0 || strings.Contains(msg, "asynq:") || strings.Count(strings.TrimSpace(msg), "\n") != 0 {
			t.Errorf("%v with %v: exit %d, stderr %q; want one line without the library's prefix", tc.args, tc.vars, code, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%v with %v: stderr %q lacks %q", tc.args, tc.vars, msg, w)
			}
		}
	}
}

// timq enqueue --help shows the overview without an empty flag list, and an
// operation's --help its flags without the overview again.
func TestEnqueueHelpShowsEachPartOnce(t *testing.T) {
	t.Parallel()
	env, _, errb := simEnv(nil)
	Main(context.Background(), env, []string{"enqueue", "--help"})
	if h := errb.String(); !strings.Contains(h, "Operations:") || strings.Contains(h, "Flags:") {
		t.Errorf("enqueue --help:\n%s\nwant the operations and no Flags: block", h)
	}
	env, _, errb = simEnv(nil)
	Main(context.Background(), env, []string{"enqueue", "clear", "--help"})
	if h := errb.String(); strings.Contains(h, "Operations:") || !strings.Contains(h, "-group") || !strings.Contains(h, "-retention duration") {
		t.Errorf("enqueue clear --help:\n%s\nwant its flags (with -retention duration) and not the overview", h)
	}
}

// Flags may follow the FILE: timq bulk FILE --dry-run.
func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	env, _, _ := simEnv(nil)
	fs := newFlagSet(env, "x", "")
	dry := fs.Bool("dry-run", false, "")
	n := fs.Int("n", 0, "")
	pos, err := parseInterspersed(fs, []string{"a.jsonl", "--dry-run", "b", "-n", "3", "--", "-c"})
	if err != nil || !*dry || *n != 3 || strings.Join(pos, ",") != "a.jsonl,b,-c" {
		t.Fatalf("got %v, dry %v, n %d, err %v; want [a.jsonl b -c], true, 3", pos, *dry, *n, err)
	}
}
