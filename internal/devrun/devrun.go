// Package devrun runs all of timq in one process for a first look: an
// embedded Redis (miniredis), the API emulator with a few injected faults,
// a worker, the asynqmon dashboard and a steady stream of sample work, some
// of which is meant to fail, so that tasks are seen to flow, retry and
// dead-letter.
package devrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/api"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/dashboard"
	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/worker"
)

// Options configures Run.
type Options struct {
	// DashboardAddr is where the dashboard listens. Defaults to 127.0.0.1:8080.
	DashboardAddr string
	// SampleRate is how many sample operations are queued per second, from
	// MinSampleRate to MaxSampleRate. Defaults to 20; negative means none.
	SampleRate float64
	// Duration stops the run after this long; 0 runs until ctx ends.
	Duration time.Duration
	// Logger receives the worker's logs. Defaults to slog.Default().
	Logger *slog.Logger
	// Ready, when set, is called once everything listens.
	Ready func(Endpoints)
}

// MinSampleRate and MaxSampleRate bound Options.SampleRate, per second.
const (
	MinSampleRate = 0.001
	MaxSampleRate = 1e3
)

// CheckSampleRate returns an error saying what is wrong with rate as
// Options.SampleRate, or nil: NaN, or a positive rate out of bounds, whose
// interval between operations a ticker cannot take.
func CheckSampleRate(rate float64) error {
	if math.IsNaN(rate) || rate > MaxSampleRate || (rate > 0 && rate < MinSampleRate) {
		return fmt.Errorf("must be negative (none) or from %g to %g per second, got %v", MinSampleRate, MaxSampleRate, rate)
	}
	return nil
}

// Endpoints tells where the parts of a running dev setup are.
type Endpoints struct {
	DashboardURL string
	APIURL       string // the HTTP API, on the dashboard's port
	RedisURL     string
	EmulatorURL  string
}

// Run starts everything, calls opts.Ready, and runs until ctx ends or
// opts.Duration passes; it then stops the sample work, the worker, the
// dashboard, the emulator and Redis, in that order.
func Run(ctx context.Context, opts Options) error {
	if opts.DashboardAddr == "" {
		opts.DashboardAddr = "127.0.0.1:8080"
	}
	if opts.SampleRate == 0 {
		opts.SampleRate = 20
	}
	if err := CheckSampleRate(opts.SampleRate); err != nil {
		return fmt.Errorf("devrun: SampleRate: %w", err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Duration)
		defer cancel()
	}

	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("start embedded Redis: %w", err)
	}
	defer mr.Close()
	redisOpt := asynq.RedisClientOpt{Addr: mr.Addr()}

	// The dev dashboard has no credentials, so it stays on loopback.
	if err := dashboard.CheckAddr(opts.DashboardAddr, dashboard.Auth{}); err != nil {
		return fmt.Errorf("--addr: %w", err)
	}
	dashLn, err := net.Listen("tcp", opts.DashboardAddr)
	if err != nil {
		return fmt.Errorf("dashboard: listen on %s: %w (choose another with --addr)", opts.DashboardAddr, err)
	}
	// A fresh key per run: the emulator and the worker share it in memory
	// only; so do the emulator and the API the callback token.
	key, cbToken := randomKey(), randomKey()
	const appID = 1400000000
	emu, err := sim.New(sim.Config{SDKAppID: appID, SecretKey: key, Seed: time.Now().UnixNano(), Faults: sampleFaults(),
		Callbacks: &sim.Callbacks{URL: "http://" + dashLn.Addr().String() + "/v1/callbacks/tencent", Token: cbToken}})
	if err != nil {
		dashLn.Close()
		return err
	}
	defer emu.Close()
	emuLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("emulator: %w", err)
	}
	emuSrv := &http.Server{Handler: emu, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = emuSrv.Serve(emuLn) }()
	defer emuSrv.Close()
	emuURL := "http://" + emuLn.Addr().String()
	if err := seedGroups(emu); err != nil {
		return err
	}

	w, err := worker.New(worker.Config{
		Redis:       redisOpt,
		API:         worker.API{SDKAppID: appID, SecretKey: key, BaseURL: emuURL},
		Concurrency: 20,
		Logger:      opts.Logger,
		// The playground shows every outcome on the dashboard.
		AppliedResults: true,
	})
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Shutdown()

	dash, err := dashboard.New(dashboard.Config{Redis: redisOpt, Logger: opts.Logger})
	if err != nil {
		dashLn.Close()
		return err
	}
	defer dash.Close()
	// The HTTP API beside it, on loopback without tokens like the dashboard.
	// It takes the emulator's after-send callbacks into the message index.
	idx := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer idx.Close()
	index := msgindex.New(idx, 0)
	// Its access log would print a line for each of the emulator's
	// thousands of callbacks: only its warnings and errors are shown.
	apiLog := slog.New(minLevel{opts.Logger.Handler(), slog.LevelWarn})
	apiSrv, err := api.New(api.Config{Redis: redisOpt, Logger: apiLog,
		Callbacks: &api.Callbacks{SDKAppID: appID, Token: cbToken, Index: index}})
	if err != nil {
		dashLn.Close()
		return err
	}
	defer apiSrv.Close()
	mux := http.NewServeMux()
	mux.Handle("/v1/", apiSrv)
	mux.Handle("/openapi.json", apiSrv)
	mux.Handle("/openapi.yaml", apiSrv)
	mux.Handle("/", dash)
	dashSrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = dashSrv.Serve(dashLn) }()
	defer dashSrv.Close()

	if opts.Ready != nil {
		opts.Ready(Endpoints{
			DashboardURL: "http://" + dashLn.Addr().String() + "/",
			APIURL:       "http://" + dashLn.Addr().String() + "/v1/",
			RedisURL:     "redis://" + mr.Addr(),
			EmulatorURL:  emuURL,
		})
	}

	producer := enqueue.New(redisOpt)
	defer producer.Close()
	if opts.SampleRate > 0 {
		id, err := startSampleJob(ctx, emu, producer)
		if err != nil {
			return fmt.Errorf("sample job: %w", err)
		}
		opts.Logger.Info("sample job queued", "job_id", id, "operations", sampleJobSize)
		go purgeSampleSpammer(ctx, emuURL, appID, key, index, producer, opts.Logger)
		produceSamples(ctx, producer, emulatorMessages(emu), opts.SampleRate, opts.Logger)
	}
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return ctx.Err()
}

// sampleFaults makes the emulator fail now and then, as Tencent does, so
// retries show up on the dashboard.
func sampleFaults() map[chatapi.Endpoint]sim.Faults {
	lat, jit := 40*time.Millisecond, 20*time.Millisecond
	return map[chatapi.Endpoint]sim.Faults{
		chatapi.EndpointClear:  {Codes: map[int]float64{10002: 0.05}, HTTP502: 0.02, Latency: lat, Jitter: jit},
		chatapi.EndpointRecall: {Codes: map[int]float64{10002: 0.08}, Latency: lat, Jitter: jit},
		chatapi.EndpointModify: {Codes: map[int]float64{20004: 0.04, 20005: 0.03, 91000: 0.03}, Latency: lat, Jitter: jit},
	}
}

func randomKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// minLevel is a slog.Handler that drops records below min.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(as []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(as), h.min}
}
func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}
