package sim_test

import (
	"fmt"
	"net/http/httptest"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
)

// An emulator with one seeded group, flaky clears, and state checked after
// the fact. Tests point chatapi.Client (or the worker) at ts.URL.
func Example() {
	srv, err := sim.New(sim.Config{SDKAppID: 1400000001, SecretKey: "key", Seed: 1})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()

	srv.CreateGroup("@TGS#2J4SZEAEL", sim.GroupPublic)
	first, last, _ := srv.AddMessages("@TGS#2J4SZEAEL", "", 5)
	srv.SetFaults(chatapi.EndpointClear, sim.Faults{Codes: map[int]float64{10002: 0.1}})

	m, _ := srv.Message("@TGS#2J4SZEAEL", "", 3)
	fmt.Println(first, last, m.Cleared, m.Recalled)
	// Output: 1 5 false false
}
