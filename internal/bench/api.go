package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/timq/timq/tasks"
)

// The API phase: single-operation enqueues per second over HTTP against
// the Go enqueue client, both with apiClients concurrent clients for
// apiWindow, and the time to create a job of apiJobLines lines over HTTP.
const (
	apiClients  = 16
	apiWindow   = 5 * time.Second
	apiJobLines = 100_000
	apiWarmUp   = time.Second
)

// Targets of the API phase.
const (
	targetAPIRate      = 3000 // enqueues/s over HTTP
	targetAPIRateShare = 0.5  // of the Go client's rate
	targetAPIJob       = 5 * time.Second
)

// APIResult is the API phase's figures.
type APIResult struct {
	Clients  int
	Window   time.Duration
	HTTPRate float64 // enqueues per second over HTTP
	GoRate   float64 // enqueues per second through package enqueue
	// FloorRate is requests per second, with the same clients, to GET
	// /healthz of the same process: what HTTP alone allows on this
	// machine, with no Redis, huma or token check in the path.
	FloorRate   float64
	HTTPErrors  int64
	JobLines    int
	JobWall     time.Duration
	JobErr      string
	HTTPLatency LatencyStat // of one enqueue over HTTP
}

// runAPI measures the HTTP API: a `timq api` process on the bench's Redis,
// with no worker running, so that both producers are measured alone.
func (r *runner) runAPI(ctx context.Context) error {
	res := &APIResult{Clients: apiClients, Window: apiWindow, JobLines: apiJobLines}
	r.res.API = res
	if err := r.reset(ctx, nil); err != nil {
		return err
	}
	base, client, stop, err := r.startAPI(ctx, "api", apiClients)
	if err != nil {
		return err
	}
	defer stop()

	// A second of the same requests first, uncounted: the process, its
	// connections and its heap warm up before the measured window, as the
	// Go client's are by then.
	r.progress("api: warming up for %v", apiWarmUp)
	// Its seqs are far from the window's: a warm-up request the server
	// finishes after the reset would otherwise make one of the window's a
	// duplicate.
	if _, errs := hammer(ctx, apiClients, apiWarmUp, func(ctx context.Context, i int64) error { return postModify(ctx, client, base, 1<<40+i) }); errs > 0 {
		return fmt.Errorf("api: %d errors while warming up", errs)
	}
	if err := r.reset(ctx, nil); err != nil {
		return err
	}
	r.progress("api: %d clients enqueueing over HTTP for %v", apiClients, apiWindow)
	var lat []time.Duration
	var latMu sync.Mutex
	n, errs := hammer(ctx, apiClients, apiWindow, func(ctx context.Context, i int64) error {
		start := time.Now()
		if err := postModify(ctx, client, base, i); err != nil {
			return err
		}
		if i%10 == 0 {
			latMu.Lock()
			lat = append(lat, time.Since(start))
			latMu.Unlock()
		}
		return nil
	})
	res.HTTPRate, res.HTTPErrors = float64(n)/apiWindow.Seconds(), errs
	res.HTTPLatency = latencyStat(lat, 0)
	if err := r.reset(ctx, nil); err != nil {
		return err
	}
	r.progress("api: %d clients calling GET /healthz for %v", apiClients, apiWindow)
	if res.FloorRate, err = httpFloor(ctx, client, base); err != nil {
		return err
	}
	r.progress("api: %d clients enqueueing through package enqueue for %v", apiClients, apiWindow)
	n, _ = hammer(ctx, apiClients, apiWindow, func(ctx context.Context, i int64) error {
		ccd := "b"
		_, err := r.enq.Modify(ctx, tasks.Modify{GroupId: fmt.Sprintf("go-%d", i%1000), MsgSeq: uint64(i + 1), CloudCustomData: &ccd})
		return err
	})
	res.GoRate = float64(n) / apiWindow.Seconds()
	if err := r.reset(ctx, nil); err != nil {
		return err
	}

	r.progress("api: a job of %d lines over HTTP", apiJobLines)
	var body bytes.Buffer
	for i := range apiJobLines {
		fmt.Fprintf(&body, "{\"op\":\"clear\",\"GroupId\":\"apijob-%d\",\"MsgSeq\":%d}\n", i%1000, i+1)
	}
	start := time.Now()
	resp, err := client.Post(base+"/v1/jobs?name=bench-api", "application/x-ndjson", &body)
	if err != nil {
		res.JobErr = err.Error()
		return nil
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	res.JobWall = time.Since(start)
	if resp.StatusCode != http.StatusCreated {
		res.JobErr = fmt.Sprintf("status %d: %.200s", resp.StatusCode, answer)
	}
	return r.reset(ctx, nil)
}

// httpFloor measures requests per second from the API phase's clients to
// GET /healthz of the same `timq api`, which answers "ok" without Redis,
// huma or a token check: what HTTP alone costs on this machine.
func httpFloor(ctx context.Context, client *http.Client, base string) (float64, error) {
	n, errs := hammer(ctx, apiClients, apiWindow, func(ctx context.Context, _ int64) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if err != nil {
			return err
		}
		return send(client, req, http.StatusOK)
	})
	if errs > 0 {
		return 0, fmt.Errorf("api: %d errors from GET /healthz", errs)
	}
	return float64(n) / apiWindow.Seconds(), nil
}

// postModify sends the API phase's request i: a modify of one message.
func postModify(ctx context.Context, client *http.Client, base string, i int64) error {
	body := fmt.Sprintf(`{"GroupId":"api-%d","MsgSeq":%d,"CloudCustomData":"b"}`, i%1000, i+1)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/modify", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return send(client, req, http.StatusAccepted)
}

// send sends req and reads its answer to the end (so that the connection
// is kept), and fails unless its status is want.
func send(client *http.Client, req *http.Request, want int) error {
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// startAPI starts a `timq api` process on the bench's Redis with extra
// environment, waits until it answers, and returns its base URL, a
// keep-alive client of conns connections for it, and how to stop both.
func (r *runner) startAPI(ctx context.Context, name string, conns int, extraEnv ...string) (string, *http.Client, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	env := childEnv(append([]string{fmt.Sprintf("TIMQ_REDIS_URL=redis://%s/%d", r.rdb.Addr, r.rdb.DB)}, extraEnv...)...)
	p, err := r.apps.start(ctx, name, r.cfg.Bin, []string{"api", "--addr", addr, "--log-level", "warn"}, env, r.logDir)
	if err != nil {
		return "", nil, nil, err
	}
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}, Timeout: 30 * time.Second}
	stop := func() {
		client.CloseIdleConnections()
		p.Stop(5 * time.Second)
	}
	if _, err := poll(ctx, 30*time.Second, func() (bool, error) {
		resp, err := client.Get(base + "/openapi.json")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == 200, nil
	}); err != nil {
		stop()
		return "", nil, nil, err
	}
	return base, client, stop, nil
}

// hammer runs op from clients goroutines for window, each call with the
// next number from 1, and returns how many calls succeeded and failed
// (calls cut short by the window's end count as neither).
func hammer(ctx context.Context, clients int, window time.Duration, op func(context.Context, int64) error) (ok, failed int64) {
	ctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	var next, good, bad atomic.Int64
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := op(ctx, next.Add(1))
				switch {
				case err == nil:
					good.Add(1)
				case ctx.Err() == nil:
					bad.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return good.Load(), bad.Load()
}

// apiTable renders the API phase.
func (a *APIResult) apiTable() table {
	t := table{head: []string{"measure", "what", "figure", "target", "met"}}
	add := func(cells ...string) { t.rows = append(t.rows, cells) }
	what := fmt.Sprintf("single modifies, %d concurrent clients, keep-alive, %v", a.Clients, a.Window)
	add("enqueues/s, HTTP API", what, fmt.Sprintf("%.0f/s (%d errors); p50 %s, p99 %s", a.HTTPRate, a.HTTPErrors, a.HTTPLatency.P50.Round(10*time.Microsecond), a.HTTPLatency.P99.Round(10*time.Microsecond)),
		fmt.Sprintf(">= %d/s and >= %.0f%% of Go", targetAPIRate, 100*targetAPIRateShare),
		metCell(a.HTTPRate > 0, a.HTTPRate >= targetAPIRate && a.HTTPRate >= targetAPIRateShare*a.GoRate))
	add("enqueues/s, Go client", "the same, through package enqueue", fmt.Sprintf("%.0f/s (HTTP: %.0f%% of it)", a.GoRate, 100*a.HTTPRate/max(a.GoRate, 1)), "reported", "-")
	add("requests/s, HTTP floor", "GET /healthz of the same process: HTTP alone, no Redis", fmt.Sprintf("%.0f/s (%.0f%% of Go)", a.FloorRate, 100*a.FloorRate/max(a.GoRate, 1)), "reported", "-")
	jobWhat := fmt.Sprintf("POST /v1/jobs of %s NDJSON lines, to the answer", thousands(int64(a.JobLines)))
	if a.JobErr != "" {
		add("job over HTTP", jobWhat, "failed: "+a.JobErr, fmt.Sprintf("<= %v", targetAPIJob), "NO")
	} else {
		add("job over HTTP", jobWhat, fmt.Sprintf("%.2f s", a.JobWall.Seconds()), fmt.Sprintf("<= %v", targetAPIJob), metCell(true, a.JobWall <= targetAPIJob))
	}
	return t
}
