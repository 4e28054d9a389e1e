package testenv

import (
	"go.uber.org/goleak"

	"github.com/timq/timq/internal/chatapi"
)

// LeakOptions are the goleak options for a package whose tests run workers
// or API clients: they ignore the loops of kept-alive connections an API
// client may leave running for a few seconds (chatapi.LingeringGoroutines).
func LeakOptions() []goleak.Option {
	var opts []goleak.Option
	for _, fn := range chatapi.LingeringGoroutines {
		opts = append(opts, goleak.IgnoreAnyFunction(fn))
	}
	return opts
}
