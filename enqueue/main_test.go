package enqueue_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/timq/timq/internal/testenv"
)

// TestMain fails the package when a test leaves a goroutine behind (an
// unclosed client, a worker not shut down, a progress writer not stopped).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testenv.LeakOptions()...)
}
