package testenv

import (
	"net/http/httptest"
	"testing"

	"github.com/timq/timq/internal/sim"
)

// TestSDKAppID is the SDKAppID every test emulator and client use.
const TestSDKAppID = 1400000001

// Emulator is a running emulator of the Chat REST API on loopback, with the
// credentials to call it.
type Emulator struct {
	*sim.Server
	URL       string // base URL, e.g. http://127.0.0.1:41234
	SDKAppID  uint64
	SecretKey string // random per emulator, so tests can search output for it
	Admin     string
}

// StartEmulator starts an emulator for this test with cfg's settings and a
// fresh random secret key; SDKAppID and SecretKey in cfg are overwritten.
// It stops when the test ends.
func StartEmulator(t testing.TB, cfg sim.Config) *Emulator {
	t.Helper()
	key := "test-key-" + randomToken() + randomToken()
	cfg.SDKAppID = TestSDKAppID
	cfg.SecretKey = key
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatalf("testenv: start emulator: %v", err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		s.Close()
	})
	return &Emulator{Server: s, URL: hs.URL, SDKAppID: TestSDKAppID, SecretKey: key, Admin: "administrator"}
}
