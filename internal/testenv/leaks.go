package testenv

import (
	"go.uber.org/goleak"

	"github.com/timq/timq/internal/chatapi"
)

// LeakOptions are the goleak options for a package whose tests run workers
// or API clients: they ignore the idle-connection cleaner an API client
// may leave running for a few seconds (chatapi.LingeringGoroutine).
func LeakOptions() []goleak.Option {
	return []goleak.Option{goleak.IgnoreAnyFunction(chatapi.LingeringGoroutine)}
}
