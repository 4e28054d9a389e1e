package cli

import (
	"context"
	"strings"
	"testing"
)

// A sample rate whose interval a ticker cannot take (NaN, infinite, too
// small or too large) is a usage error naming the flag; it once panicked
// the dev run after it had started Redis, the emulator and the worker.
func TestDevRefusesASampleRateItCannotTick(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"NaN", "Inf", "1e-12", "1e6"} {
		env, _, errb := simEnv(map[string]string{})
		if code := Main(context.Background(), env, []string{"dev", "--sample-rate", v, "--addr", "127.0.0.1:0"}); code != 2 || !strings.Contains(errb.String(), "--sample-rate: must be negative (none) or from 0.001 to 1000 per second") {
			t.Errorf("--sample-rate %s: exit %d, stderr %q; want 2 and the bounds", v, code, errb)
		}
	}
}

// Bad --duration and --addr values stop timq dev before it starts Redis,
// the emulator and a worker for nothing.
func TestDevRefusesABadDurationOrAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--duration", "-1s"}, "--duration: must not be negative (0: run until Ctrl-C), got -1s"},
		{[]string{"--addr", "nope"}, `--addr: want HOST:PORT, got "nope"`},
		{[]string{"--addr", "127.0.0.1:http-alt-nope"}, `--addr: want HOST:PORT, got "127.0.0.1:http-alt-nope"`},
	} {
		env, out, errb := simEnv(map[string]string{})
		if code := Main(context.Background(), env, append([]string{"dev"}, tc.args...)); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, errb, tc.want)
		}
		if out.String() != "" {
			t.Errorf("%q: printed %q before refusing: it started something", tc.args, out)
		}
	}
}
