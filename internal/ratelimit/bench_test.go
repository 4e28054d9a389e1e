package ratelimit

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/timq/timq/internal/testenv"
)

// cpuTime returns the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSharedWait measures the CPU one grant of a Shared limiter costs
// this process (its goroutines' wake-ups, timers and Redis commands; not
// Redis's own CPU) with 100 goroutines waiting, as a worker's endpoint has
// under a backlog. The budget is 200/s, as in production; the reported
// cpu-us/grant is what to compare (ns/op is mostly the pacing).
func BenchmarkSharedWait(b *testing.B) {
	r := testenv.Redis(b)
	s := NewShared(r.Client(b), "bench:wait", 200)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var granted sync.WaitGroup
	granted.Add(b.N)
	var wg sync.WaitGroup
	var mu sync.Mutex
	left := b.N
	b.ResetTimer()
	start := cpuTime(b)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s.Wait(ctx) == nil {
				mu.Lock()
				if left == 0 {
					mu.Unlock()
					return
				}
				left--
				mu.Unlock()
				granted.Done()
			}
		}()
	}
	granted.Wait()
	used := cpuTime(b) - start
	b.StopTimer()
	cancel()
	wg.Wait()
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "cpu-us/grant")
	st := s.Stats()
	b.ReportMetric(float64(st.Commands)/float64(b.N), "cmds/grant")
	b.ReportMetric(float64(st.Wasted)/float64(b.N), "wasted/grant")
}
