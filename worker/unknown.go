package worker

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/tasks"
)

// refuseUnknownTypes is the middleware that dead-letters, at once, a task
// whose type is not exactly one of timq's three (a foreign producer's task
// in a timq queue, or a misspelt type). Without it asynq's mux answers
// "handler not found", which is retried up to MaxRetry times and then
// archived in asynq only, where asynq trims it: the operation would never
// reach the dead-letter store. Its mux also matches by prefix, so a type
// such as "timq:clear-v2" would otherwise run as a clear.
func (w *Worker) refuseUnknownTypes(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		switch t.Type() {
		case tasks.TypeClear, tasks.TypeRecall, tasks.TypeModify:
			return next.ProcessTask(ctx, t)
		}
		return w.rejectPayload(ctx, t, &tasks.ValidationError{
			Field:  "type",
			Reason: fmt.Sprintf("unknown task type %q (want %s, %s or %s)", t.Type(), tasks.TypeClear, tasks.TypeRecall, tasks.TypeModify),
		})
	})
}
