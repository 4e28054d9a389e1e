// Process helpers: build the timq binary once per test binary, start and
// stop child processes (timq, redis-server) with their output in the test
// log, wait for the lines they print when ready, and find free loopback
// ports. Every wait has a deadline, and every child is killed when its test
// ends (and, on Linux, when the test binary dies).

package testenv

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Soak reports whether TIMQ_SOAK is set (make soak): tests then scale their
// counts up. The default sizes run in make test.
func Soak() bool { return os.Getenv("TIMQ_SOAK") != "" }

// Scale returns n, or n*factor under TIMQ_SOAK.
func Scale(n, factor int) int {
	if Soak() {
		return n * factor
	}
	return n
}

var (
	buildOnce sync.Once
	buildDir  string
	buildPath string
	buildErr  error
)

// Main runs the tests of a package that uses Binary and removes the built
// binary afterwards. Call it from TestMain: os.Exit(testenv.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	return code
}

// Binary returns the path of the timq binary, built with `go build` the
// first time a test of this test binary asks. TIMQ_CHAOS_RACE=1 builds it
// with the race detector.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "timq-testenv-bin-")
		if buildErr != nil {
			return
		}
		buildPath = filepath.Join(buildDir, "timq")
		args := []string{"build", "-o", buildPath}
		if os.Getenv("TIMQ_CHAOS_RACE") != "" {
			args = append(args, "-race")
		}
		args = append(args, "github.com/timq/timq/cmd/timq")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool(), args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
			return
		}
		fmt.Fprintf(os.Stderr, "testenv: built %s in %v\n", buildPath, time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatalf("testenv: build timq: %v", buildErr)
	}
	return buildPath
}

// goTool finds the go command: the one of the running toolchain first.
func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ChildEnv returns the environment of a child: this process's environment
// without any TIMQ_* or REDIS_* variable (so a developer's settings never
// leak into a test), plus extra ("NAME=value" each).
func ChildEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TIMQ_") || strings.HasPrefix(kv, "REDIS_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// maxLoggedLines is how many output lines of one child go to the test log
// as they come; the rest are kept, and the last ones are logged if the test
// fails.
const maxLoggedLines = 400

// Proc is a running child process whose stdout and stderr are captured
// line by line, forwarded to the test log and searchable.
type Proc struct {
	Name string
	Cmd  *exec.Cmd

	t       testing.TB
	mu      sync.Mutex
	cond    *sync.Cond
	stdout  []string
	stderr  []string
	all     []string // both, in arrival order, prefixed
	logged  int
	readers sync.WaitGroup
	done    chan struct{} // closed when the process has exited and output is read
	state   *os.ProcessState
	waitErr error
}

// Start starts bin with args and env (see ChildEnv) and returns at once. The
// process is killed when the test ends if it still runs.
func Start(t testing.TB, name string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	setDeathSignal(cmd)
	p := &Proc{Name: name, Cmd: cmd, t: t, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	outR, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("testenv: %s: %v", name, err)
	}
	errR, err := cmd.StderrPipe()
	if err != nil {
		t.Fatalf("testenv: %s: %v", name, err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	p.readers.Add(2)
	go p.read(outR, &p.stdout, "out")
	go p.read(errR, &p.stderr, "err")
	go func() {
		p.readers.Wait()
		err := cmd.Wait()
		p.mu.Lock()
		p.state, p.waitErr = cmd.ProcessState, err
		p.mu.Unlock()
		close(p.done)
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = cmd.Process.Kill()
		}
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("testenv: %s did not exit 10s after SIGKILL", name)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		if t.Failed() && p.logged < len(p.all) {
			from := max(p.logged, len(p.all)-200)
			t.Logf("testenv: %s: last %d of %d output lines (the rest were not logged):", name, len(p.all)-from, len(p.all)-p.logged)
			for _, l := range p.all[from:] {
				t.Log(l)
			}
		}
		p.logged = len(p.all) // nothing more is logged after the test
	})
	return p
}

func (p *Proc) read(r io.Reader, dst *[]string, stream string) {
	defer p.readers.Done()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		*dst = append(*dst, line)
		tagged := p.Name + "[" + stream + "]: " + line
		p.all = append(p.all, tagged)
		if p.logged == len(p.all)-1 && p.logged < maxLoggedLines {
			p.logged++
			p.t.Log(tagged)
		}
		p.cond.Broadcast()
		p.mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// WaitLine waits up to within for a line of the process's output (stdout or
// stderr) containing substr and returns it. It fails the test if the process
// exits first or the time runs out.
func (p *Proc) WaitLine(substr string, within time.Duration) string {
	p.t.Helper()
	deadline := time.Now().Add(within)
	timer := time.AfterFunc(within, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := 0
	for {
		for ; seen < len(p.all); seen++ {
			if strings.Contains(p.all[seen], substr) {
				_, line, _ := strings.Cut(p.all[seen], "]: ")
				return line
			}
		}
		if p.state != nil {
			p.t.Fatalf("testenv: %s exited (%v) before printing %q", p.Name, p.state, substr)
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("testenv: %s did not print %q within %v", p.Name, substr, within)
		}
		p.cond.Wait()
	}
}

// Stdout returns the lines printed on stdout so far.
func (p *Proc) Stdout() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.stdout...)
}

// Stderr returns the lines printed on stderr so far.
func (p *Proc) Stderr() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.stderr...)
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil && !p.Exited() {
		p.t.Fatalf("testenv: signal %v to %s: %v", sig, p.Name, err)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *Proc) Kill() {
	p.t.Helper()
	_ = p.Cmd.Process.Kill()
	if _, err := p.Wait(10 * time.Second); err != nil {
		p.t.Fatalf("testenv: %s: %v", p.Name, err)
	}
}

// Exited reports whether the process has exited (and its output is read).
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ErrStillRunning is returned by Wait when the process outlives the wait.
var ErrStillRunning = errors.New("still running")

// Wait waits up to within for the process to exit and returns its exit
// code (-1 when killed by a signal).
func (p *Proc) Wait(within time.Duration) (int, error) {
	select {
	case <-p.done:
	case <-time.After(within):
		return 0, fmt.Errorf("%s: %w after %v", p.Name, ErrStillRunning, within)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.ExitCode(), nil
}

// Result is the outcome of a command run to completion by Run.
type Result struct {
	Code   int
	Stdout string
	Stderr string
}

// Run runs bin with args and env to completion, with stdin as its input (or
// none), and fails the test if it takes longer than within. Output goes to
// the test log.
func Run(t testing.TB, env []string, stdin io.Reader, within time.Duration, bin string, args ...string) Result {
	t.Helper()
	return run(t, true, env, stdin, within, bin, args...)
}

// RunQuiet is Run without the output in the test log (for polling).
func RunQuiet(t testing.TB, env []string, stdin io.Reader, within time.Duration, bin string, args ...string) Result {
	t.Helper()
	return run(t, false, env, stdin, within, bin, args...)
}

func run(t testing.TB, logged bool, env []string, stdin io.Reader, within time.Duration, bin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	cmd.Stdin = stdin
	setDeathSignal(cmd)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	name := filepath.Base(bin) + " " + strings.Join(args, " ")
	if ctx.Err() != nil {
		t.Fatalf("testenv: %s: still running after %v\nstdout:\n%s\nstderr:\n%s", name, within, out.String(), errOut.String())
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("testenv: %s: %v", name, err)
	}
	res := Result{Code: cmd.ProcessState.ExitCode(), Stdout: out.String(), Stderr: errOut.String()}
	if !logged {
		return res
	}
	t.Logf("$ %s  # exit %d in %v", name, res.Code, time.Since(start).Round(time.Millisecond))
	logBlock(t, "  stdout", res.Stdout)
	logBlock(t, "  stderr", res.Stderr)
	return res
}

func logBlock(t testing.TB, tag, s string) {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 60 {
		lines = append(lines[:60], fmt.Sprintf("... %d more lines", len(lines)-60))
	}
	for _, l := range lines {
		t.Logf("%s: %s", tag, l)
	}
}

// RedisServer is a redis-server the test runs itself, with append-only
// persistence fsynced on every write, so it can be killed and started again
// on the same port without losing an acknowledged write.
type RedisServer struct {
	Addr string
	Port int
	bin  string
	dir  string
	t    testing.TB
	proc *Proc
	runs int
}

// StartRedisServer starts redis-server on a free loopback port with
// --appendonly yes --appendfsync always in a directory of the test's own.
// Without a redis-server binary the test fails under CI=true and is skipped
// otherwise.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testenv: redis-server is not installed (CI=true requires it): %v", err)
		}
		t.Skipf("testenv: redis-server is not installed, so the restart test cannot run: %v", err)
	}
	port := FreePort(t)
	r := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), Port: port, bin: bin, dir: t.TempDir(), t: t}
	r.Start()
	return r
}

// URL returns the redis:// URL of database db.
func (r *RedisServer) URL(db int) string { return fmt.Sprintf("redis://%s/%d", r.Addr, db) }

// Start starts the server (again) on its port and waits until it answers
// PING, having loaded its append-only file.
func (r *RedisServer) Start() {
	r.t.Helper()
	r.runs++
	r.proc = Start(r.t, fmt.Sprintf("redis-server#%d", r.runs), ChildEnv(), r.bin,
		"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--protected-mode", "no",
		"--dir", r.dir, "--appendonly", "yes", "--appendfsync", "always", "--save", "",
		"--daemonize", "no", "--logfile", "", "--loglevel", "warning")
	deadline := time.Now().Add(20 * time.Second)
	for {
		if err := redisPing(r.Addr); err == nil {
			return
		} else if time.Now().After(deadline) {
			r.t.Fatalf("testenv: redis-server on %s does not answer PING: %v", r.Addr, err)
		}
		if r.proc.Exited() {
			r.t.Fatalf("testenv: redis-server on %s exited at start", r.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill kills the server with SIGKILL (no shutdown save) and waits for it.
func (r *RedisServer) Kill() {
	r.t.Helper()
	r.proc.Kill()
}

// redisPing sends PING over a raw connection and wants +PONG (not LOADING).
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return errors.New(strings.TrimSpace(line))
	}
	return nil
}

// Eventually polls cond until it reports done or within passes; then it
// fails the test with what and the state cond last described. It is the one
// way tests wait for a condition they cannot be told about.
func Eventually(t testing.TB, within time.Duration, what string, cond func() (done bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state == "" {
				t.Fatalf("%s: not reached within %v", what, within)
			}
			t.Fatalf("%s: not reached within %v: %s", what, within, state)
		}
		time.Sleep(pollInterval)
	}
}

// WaitFor is Eventually for a condition with no state to report.
func WaitFor(t testing.TB, within time.Duration, what string, ok func() bool) {
	t.Helper()
	Eventually(t, within, what, func() (bool, string) { return ok(), "" })
}

// pollInterval is how often Eventually looks: short next to the waits it
// serves (hundreds of milliseconds and up), long enough not to load Redis.
const pollInterval = 10 * time.Millisecond
