package worker_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
	"github.com/timq/timq/worker"
)

// A stop with the API hung ends within the shutdown timeout plus a second:
// calls still waiting for their answer are cut off, and their tasks go back
// to the queue, neither lost nor dead-lettered.
func TestShutdownTimeoutBoundsTheStopWithAHungAPI(t *testing.T) {
	t.Parallel()
	hang := sim.Faults{Hang: 1, HangFor: time.Minute}
	b := setup(t, sim.Config{Faults: map[chatapi.Endpoint]sim.Faults{
		chatapi.EndpointClear: hang, chatapi.EndpointRecall: hang, chatapi.EndpointModify: hang,
	}})
	b.group("@TGS#hung", sim.GroupPublic, 5)
	b.cfg.API.Timeout = time.Minute // only the shutdown may end the calls
	b.cfg.ShutdownTimeout = time.Second
	w, err := worker.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	b.enqueue(tasks.Clear{GroupId: "@TGS#hung"})
	b.enqueue(tasks.Recall{GroupId: "@TGS#hung", MsgSeqList: []tasks.MsgSeqItem{{MsgSeq: 2}}})
	testenv.WaitFor(t, 10*time.Second, "both calls hang in the emulator", func() bool {
		st := b.emu.Stats().Endpoints
		return st[chatapi.EndpointClear].Hangs == 1 && st[chatapi.EndpointRecall].Hangs == 1
	})

	start := time.Now()
	w.Shutdown()
	if took := time.Since(start); took > b.cfg.ShutdownTimeout+time.Second {
		t.Fatalf("Shutdown took %s with a %s shutdown timeout, want at most a second more", took, b.cfg.ShutdownTimeout)
	}
	c := b.counts()
	if c.pending+c.retry+c.scheduled != 2 || c.archived != 0 || c.completed != 0 || c.active != 0 {
		t.Fatalf("after the stop: %+v; want both tasks back in their queues (pending or retry)", c)
	}
	if n, err := b.dlq.Count(t.Context()); err != nil || n != 0 {
		t.Fatalf("dead letters: %d (%v), want 0", n, err)
	}
}

// countingTransport counts the requests it passes on.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// A caller's own HTTP client sends the worker's API calls.
func TestWorkerUsesTheCallersHTTPClient(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.group("own-client", sim.GroupPublic, 5)
	tr := &countingTransport{}
	b.cfg.API.HTTPClient = &http.Client{Transport: tr}
	b.startWorker()
	b.enqueue(tasks.Clear{GroupId: "own-client"})
	testenv.WaitFor(t, 10*time.Second, "the clear is applied", func() bool {
		m, _ := b.emu.Message("own-client", "", 5)
		return m.Cleared
	})
	if n := tr.n.Load(); n != 1 {
		t.Fatalf("the caller's client sent %d requests, want 1", n)
	}
}

// A worker whose Redis does not answer refuses to start, saying so, and
// never logs that it started.
func TestStartRefusesWithoutRedis(t *testing.T) {
	t.Parallel()
	b := setup(t, sim.Config{})
	b.cfg.Redis = asynq.RedisClientOpt{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond}
	w, err := worker.New(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = w.Start()
	if err == nil || !strings.Contains(err.Error(), "Redis does not answer") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("Start = %v, want an error saying Redis at 127.0.0.1:1 does not answer", err)
	}
	w.Shutdown()
	if strings.Contains(b.logs.String(), "worker started") {
		t.Fatalf("the log says the worker started:\n%s", b.logs.String())
	}
}
