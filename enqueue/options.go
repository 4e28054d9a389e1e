package enqueue

import (
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/timq/timq/tasks"
)

// Option changes how an operation is queued. Options apply in order; when
// two set the same thing (Delay and ProcessAt, Dedup and NoDedup) the last
// one wins.
type Option func(*settings)

// settings is what the options decide for one call.
type settings struct {
	queue     string // "" for the payload's default queue
	delay     time.Duration
	processAt time.Time // used when useAt is set
	useAt     bool
	maxRetry  int
	dedup     *time.Duration // nil for the default of the task type; 0 for off
	taskID    string         // "" to generate one
	retention *time.Duration // nil for tasks.DefaultRetention
	err       error
}

func (s *settings) fail(format string, args ...any) {
	if s.err == nil {
		s.err = fmt.Errorf(format, args...)
	}
}

// Queue sends the tasks to the named queue instead of the payload's own
// (tasks.QueueClear, tasks.QueueRecall or tasks.QueueModify). A worker must
// be listening on that queue for the tasks to run. name must pass
// tasks.CheckName. Defaults to the payload's DefaultQueue.
func Queue(name string) Option {
	return func(s *settings) {
		if err := tasks.CheckName(name); err != nil {
			s.fail("Queue: the queue name %v", err)
			return
		}
		s.queue = name
	}
}

// Delay holds the tasks until d from the moment they are enqueued; d must
// not be negative. Defaults to 0: the tasks can run at once.
func Delay(d time.Duration) Option {
	return func(s *settings) {
		if d < 0 {
			s.fail("Delay: must not be negative, got %v", d)
			return
		}
		s.delay, s.useAt = d, false
	}
}

// latestProcessAt is the latest time ProcessAt accepts, the end of the year
// 9999: asynq keeps the time as a Redis score, and its scripts cannot read
// back much larger ones (a task due in the year 146 billion broke the
// listing of its queue's scheduled tasks).
var latestProcessAt = time.Date(9999, time.December, 31, 23, 59, 59, 0, time.UTC)

// ProcessAt holds the tasks until t; a t in the past (or the zero time)
// means at once, and t must not be after the end of the year 9999 (UTC).
// Defaults to at once.
func ProcessAt(t time.Time) Option {
	return func(s *settings) {
		if t.After(latestProcessAt) {
			s.fail("ProcessAt: must not be after %s, got %s", latestProcessAt.Format(time.RFC3339), t.Format(time.RFC3339))
			return
		}
		s.processAt, s.useAt = t, true
	}
}

// MaxRetry sets how many times a failed task is retried before it is
// dead-lettered (so at most n+1 attempts); n must be from 0 to
// tasks.MaxRetryLimit. Defaults to tasks.DefaultMaxRetry.
func MaxRetry(n int) Option {
	return func(s *settings) {
		if n < 0 || n > tasks.MaxRetryLimit {
			s.fail("MaxRetry: must be from 0 to %d, got %d", tasks.MaxRetryLimit, n)
			return
		}
		s.maxRetry = n
	}
}

// Dedup refuses to enqueue a task while an identical one (same queue, type
// and payload) enqueued with de-duplication has not completed, for at most
// ttl; ttl must be at least one second. See the package documentation for
// when asynq releases the lock. Defaults to Dedup(tasks.DefaultUniqueTTL)
// for clear and modify, and to NoDedup for recall.
func Dedup(ttl time.Duration) Option {
	return func(s *settings) {
		if ttl < time.Second {
			s.fail("Dedup: the TTL must be at least 1s, got %v", ttl)
			return
		}
		s.dedup = &ttl
	}
}

// NoDedup enqueues the tasks even when identical ones are waiting, and takes
// no de-duplication lock for them. Dead-letter requeue uses it, because
// asynq keeps a dead-lettered task's lock until its TTL ends. Defaults to
// on for recall only (see Dedup).
func NoDedup() Option {
	return func(s *settings) {
		off := time.Duration(0)
		s.dedup = &off
	}
}

// TaskID sets the task's ID instead of a generated one, so that calling
// again after an error (a timeout, a failover, ErrNotConfirmed) cannot
// queue the operation twice: a task whose ID is already queued is not
// enqueued again and counts as queued (its ID is returned without error).
// asynq keeps a task's ID until the task's retention ends
// (tasks.DefaultRetention after it completes, or what Retention sets), so
// the guarantee lasts that long. Never reuse an ID for a different
// operation: the second one would be dropped silently. When the operation becomes several tasks (a recall
// of more than tasks.MaxRecallPerTask messages) they get the IDs id-1,
// id-2, ... in list order. Defaults to a random UUID per task.
func TaskID(id string) Option {
	return func(s *settings) {
		if err := tasks.CheckName(id); err != nil {
			s.fail("TaskID: the ID %v", err)
			return
		}
		s.taskID = id
	}
}

// Retention keeps each task in Redis for d after it completes, visible on
// the dashboard and in `timq stats`; 0 deletes it as it completes. d must
// be 0 or at least one second (asynq keeps whole seconds). Size Redis for it: a completed task takes about 0.6 to
// 0.9 KB, so the default of tasks.DefaultRetention (24 h) at a sustained
// 600 tasks a second keeps about 52 million tasks, some 35 GB. A TaskID is
// only known to Redis while its task is kept, so a shorter retention also
// shortens TaskID's guarantee. Defaults to tasks.DefaultRetention.
func Retention(d time.Duration) Option {
	return func(s *settings) {
		// asynq keeps whole seconds: 500ms would be 0, deleted at once.
		if d < 0 || (d > 0 && d < time.Second) {
			s.fail("Retention: must be 0 or at least 1s, got %v", d)
			return
		}
		s.retention = &d
	}
}

func newSettings(opts []Option) (settings, error) {
	s := settings{maxRetry: tasks.DefaultMaxRetry}
	for _, o := range opts {
		if o != nil {
			o(&s)
		}
	}
	if s.err != nil {
		return s, fmt.Errorf("enqueue: option %w", s.err)
	}
	return s, nil
}

// dedupTTL returns the de-duplication TTL for a task type, 0 for none.
func (s *settings) dedupTTL(taskType string) time.Duration {
	if s.dedup != nil {
		return *s.dedup
	}
	if taskType == tasks.TypeRecall {
		return 0
	}
	return tasks.DefaultUniqueTTL
}

// asynqOptions turns the settings into asynq options for one task type.
// now is the moment Delay counts from.
func (s *settings) asynqOptions(taskType string, now time.Time) []asynq.Option {
	opts := []asynq.Option{asynq.MaxRetry(s.maxRetry)}
	if s.queue != "" {
		opts = append(opts, asynq.Queue(s.queue))
	}
	switch {
	case s.useAt && !s.processAt.IsZero():
		opts = append(opts, asynq.ProcessAt(s.processAt))
	case !s.useAt && s.delay > 0:
		opts = append(opts, asynq.ProcessAt(now.Add(s.delay)))
	}
	if ttl := s.dedupTTL(taskType); ttl > 0 {
		opts = append(opts, asynq.Unique(ttl))
	}
	if s.retention != nil {
		opts = append(opts, asynq.Retention(*s.retention))
	}
	return opts
}

// due returns when a task enqueued at now with these settings is due.
func (s *settings) due(now time.Time) time.Time {
	switch {
	case s.useAt && s.processAt.After(now):
		return s.processAt
	case !s.useAt && s.delay > 0:
		return now.Add(s.delay)
	}
	return now
}
