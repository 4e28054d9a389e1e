package chaos

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/dlq"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/worker"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// rig is one test's Redis database, emulator and clients.
type rig struct {
	t      *testing.T
	redis  *testenv.RedisDB
	url    string // TIMQ_REDIS_URL of the database
	conn   asynq.RedisConnOpt
	emu    *testenv.Emulator
	client *asynq.Client
	insp   *asynq.Inspector
	store  *dlq.Store
}

// newRig gives the test a Redis database (testenv: real or miniredis) and
// an emulator with simCfg.
func newRig(t *testing.T, simCfg sim.Config) *rig {
	t.Helper()
	r := testenv.Redis(t)
	return newRigOn(t, r.ConnOpt(), r.URL(), r.Client(t), simCfg, r)
}

func newRigOn(t *testing.T, conn asynq.RedisClientOpt, url string, rdb redis.UniversalClient, simCfg sim.Config, r *testenv.RedisDB) *rig {
	t.Helper()
	g := &rig{t: t, redis: r, url: url, conn: conn, emu: testenv.StartEmulator(t, simCfg)}
	g.client = asynq.NewClient(conn)
	t.Cleanup(func() { g.client.Close() })
	g.insp = asynq.NewInspector(conn)
	t.Cleanup(func() { g.insp.Close() })
	g.store = dlq.New(rdb)
	return g
}

// workerConfig is an in-process worker's config for the rig, with test
// timings: retries from 50 ms up to 1 s, due retries moved every 100 ms.
func (g *rig) workerConfig() worker.Config {
	return worker.Config{
		Redis:           g.conn,
		API:             worker.API{SDKAppID: g.emu.SDKAppID, SecretKey: g.emu.SecretKey, BaseURL: g.emu.URL, Timeout: 2 * time.Second},
		MaxRetry:        25,
		RetryBase:       50 * time.Millisecond,
		RetryCap:        time.Second,
		ThrottleDelay:   100 * time.Millisecond,
		PollInterval:    100 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second,
		Logger:          testLogger(g.t, slog.LevelWarn),
	}
}

func (g *rig) startWorker(cfg worker.Config) *worker.Worker {
	g.t.Helper()
	w, err := worker.New(cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.t.Cleanup(w.Shutdown)
	return w
}

// workerEnv is the environment of a `timq worker` child for the rig.
func (g *rig) workerEnv(extra ...string) []string {
	return testenv.ChildEnv(append([]string{
		"TIMQ_REDIS_URL=" + g.url,
		"TIMQ_SDKAPPID=" + strconv.FormatUint(g.emu.SDKAppID, 10),
		"TIMQ_SECRET_KEY=" + g.emu.SecretKey,
		"TIMQ_API_BASE=" + g.emu.URL,
	}, extra...)...)
}

// startWorkerProc starts `timq worker` as a child process and waits until
// it has started its servers.
func (g *rig) startWorkerProc(name string, env []string, args ...string) *testenv.Proc {
	g.t.Helper()
	args = append([]string{"worker", "--log-format", "json", "--log-level", "info"}, args...)
	p := testenv.Start(g.t, name, env, testenv.Binary(g.t), args...)
	p.WaitLine(`"worker started"`, 30*time.Second)
	return p
}

// counts reads asynq's queue counts or fails.
func (g *rig) counts() testenv.Counts {
	g.t.Helper()
	c, err := testenv.QueueCounts(g.insp)
	if err != nil {
		g.t.Fatal(err)
	}
	return c
}

func elapsed(start time.Time) string {
	return fmt.Sprint(time.Since(start).Round(10 * time.Millisecond))
}

// testLogger logs at level and above through t.Log, the first 300 lines
// only (a fault storm logs thousands of retries); the rest are counted and
// the count logged when the test ends.
func testLogger(t *testing.T, level slog.Level) *slog.Logger {
	w := &cappedLog{t: t, max: 300}
	t.Cleanup(w.stop)
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

type cappedLog struct {
	t       *testing.T
	mu      sync.Mutex
	n, max  int
	stopped bool
}

func (w *cappedLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	if !w.stopped && w.n <= w.max {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func (w *cappedLog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped && w.n > w.max {
		w.t.Logf("(%d more worker log lines not shown)", w.n-w.max)
	}
	w.stopped = true
}
