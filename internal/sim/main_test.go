package sim

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/timq/timq/internal/chatapi"
)

// The API clients the tests make may leave their idle-connection cleaner
// running for a few seconds (chatapi.LingeringGoroutine).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction(chatapi.LingeringGoroutine))
}
