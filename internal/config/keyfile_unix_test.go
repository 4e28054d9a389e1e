//go:build unix

package config

import (
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestLoadSigningRefusesAFIFOWithoutBlocking: opening a FIFO for reading
// waits for a writer, so LoadSigning must refuse it without opening it
// that way. The test fails, rather than hangs, if it blocks.
func TestLoadSigningRefusesAFIFOWithoutBlocking(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := loadKeyFile(fifo)
		done <- err
	}()
	select {
	case err := <-done:
		want := "TIMQ_SECRET_KEY_FILE: the key file " + fifo + " is not a regular file (a named pipe)"
		if err == nil || err.Error() != want {
			t.Errorf("got %v, want %q", err, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("LoadSigning blocked on a FIFO for 5s")
	}
}
