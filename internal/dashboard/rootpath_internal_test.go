package dashboard

import (
	"net/http"
	"strings"
	"testing"
)

// TestNewMuxTurnsARoutingPanicIntoAnError: CheckRootPath keeps these roots
// out of New, and newMux still returns an error for them rather than let
// http.ServeMux panic.
func TestNewMuxTurnsARoutingPanicIntoAnError(t *testing.T) {
	for _, root := range []string{"/", "/x/../y", "/a b", "/{$}"} {
		mux, err := newMux(root, &dlqWeb{}, &jobsWeb{}, http.NotFoundHandler())
		if mux != nil || err == nil {
			t.Errorf("newMux(%q) = %v, %v; want nil and an error", root, mux, err)
			continue
		}
		if want := "cannot route it: parsing "; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("newMux(%q): error %q, want it to start with %q", root, err, want)
		}
	}
	for _, root := range []string{"", "/monitoring"} {
		if mux, err := newMux(root, &dlqWeb{}, &jobsWeb{}, http.NotFoundHandler()); mux == nil || err != nil {
			t.Errorf("newMux(%q) = %v, %v; want a mux", root, mux, err)
		}
	}
}
