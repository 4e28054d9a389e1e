package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

const sendBody = `{"GroupId":"G","MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"x"}}]}`

// TestSlidingWindowExact drives the limiter with random arrival times and
// compares every admission with a brute-force count over the window.
func TestSlidingWindowExact(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		rate   int
		window time.Duration
	}{{5, time.Second}, {20, time.Second}, {3, 250 * time.Millisecond}} {
		t.Run(fmt.Sprintf("%d per %v", tt.rate, tt.window), func(t *testing.T) {
			t.Parallel()
			clock := newClock()
			f := setup(t, Config{Now: clock.Now, Rate: tt.rate, Window: tt.window})
			f.group("G", GroupPublic, 0)
			rng := rand.New(rand.NewPCG(1, 2))
			var admitted []time.Time
			sent := 0
			for i := 0; i < 600; i++ {
				clock.Advance(time.Duration(rng.IntN(int(tt.window/time.Millisecond)/tt.rate*2+1)) * time.Millisecond)
				now := clock.Now()
				inWindow := 0
				for _, a := range admitted {
					if now.Sub(a) < tt.window {
						inWindow++
					}
				}
				want := 0
				if inWindow >= tt.rate {
					want = CodePublicRateLimited
				}
				env := f.call(chatapi.EndpointSend, sendBody, nil)
				if env.ErrorCode != want {
					t.Fatalf("call %d at +%v: ErrorCode %d, want %d (%d admitted in window)", i, now.Sub(f.srv.Stats().Start), env.ErrorCode, want, inWindow)
				}
				if want == 0 {
					admitted = append(admitted, now)
					sent++
				}
			}
			st := f.srv.Stats()
			if got := f.msgCount("G"); got != uint64(sent) {
				t.Fatalf("group has %d messages, %d calls admitted: a refused call changed state", got, sent)
			}
			es := st.Endpoints[chatapi.EndpointSend]
			if es.Codes[CodePublicRateLimited] == 0 {
				t.Fatal("the test never hit the limit")
			}
			if tt.window == time.Second && es.MaxAdmittedPerSecond != int64(tt.rate) {
				t.Fatalf("MaxAdmittedPerSecond = %d, want %d", es.MaxAdmittedPerSecond, tt.rate)
			}
			if es.Calls != 600 || es.Codes[0]+es.Codes[CodePublicRateLimited] != 600 {
				t.Fatalf("stats = %+v", es)
			}
		})
	}
}

func (f *fixture) msgCount(id string) uint64 {
	g, _ := f.srv.Group(id)
	return g.MaxSeq
}

func TestSlidingWindowBoundary(t *testing.T) {
	t.Parallel()
	clock := newClock()
	f := setup(t, Config{Now: clock.Now, Rate: 3})
	f.group("G", GroupPublic, 0)
	step := func(d time.Duration, want ...int) {
		t.Helper()
		clock.Advance(d)
		for i, w := range want {
			if env := f.call(chatapi.EndpointSend, sendBody, nil); env.ErrorCode != w {
				t.Fatalf("after +%v call %d: ErrorCode %d, want %d", d, i, env.ErrorCode, w)
			}
		}
	}
	step(0, 0, 0)                        // t=0: two
	step(500*time.Millisecond, 0, 60007) // t=0.5: third, then full
	step(499*time.Millisecond, 60007)    // t=0.999: still full
	step(time.Millisecond, 0, 0, 60007)  // t=1.0: the two from t=0 left the window
	step(499*time.Millisecond, 60007)    // t=1.499
	step(time.Millisecond, 0, 60007)     // t=1.5: the one from t=0.5 left
	st := f.srv.Stats().Endpoints[chatapi.EndpointSend]
	if st.MaxAdmittedPerSecond != 3 || st.MaxPerSecond != 7 { // (0.499s, 1.499s] holds 2+1+3+1 calls
		t.Fatalf("MaxAdmittedPerSecond %d (want 3), MaxPerSecond %d (want 7)", st.MaxAdmittedPerSecond, st.MaxPerSecond)
	}
	// Other endpoints have their own window.
	if env := f.call(chatapi.EndpointGetSimple, `{"GroupId":"G","ReqMsgNumber":1}`, nil); env.ErrorCode != 0 {
		t.Fatalf("get_simple limited by send's window: %d", env.ErrorCode)
	}
}

func TestUnlimitedRate(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{Rate: -1, Now: newClock().Now})
	f.group("G", GroupPublic, 0)
	for i := 0; i < 500; i++ {
		if env := f.call(chatapi.EndpointSend, sendBody, nil); env.ErrorCode != 0 {
			t.Fatalf("call %d: %d", i, env.ErrorCode)
		}
	}
}

// answers makes n sends and records each answer as "HTTP/code".
func answers(t *testing.T, seed int64, n int, faults Faults) ([]string, *fixture) {
	f := setup(t, Config{Seed: seed, Rate: -1, Faults: map[chatapi.Endpoint]Faults{chatapi.EndpointSend: faults}})
	f.group("G", GroupPublic, 0)
	var out []string
	for i := 0; i < n; i++ {
		rec := f.raw("POST", "/v4/"+string(chatapi.EndpointSend), f.query(), sendBody)
		var env chatapi.Envelope
		json.Unmarshal(rec.Body.Bytes(), &env)
		out = append(out, fmt.Sprintf("%d/%d", rec.Code, env.ErrorCode))
	}
	return out, f
}

func TestFaultsDeterministic(t *testing.T) {
	t.Parallel()
	faults := Faults{Codes: map[int]float64{10002: 0.2, 20005: 0.1}, HTTP502: 0.1}
	a, fa := answers(t, 42, 300, faults)
	b, _ := answers(t, 42, 300, faults)
	c, _ := answers(t, 43, 300, faults)
	if strings.Join(a, " ") != strings.Join(b, " ") {
		t.Fatal("same seed gave different answers")
	}
	if strings.Join(a, " ") == strings.Join(c, " ") {
		t.Fatal("different seeds gave the same answers")
	}
	count := map[string]int{}
	for _, x := range a {
		count[x]++
	}
	if count["200/10002"] < 30 || count["200/20005"] < 10 || count["502/0"] < 10 || count["200/0"] < 150 {
		t.Fatalf("outcome counts far from the probabilities: %v", count)
	}
	// Faulted calls changed nothing: one message per OK.
	if got := fa.msgCount("G"); got != uint64(count["200/0"]) {
		t.Fatalf("%d messages after %d OK answers", got, count["200/0"])
	}
	st := fa.srv.Stats().Endpoints[chatapi.EndpointSend]
	if st.HTTP502 != int64(count["502/0"]) || st.Codes[10002] != int64(count["200/10002"]) || st.Calls != 300 {
		t.Fatalf("stats = %+v, counts %v", st, count)
	}
	// Reset repeats the sequence.
	fa.srv.Reset()
	fa.group("G", GroupPublic, 0)
	for i, want := range a[:50] {
		rec := fa.raw("POST", "/v4/"+string(chatapi.EndpointSend), fa.query(), sendBody)
		var env chatapi.Envelope
		json.Unmarshal(rec.Body.Bytes(), &env)
		if got := fmt.Sprintf("%d/%d", rec.Code, env.ErrorCode); got != want {
			t.Fatalf("after Reset call %d = %s, want %s", i, got, want)
		}
	}
}

func Test502IsHTML(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{Faults: map[chatapi.Endpoint]Faults{chatapi.EndpointClear: {HTTP502: 1}}})
	f.group("G", GroupPublic, 2)
	rec := f.raw("POST", "/v4/"+string(chatapi.EndpointClear), f.query(), `{"GroupId":"G"}`)
	if rec.Code != http.StatusBadGateway || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") || !strings.Contains(rec.Body.String(), "<html>") {
		t.Fatalf("answer %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	if f.msg("G", "", 2).Cleared {
		t.Fatal("a 502 cleared messages")
	}
}

func TestFaultsAfterAuth(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{Faults: map[chatapi.Endpoint]Faults{chatapi.EndpointClear: {HTTP502: 1}}})
	rec := f.raw("POST", "/v4/"+string(chatapi.EndpointClear), f.query(func(q url.Values) { q.Del("usersig") }), `{"GroupId":"G"}`)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "70002") {
		t.Fatalf("unauthenticated call got %d %s", rec.Code, rec.Body)
	}
}

// live serves f.srv over loopback.
func live(t *testing.T, f *fixture) *httptest.Server {
	ts := httptest.NewServer(f.srv)
	t.Cleanup(ts.Close)
	t.Cleanup(f.srv.Close) // runs first: ends hangs so ts.Close does not wait
	return ts
}

func (f *fixture) post(ctx context.Context, ts *httptest.Server, ep chatapi.Endpoint, body string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v4/"+string(ep)+"?"+f.query().Encode(), strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	resp, err := ts.Client().Do(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	return resp, err
}

func TestHangEndsWhenClientCancels(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{Faults: map[chatapi.Endpoint]Faults{chatapi.EndpointClear: {Hang: 1, HangFor: time.Hour}}})
	f.group("G", GroupPublic, 1)
	ts := live(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := f.post(ctx, ts, chatapi.EndpointClear, `{"GroupId":"G"}`)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("hang lasted %v", d)
	}
	if f.msg("G", "", 1).Cleared {
		t.Fatal("a hung call cleared messages")
	}
	if st := f.srv.Stats().Endpoints[chatapi.EndpointClear]; st.Hangs != 1 || len(st.Codes) != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestHangEndsOnCloseAndAfterHangFor(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{Faults: map[chatapi.Endpoint]Faults{chatapi.EndpointClear: {Hang: 1, HangFor: 50 * time.Millisecond}}})
	ts := live(t, f)
	start := time.Now()
	if _, err := f.post(context.Background(), ts, chatapi.EndpointClear, `{"GroupId":"G"}`); err == nil {
		t.Fatal("a hang that ran out answered")
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("hang ended after %v, before HangFor", d)
	}

	f.srv.SetFaults(chatapi.EndpointClear, Faults{Hang: 1, HangFor: time.Hour})
	done := make(chan error, 1)
	go func() {
		_, err := f.post(context.Background(), ts, chatapi.EndpointClear, `{"GroupId":"G"}`)
		done <- err
	}()
	for f.srv.Stats().Endpoints[chatapi.EndpointClear].Hangs < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	f.srv.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a hang ended by Close answered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the hang")
	}
}

func TestLatencyAndJitter(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{Faults: map[chatapi.Endpoint]Faults{chatapi.EndpointGetSimple: {Latency: 30 * time.Millisecond, Jitter: 20 * time.Millisecond}}})
	f.group("G", GroupPublic, 1)
	for i := 0; i < 5; i++ {
		start := time.Now()
		env := f.call(chatapi.EndpointGetSimple, `{"GroupId":"G","ReqMsgNumber":1}`, nil)
		d := time.Since(start)
		if env.ErrorCode != 0 || d < 30*time.Millisecond || d > 2*time.Second {
			t.Fatalf("call %d: code %d after %v", i, env.ErrorCode, d)
		}
	}
	// A client leaving during the delay is counted as aborted.
	f.srv.SetFaults(chatapi.EndpointGetSimple, Faults{Latency: time.Hour})
	ts := live(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := f.post(ctx, ts, chatapi.EndpointGetSimple, `{"GroupId":"G","ReqMsgNumber":1}`); err == nil {
		t.Fatal("answered during an hour of latency")
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.srv.Stats().Endpoints[chatapi.EndpointGetSimple].Aborted != 1 {
		if time.Now().After(deadline) {
			t.Fatal("aborted call not counted")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSetFaultsValidates(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{})
	for _, bad := range []Faults{
		{HTTP502: -0.1},
		{Hang: 1.5},
		{Codes: map[int]float64{10002: 0.6}, HTTP502: 0.5},
		{Codes: map[int]float64{0: 0.1}},
		{Latency: -time.Second},
	} {
		if err := f.srv.SetFaults(chatapi.EndpointClear, bad); err == nil {
			t.Errorf("SetFaults(%+v) succeeded", bad)
		}
	}
	if err := f.srv.SetFaults("nope/x", Faults{}); err == nil {
		t.Error("SetFaults on an unknown endpoint succeeded")
	}
}

// TestConcurrentCalls hammers one group from many goroutines (run with
// -race): seqs stay dense and every call is counted once.
func TestConcurrentCalls(t *testing.T) {
	t.Parallel()
	f := setup(t, Config{Rate: -1, Faults: map[chatapi.Endpoint]Faults{chatapi.EndpointRecall: {Codes: map[int]float64{10002: 0.3}}}})
	f.group("G", GroupPublic, 0)
	ts := live(t, f)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				if _, err := f.post(context.Background(), ts, chatapi.EndpointSend, sendBody); err != nil {
					t.Error(err)
					return
				}
				if _, err := f.post(context.Background(), ts, chatapi.EndpointRecall, fmt.Sprintf(`{"GroupId":"G","MsgSeqList":[{"MsgSeq":%d}]}`, i+1)); err != nil {
					t.Error(err)
					return
				}
				_ = f.srv.Stats()
			}
		}()
	}
	wg.Wait()
	st := f.srv.Stats()
	if f.msgCount("G") != 200 || st.Endpoints[chatapi.EndpointSend].Codes[0] != 200 || st.Endpoints[chatapi.EndpointRecall].Calls != 200 {
		t.Fatalf("stats = %+v", st)
	}
	if rc := st.Endpoints[chatapi.EndpointRecall]; rc.Codes[0]+rc.Codes[10002] != 200 || st.MessagesRecalled > 25 {
		t.Fatalf("recall stats = %+v, recalled %d", rc, st.MessagesRecalled)
	}
}
