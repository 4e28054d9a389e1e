// Package tasks defines timq's three task types (clear, recall and modify
// group messages), their payloads, validation and default options.
//
// # Wire contract
//
// The task type names (TypeClear, TypeRecall, TypeModify), the queue names
// and the JSON field names of the payloads are stored in Redis with every
// queued task. Renaming any of them strands the tasks already queued: a
// worker only runs types it knows. Add fields; never rename or repurpose
// them. Payload field names are Tencent's own (GroupId, MsgSeq, ...), so a
// payload is the body of the API request it becomes.
package tasks

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/internal/jsonguard"
)

// Task type names. Part of the wire contract: never rename.
const (
	TypeClear  = "timq:clear"
	TypeRecall = "timq:recall"
	TypeModify = "timq:modify"
)

// Default queues, one per endpoint so that a backlog of one operation never
// takes the workers another needs. Part of the wire contract.
const (
	QueueClear  = "timq-clear"
	QueueRecall = "timq-recall"
	QueueModify = "timq-modify"
)

// Defaults applied by the constructors; a caller's options override them.
const (
	// DefaultMaxRetry is how many times a failed task is retried before it
	// is dead-lettered (so at most DefaultMaxRetry+1 attempts).
	DefaultMaxRetry = 10
	// DefaultTimeout bounds one attempt, including the wait for a rate token.
	DefaultTimeout = 2 * time.Minute
	// DefaultRetention keeps a completed task and its result visible in
	// asynqmon and `timq stats` for this long.
	DefaultRetention = 24 * time.Hour
	// DefaultUniqueTTL is how long an identical clear or modify is refused
	// while the first one has not completed.
	DefaultUniqueTTL = 24 * time.Hour
	// MaxPayloadBytes is the largest payload a worker parses; larger ones are
	// dead-lettered unparsed.
	MaxPayloadBytes = 64 * 1024
	// MaxRetryLimit is the most retries a task may ask for. asynq keeps the
	// count in 32 bits, so a larger one wrapped around and left the task
	// no retries at all.
	MaxRetryLimit = 1000
	// MaxNameBytes bounds a queue name or a task ID.
	MaxNameBytes = 256
)

// CheckName returns an error saying what is wrong with name as a queue
// name or task ID, or nil: it must not be blank, start or end with white
// space (a queue " timq-clear " is not "timq-clear", and no worker would
// take its tasks), hold control characters or invalid UTF-8 (asynq cannot
// store them), or be longer than MaxNameBytes.
func CheckName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("must not be blank")
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("must not start or end with white space, got %q", name)
	case len(name) > MaxNameBytes:
		return fmt.Errorf("must be at most %d bytes, got %d", MaxNameBytes, len(name))
	case !utf8.ValidString(name):
		return errors.New("is not valid UTF-8")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("must not contain control characters, got %q", name)
	}
	return nil
}

// Payload is implemented by Clear, Recall and Modify.
type Payload interface {
	// TaskType returns the task type name (TypeClear, ...).
	TaskType() string
	// DefaultQueue returns the queue the task goes to by default.
	DefaultQueue() string
	// Validate returns a *ValidationError naming the first bad field, or nil.
	Validate() error
}

// Queues lists the default queues, in the order clear, recall, modify.
func Queues() []string { return []string{QueueClear, QueueRecall, QueueModify} }

// Types lists the task types, in the order clear, recall, modify.
func Types() []string { return []string{TypeClear, TypeRecall, TypeModify} }

// QueueFor returns the default queue of a task type, or "" for an unknown type.
func QueueFor(taskType string) string {
	switch taskType {
	case TypeClear:
		return QueueClear
	case TypeRecall:
		return QueueRecall
	case TypeModify:
		return QueueModify
	}
	return ""
}

// NewTask validates p and returns its task with the default options
// (default queue, DefaultMaxRetry, DefaultTimeout, DefaultRetention) followed
// by opts, which override them. It does not set uniqueness: enqueue does.
func NewTask(p Payload, opts ...asynq.Option) (*asynq.Task, error) {
	return NewTaskWithHeaders(p, nil, opts...)
}

// EnqueuedHeader is the task header in which package enqueue records when a
// task is due: the time it was enqueued, or the time it was scheduled for,
// in Unix milliseconds. The worker measures an operation's enqueue-to-call
// latency from it. asynq's unique lock covers the payload only, so the
// header does not change de-duplication.
const EnqueuedHeader = "timq-due-unix-ms"

// DueAt returns the time a task's EnqueuedHeader records, if it has one.
func DueAt(t *asynq.Task) (time.Time, bool) {
	v, ok := t.Headers()[EnqueuedHeader]
	if !ok {
		return time.Time{}, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// NewTaskWithHeaders is NewTask with asynq task headers, which travel with
// the task to the worker (asynq.NewTaskWithHeaders).
func NewTaskWithHeaders(p Payload, headers map[string]string, opts ...asynq.Option) (*asynq.Task, error) {
	if isNil(p) {
		return nil, errors.New("tasks: no payload (nil)")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("tasks: encode %s payload: %w", p.TaskType(), err)
	}
	all := append([]asynq.Option{
		asynq.Queue(p.DefaultQueue()),
		asynq.MaxRetry(DefaultMaxRetry),
		asynq.Timeout(DefaultTimeout),
		asynq.Retention(DefaultRetention),
	}, opts...)
	if headers == nil {
		return asynq.NewTask(p.TaskType(), b, all...), nil
	}
	return asynq.NewTaskWithHeaders(p.TaskType(), b, headers, all...), nil
}

// Parse decodes and validates the payload of a task of the given type. It
// returns a *ValidationError for an unknown type, an oversized or malformed
// payload, an unknown field, or a bad value; it never panics.
func Parse(taskType string, payload []byte) (Payload, error) {
	switch taskType {
	case TypeClear:
		return decode[Clear](payload)
	case TypeRecall:
		return decode[Recall](payload)
	case TypeModify:
		return decode[Modify](payload)
	}
	return nil, &ValidationError{Field: "type", Reason: fmt.Sprintf("unknown task type %q", taskType)}
}

// ParseClear decodes and validates a clear payload.
func ParseClear(payload []byte) (Clear, error) { return decode[Clear](payload) }

// ParseRecall decodes and validates a recall payload.
func ParseRecall(payload []byte) (Recall, error) { return decode[Recall](payload) }

// ParseModify decodes and validates a modify payload.
func ParseModify(payload []byte) (Modify, error) { return decode[Modify](payload) }

type payloadPtr[T any] interface {
	*T
	Payload
}

func decode[T any, P payloadPtr[T]](payload []byte) (T, error) {
	var v T
	if len(payload) > MaxPayloadBytes {
		return v, &ValidationError{Field: "payload", Reason: fmt.Sprintf("is %d bytes, more than the %d allowed", len(payload), MaxPayloadBytes)}
	}
	if err := strictUnmarshal(payload, &v); err != nil {
		return v, &ValidationError{Field: "payload", Reason: err.Error()}
	}
	// What encoding/json changed without a word (invalid UTF-8, a repeated
	// key, even in another case) is refused too: a foreign producer's
	// {"GroupId":"a","groupid":"b"} would name group b.
	if e := jsonguard.Check(payload); e != nil {
		var zero T
		field := e.Field
		if field == "JSON" {
			field = "payload"
		}
		return zero, &ValidationError{Field: field, Reason: e.Reason}
	}
	if err := P(&v).Validate(); err != nil {
		return v, err
	}
	return v, nil
}

// isNil reports whether p is nil or a nil pointer in the interface.
func isNil(p Payload) bool {
	if p == nil {
		return true
	}
	v := reflect.ValueOf(p)
	return v.Kind() == reflect.Pointer && v.IsNil()
}
