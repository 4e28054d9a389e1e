package bench

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/tasks"
)

// Yardstick is what this machine charges in CPU for two fixed pieces of
// work, measured in the bench process before any worker starts. The
// workers' CPU per call depends on the machine as much as on timq (the same
// commit measured 0.26 and 0.63-0.73 CPU s per 1k calls with one worker on
// two machines of the same kind), so a run's CPU figures are comparable
// with another's only next to their yardsticks.
type Yardstick struct {
	// PingCPU is the CPU time (user+system) of one Redis PING round trip
	// from a serial go-redis client over loopback: system calls, wake-ups
	// and the loopback network path, which dominate a worker's cost.
	PingCPU time.Duration
	// DecodeCPU is the CPU time of parsing one modify payload with
	// tasks.ParseModify, as the worker does for each task: Go code alone.
	DecodeCPU time.Duration
}

// Yardstick sizes: enough work for a stable figure, under a second.
const (
	yardstickPings   = 3000
	yardstickDecodes = 20000
)

// measureYardstick measures the yardstick against rdb. It runs while the
// bench process does nothing else, so the process's CPU time is the work's.
// It is a rough gauge: on one machine, five measurements in a row ranged
// over about a fifth of their mean.
func measureYardstick(ctx context.Context, rdb *redis.Client) (Yardstick, error) {
	var y Yardstick
	// Warm the connection and the code paths first.
	for range 50 {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return y, fmt.Errorf("yardstick: PING: %w", err)
		}
	}
	cpu, err := processCPU(func() error {
		for range yardstickPings {
			if err := rdb.Ping(ctx).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return y, fmt.Errorf("yardstick: PING: %w", err)
	}
	y.PingCPU = cpu / yardstickPings

	payload := []byte(`{"GroupId":"@TGS#2J4SZEAEL","MsgSeq":123456,"MsgBody":[{"MsgType":"TIMTextElem",` +
		`"MsgContent":{"Text":"this message was edited by a moderator"}}],"CloudCustomData":"{\"edited\":true}"}`)
	if _, err := tasks.ParseModify(payload); err != nil {
		return y, fmt.Errorf("yardstick: payload: %w", err)
	}
	cpu, err = processCPU(func() error {
		for range yardstickDecodes {
			if _, err := tasks.ParseModify(payload); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return y, fmt.Errorf("yardstick: decode: %w", err)
	}
	y.DecodeCPU = cpu / yardstickDecodes
	return y, nil
}

// processCPU runs fn and returns the user plus system CPU time the whole
// process used meanwhile (getrusage, microsecond resolution).
func processCPU(fn func() error) (time.Duration, error) {
	var before, after syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &before); err != nil {
		return 0, err
	}
	if err := fn(); err != nil {
		return 0, err
	}
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &after); err != nil {
		return 0, err
	}
	tv := func(t syscall.Timeval) time.Duration {
		return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
	}
	return tv(after.Utime) - tv(before.Utime) + tv(after.Stime) - tv(before.Stime), nil
}

// String describes the yardstick for the report.
func (y Yardstick) String() string {
	if y.PingCPU <= 0 {
		return "not measured"
	}
	return fmt.Sprintf("a Redis PING round trip costs %.1f µs of client CPU, parsing a modify payload %.1f µs",
		float64(y.PingCPU)/float64(time.Microsecond), float64(y.DecodeCPU)/float64(time.Microsecond))
}

// InPings expresses a CPU time per call as a number of PING round trips on
// this machine, or 0 when the yardstick was not measured.
func (y Yardstick) InPings(perCall time.Duration) float64 {
	if y.PingCPU <= 0 {
		return 0
	}
	return float64(perCall) / float64(y.PingCPU)
}
