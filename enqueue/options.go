package enqueue

import (
	"fmt"
	"strings"
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
// be listening on that queue for the tasks to run. Defaults to the
// payload's DefaultQueue.
func Queue(name string) Option {
	return func(s *settings) {
		if strings.TrimSpace(name) == "" {
			s.fail("Queue: the queue name must not be blank")
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

// ProcessAt holds the tasks until t; a t in the past (or the zero time)
// means at once. Defaults to at once.
func ProcessAt(t time.Time) Option {
	return func(s *settings) { s.processAt, s.useAt = t, true }
}

// MaxRetry sets how many times a failed task is retried before it is
// dead-lettered (so at most n+1 attempts); n must not be negative.
// Defaults to tasks.DefaultMaxRetry.
func MaxRetry(n int) Option {
	return func(s *settings) {
		if n < 0 {
			s.fail("MaxRetry: must not be negative, got %d", n)
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
		if strings.TrimSpace(id) == "" {
			s.fail("TaskID: the ID must not be blank")
			return
		}
		s.taskID = id
	}
}

// Retention keeps each task in Redis for d after it completes, visible on
// the dashboard and in `timq stats`; 0 deletes it as it completes. d must
// not be negative. Size Redis for it: a completed task takes about 0.6 to
// 0.9 KB, so the default of tasks.DefaultRetention (24 h) at a sustained
// 600 tasks a second keeps about 52 million tasks, some 35 GB. A TaskID is
// only known to Redis while its task is kept, so a shorter retention also
// shortens TaskID's guarantee. Defaults to tasks.DefaultRetention.
func Retention(d time.Duration) Option {
	return func(s *settings) {
		if d < 0 {
			s.fail("Retention: must not be negative, got %v", d)
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
