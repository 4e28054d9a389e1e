package testenv

import "go.uber.org/goleak"

// LeakOptions are the goleak options for a package whose tests run workers
// or API clients: fasthttp's cleaner of a client's idle connections ends by
// itself once the client has none, but only at its next pass, up to the
// idle timeout (10 s) after the test closed them.
func LeakOptions() []goleak.Option {
	return []goleak.Option{goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner")}
}
