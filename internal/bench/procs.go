package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/PID/stat: 100 on every Linux architecture Go supports.
const clockTicks = 100

// proc is one child process.
type proc struct {
	Name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // Wait's error, valid after done
}

// Pid is the process ID.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to grace for the process to end, then kills
// it, and waits for it.
func (p *proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// procSet starts child processes and stops every one it started. Children
// get their own process group, so a Ctrl-C at the terminal reaches only the
// bench, which stops them in order; and they are killed by the kernel
// (Pdeathsig) if the bench itself dies.
type procSet struct {
	mu    sync.Mutex
	procs []*proc
}

// start runs bin with args; env nil means the bench's own environment.
// Stdout and stderr go to logDir/NAME.log unless stdout is given, in which
// case stdout goes there and stderr to the log.
func (ps *procSet) start(ctx context.Context, name, bin string, args, env []string, logDir string) (*proc, error) {
	return ps.startWith(ctx, name, bin, args, env, logDir, nil)
}

func (ps *procSet) startWith(ctx context.Context, name, bin string, args, env []string, logDir string, stdout io.Writer) (*proc, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{Name: name, cmd: cmd, log: logf, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	return p, nil
}

// stopAll stops every process still running, the last started first, each
// with grace to exit after SIGTERM.
func (ps *procSet) stopAll(grace time.Duration) {
	ps.mu.Lock()
	procs := ps.procs
	ps.procs = nil
	ps.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(grace)
	}
}

// startBusyLoops starts n processes that spin on the CPU until ps stops
// them (or the bench dies: they get SIGKILL with it).
func startBusyLoops(ctx context.Context, ps *procSet, n int, logDir string) error {
	for i := range n {
		if _, err := ps.start(ctx, fmt.Sprintf("busy-%d", i), "sh", []string{"-c", "while :; do :; done"}, nil, logDir); err != nil {
			return fmt.Errorf("busy loop: %w", err)
		}
	}
	return nil
}

// startSim runs `timq sim` on a free loopback port and returns its base URL.
func startSim(ctx context.Context, ps *procSet, bin string, args, env []string, logDir string) (*proc, string, error) {
	pr, pw := io.Pipe()
	p, err := ps.startWith(ctx, "sim", bin, append([]string{"sim", "--addr", "127.0.0.1:0"}, args...), env, logDir, pw)
	if err != nil {
		pw.Close()
		return nil, "", err
	}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "timq sim: listening on "); ok {
				select {
				case addr <- strings.TrimSpace(u):
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() { <-p.done; pw.Close() }()
	select {
	case u := <-addr:
		return p, u, nil
	case <-p.done:
		return nil, "", fmt.Errorf("timq sim exited before listening: %v (see %s)", p.err, filepath.Join(logDir, "sim.log"))
	case <-time.After(15 * time.Second):
		return nil, "", errors.New("timq sim did not say where it listens within 15s")
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
}

// cpuSeconds is a process's user plus system CPU time, from /proc/PID/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from the text of
// /proc/PID/stat; the command name in field 2 may hold spaces and parens.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no ')'")
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 13 {
		return 0, errors.New("/proc stat: too few fields")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %v", err)
	}
	return float64(ut+st) / clockTicks, nil
}

// peakRSS is a process's peak resident set size in bytes (VmHWM).
func peakRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	v, ok := statusField(string(b), "VmHWM")
	if f := strings.Fields(v); ok && len(f) > 0 {
		kb, err := strconv.ParseInt(f[0], 10, 64)
		return kb * 1024, err
	}
	return 0, errors.New("/proc status: no VmHWM")
}

// statusField returns the value of key in the text of a /proc status file
// ("key:\tvalue" lines), trimmed, and whether the key was there.
func statusField(status, key string) (string, bool) {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// childEnv is the bench's environment without any TIMQ_* setting, plus set
// (so a TIMQ_RATE in the caller's shell cannot change what is measured).
func childEnv(set ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIMQ_") {
			out = append(out, kv)
		}
	}
	return append(out, set...)
}

func numCPU() int { return runtime.NumCPU() }

// loadAvg returns the 1, 5 and 15 minute load averages from /proc/loadavg,
// or "?" when it cannot be read.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

// busyMachine reports whether the 1-minute load average in load (as
// loadAvg gives it) is over half the cores: other programs were competing.
func busyMachine(load string) bool {
	f := strings.Fields(load)
	if len(f) == 0 {
		return false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	return err == nil && v > float64(numCPU())/2
}

// cpuTimes is the machine's CPU time so far, in clock ticks summed over
// every core: Steal is the time the hypervisor ran something else while
// this machine's virtual CPUs wanted to run; Total is all of it (user,
// nice, system, idle, iowait, irq, softirq, steal).
type cpuTimes struct{ Steal, Total float64 }

// machineCPU reads cpuTimes from /proc/stat.
func machineCPU() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseProcStat(string(b))
}

// parseProcStat reads the "cpu" line of /proc/stat's text: user, nice,
// system, idle, iowait, irq, softirq and steal (the 8th value; guest time
// is already counted in user).
func parseProcStat(stat string) (cpuTimes, error) {
	for _, l := range strings.Split(stat, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		if len(f) < 9 {
			return cpuTimes{}, fmt.Errorf("/proc/stat: cpu line has %d values, want at least 8", len(f)-1)
		}
		var t cpuTimes
		for i, v := range f[1:9] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return cpuTimes{}, fmt.Errorf("/proc/stat: cpu value %d: %v", i+1, err)
			}
			t.Total += float64(n)
			if i == 7 {
				t.Steal = float64(n)
			}
		}
		return t, nil
	}
	return cpuTimes{}, errors.New("/proc/stat: no cpu line")
}

// sleeps is how many times a process's threads went to sleep waiting for
// something (voluntary context switches, summed over /proc/PID/task/*):
// each is a wake-up later, the dominant CPU cost of a worker that handles
// a few thousand small events a second. A thread that has exited no longer
// counts; the Go runtime rarely ends its threads.
func sleeps(pid int) (int64, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tids, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, t := range tids {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/status")
		if err != nil {
			continue // the thread exited since the listing
		}
		v, err := parseVoluntarySwitches(string(b))
		if err != nil {
			return 0, err
		}
		n += v
	}
	return n, nil
}

// parseVoluntarySwitches reads voluntary_ctxt_switches from the text of
// /proc/PID/task/TID/status.
func parseVoluntarySwitches(status string) (int64, error) {
	if v, ok := statusField(status, "voluntary_ctxt_switches"); ok {
		return strconv.ParseInt(v, 10, 64)
	}
	return 0, errors.New("/proc status: no voluntary_ctxt_switches")
}
