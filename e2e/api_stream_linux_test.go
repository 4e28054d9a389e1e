package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/timq/timq/internal/testenv"
)

// maxStreamRSS bounds the API's peak RSS while it takes a job of a million
// lines (about 29 MB measured): a server that held the body (about 60 MB)
// or its operations would pass it.
const maxStreamRSS = 64 << 20

// A job body of 1,000,000 lines is read as a stream: the API's peak RSS
// stays bounded, and the job holds every operation.
func TestAPIStreamsAMillionLineJob(t *testing.T) {
	t.Parallel()
	n := testenv.Scale(1_000_000, 1)
	r := testenv.Redis(t)
	env := testenv.ChildEnv("TIMQ_REDIS_URL=" + r.URL())
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	a := testenv.Start(t, "api", env, testenv.Binary(t), "api", "--addr", addr, "--log-level", "warn")
	testenv.WaitFor(t, 30*time.Second, "the API answers", func() bool {
		resp, err := http.Get("http://" + addr + "/openapi.json")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 64<<10)
		ops := []string{`{"op":"clear","GroupId":"g%d","MsgSeq":%d}`, `{"op":"recall","GroupId":"g%d","MsgSeqList":[{"MsgSeq":%d}]}`, `{"op":"modify","GroupId":"g%d","MsgSeq":%d,"CloudCustomData":"x"}`}
		for i := range n {
			fmt.Fprintf(bw, ops[i%3]+"\n", i%100, i+1)
		}
		pw.CloseWithError(bw.Flush())
	}()
	start := time.Now()
	resp, err := http.Post("http://"+addr+"/v1/jobs?name=million", "application/x-ndjson", pr)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	var created struct {
		Job struct {
			ID     string
			Counts struct{ Total int64 } `json:"counts"`
		} `json:"job"`
	}
	if resp.StatusCode != 201 || json.Unmarshal(body, &created) != nil || created.Job.Counts.Total != int64(n) {
		t.Fatalf("POST /v1/jobs of %d lines: %d %.300s", n, resp.StatusCode, body)
	}
	rss := peakRSS(t, a.Cmd.Process.Pid)
	t.Logf("job of %d lines created over HTTP in %v; the API's peak RSS %.1f MB", n, took.Round(time.Millisecond), float64(rss)/(1<<20))
	if rss > maxStreamRSS {
		t.Errorf("the API's peak RSS was %.1f MB taking the job, want at most %d MB", float64(rss)/(1<<20), maxStreamRSS>>20)
	}
}

// peakRSS reads a process's VmHWM in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
