package sim

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/timq/timq/internal/chatapi"
)

// The API clients the tests make may leave the loops of kept-alive
// connections running for a few seconds (chatapi.LingeringGoroutines).
func TestMain(m *testing.M) {
	var opts []goleak.Option
	for _, fn := range chatapi.LingeringGoroutines {
		opts = append(opts, goleak.IgnoreAnyFunction(fn))
	}
	goleak.VerifyTestMain(m, opts...)
}
