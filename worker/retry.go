package worker

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

// errThrottled is returned to asynq when an endpoint stayed rate-limited for
// the whole of an attempt. It is not a failure: the attempt is not counted.
type throttledError struct{ err error }

func (e *throttledError) Error() string { return "throttled: " + e.err.Error() }
func (e *throttledError) Unwrap() error { return e.err }

// isFailure tells asynq whether an error uses up an attempt. Rate-limit
// answers do not: the API said "later", not "no".
func isFailure(err error) bool {
	var t *throttledError
	var p *pausedError
	return !errors.As(err, &t) && !errors.As(err, &p)
}

// backoff returns the delay before retry n (0-based): a random duration in
// [d/2, d] with d = min(cap, base*2^n) ("equal jitter"), so retries of many
// tasks that failed together spread out, and no retry comes sooner than half
// its step. Throttled tasks come back after the throttle delay plus jitter.
func (w *Worker) backoff(n int, err error) time.Duration {
	var t *throttledError
	if errors.As(err, &t) {
		return w.cfg.ThrottleDelay + time.Duration(rand.Int64N(int64(w.cfg.ThrottleDelay)))
	}
	var p *pausedError
	if errors.As(err, &p) {
		return pausedDelay()
	}
	return equalJitter(w.cfg.RetryBase, w.cfg.RetryCap, n, rand.Int64N)
}

func equalJitter(base, cap time.Duration, n int, int64n func(int64) int64) time.Duration {
	d := cap
	if n < 62 {
		if step := base << n; step > 0 && step < cap {
			d = step
		}
	}
	half := d / 2
	return half + time.Duration(int64n(int64(d-half)+1))
}

// outcome is what the worker does with one call's result.
type outcome int

const (
	outcomeDone       outcome = iota // applied
	outcomeRetry                     // transient: retry with backoff, using an attempt
	outcomeDeadLetter                // permanent, or out of attempts
	outcomeHandBack                  // the worker is stopping: give the task back untouched
)

// decide maps a call's error to an outcome. It is the whole retry policy:
// chatapi.Classify holds the code table (10002, 20004, 20005, 91000 and
// codeless transport failures retry; rate-limit codes throttle; everything
// else is permanent).
func decide(err error, lastAttempt bool) outcome {
	if err == nil {
		return outcomeDone
	}
	switch chatapi.Classify(err) {
	case chatapi.ClassCanceled:
		return outcomeHandBack
	case chatapi.ClassRetry, chatapi.ClassResign, chatapi.ClassThrottle:
		// Resign: the client already signed again once and was refused
		// again; treat it like any transient failure.
		if lastAttempt {
			return outcomeDeadLetter
		}
		return outcomeRetry
	}
	return outcomeDeadLetter
}
