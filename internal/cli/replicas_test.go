package cli_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/cli"
	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/tasks"
)

// runWithin runs timq like enqFixture.run, with a context that ends after d
// (which bounds how long TIMQ_ENQUEUE_REPLICAS waits for replicas).
func (f *enqFixture) runWithin(t *testing.T, d time.Duration, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out, errOut bytes.Buffer
	env := &cli.Env{
		Stdin:  strings.NewReader(stdin),
		Stdout: &out,
		Stderr: &errOut,
		Getenv: func(k string) string { return f.env[k] },
	}
	code = cli.Main(ctx, env, args)
	return code, out.String(), errOut.String()
}

// The test Redis has no replica: WAIT 1 answers 0, so TIMQ_ENQUEUE_REPLICAS=1
// can never be met.
func TestEnqueueReplicasUnmetFailsNamingTheSetting(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	f.env[config.EnvEnqueueReplicas] = "1"
	start := time.Now()
	code, out, errOut := f.runWithin(t, 3*time.Second, "", "enqueue", "modify", "--group", "g", "--seq", "1", "--text", "x")
	if code != 1 || time.Since(start) > 15*time.Second {
		t.Fatalf("exit %d after %v, want 1 at the context's deadline; stderr %q", code, time.Since(start), errOut)
	}
	for _, want := range []string{"may not be durable", "TIMQ_ENQUEUE_REPLICAS=1", "WAIT 1: 0 replicas acknowledged"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q does not say %q", errOut, want)
		}
	}
	// The ID is printed: the task is on the primary and may survive.
	if ids := enqIDs(out); len(ids) != 1 {
		t.Fatalf("stdout %q, want the task's ID", out)
	} else {
		f.task(t, tasks.QueueModify, ids[0])
	}

	code, _, errOut = f.runWithin(t, 3*time.Second, `{"op":"clear","GroupId":"g"}`+"\n", "bulk", "--tasks", "-")
	if code != 1 || !strings.Contains(errOut, "TIMQ_ENQUEUE_REPLICAS=1") || !strings.Contains(errOut, "may not be durable") {
		t.Errorf("bulk: exit %d, stderr %q; want 1 naming TIMQ_ENQUEUE_REPLICAS=1", code, errOut)
	}
}

func TestEnqueueReplicasSetting(t *testing.T) {
	t.Parallel()
	f := newEnqFixture(t)
	f.env[config.EnvEnqueueReplicas] = "0"
	if code, out, errOut := f.run(t, "", "enqueue", "clear", "--group", "g"); code != 0 || len(enqIDs(out)) != 1 {
		t.Errorf("TIMQ_ENQUEUE_REPLICAS=0: exit %d, stdout %q, stderr %q; want queued as without it", code, out, errOut)
	}
	f.env[config.EnvEnqueueReplicas] = "two"
	for _, args := range [][]string{{"enqueue", "clear", "--group", "g"}, {"bulk", "-"}, {"dlq", "requeue", "--all"}} {
		code, _, errOut := f.run(t, `{"op":"clear","GroupId":"g"}`, args...)
		if code != 1 || !strings.Contains(errOut, `TIMQ_ENQUEUE_REPLICAS: must be a whole number from 0 to 100, got "two"`) {
			t.Errorf("%v with a bad TIMQ_ENQUEUE_REPLICAS: exit %d, stderr %q", args, code, errOut)
		}
	}
	for _, args := range [][]string{{"enqueue", "--help"}, {"bulk", "--help"}} {
		if _, _, errOut := f.run(t, "", args...); !strings.Contains(errOut, "TIMQ_ENQUEUE_REPLICAS=N (default 0: off)") {
			t.Errorf("%v does not document TIMQ_ENQUEUE_REPLICAS:\n%s", args, errOut)
		}
	}
}
