package sim

import (
	"testing"

	"go.uber.org/goleak"
)

// fasthttp's cleaner of idle connections (the API client's) ends by itself
// once its client has none, at its next pass (up to MaxIdleConnDuration
// later).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"))
}
