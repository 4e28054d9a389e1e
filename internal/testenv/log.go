package testenv

import (
	"bytes"
	"log/slog"
	"sync"
	"testing"
)

// Logger returns a logger that writes through t.Log (shown for failed or
// verbose tests) and also keeps every line in the returned buffer, so tests
// can scan all output (for secrets, for instance).
func Logger(t testing.TB) (*slog.Logger, *LogBuffer) {
	buf := &LogBuffer{t: t}
	return slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// LogBuffer collects log output and forwards it to t.Log.
type LogBuffer struct {
	t    testing.TB
	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if !b.done {
		b.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// String returns everything logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Stop stops forwarding to t.Log (call before the test ends if goroutines
// may still log; testing panics on Log after a test completes).
func (b *LogBuffer) Stop() {
	b.mu.Lock()
	b.done = true
	b.mu.Unlock()
}
