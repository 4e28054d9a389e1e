package devrun

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// TestDevRunShowsWorkFlowingAndDeadLettering runs the zero-setup mode for a
// few seconds and checks, while it runs, that sample work completes, that
// the planned failures are archived, and that the dashboard answers.
func TestDevRunShowsWorkFlowingAndDeadLettering(t *testing.T) {
	t.Parallel()
	log, logs := testenv.Logger(t)
	defer logs.Stop()
	ready := make(chan Endpoints, 1)
	done := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		done <- Run(ctx, Options{DashboardAddr: "127.0.0.1:0", SampleRate: 50, Logger: log, Ready: func(e Endpoints) { ready <- e }})
	}()
	var ep Endpoints
	select {
	case ep = <-ready:
	case err := <-done:
		t.Fatalf("Run returned before it was ready: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready after 20s")
	}

	opt, err := asynq.ParseRedisURI(ep.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	deadline := time.Now().Add(30 * time.Second)
	var completed, archived int
	for time.Now().Before(deadline) {
		completed, archived = 0, 0
		for _, q := range tasks.Queues() {
			if info, err := insp.GetQueueInfo(q); err == nil {
				completed += info.Completed
				archived += info.Archived
			}
		}
		if completed >= 20 && archived >= 2 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if completed < 20 || archived < 2 {
		t.Fatalf("after 30s: %d completed, %d archived; want at least 20 and 2", completed, archived)
	}
	// The sample job runs beside the interactive work.
	producer := enqueue.New(opt)
	defer producer.Close()
	store, err := producer.Jobs()
	if err != nil {
		t.Fatal(err)
	}
	jobNamed := func(name string) (enqueue.Job, string) {
		js, err := store.List(context.Background(), 0)
		if err != nil {
			return enqueue.Job{}, err.Error()
		}
		for _, j := range js {
			if j.Name == name {
				return j, fmt.Sprintf("%+v", j)
			}
		}
		return enqueue.Job{}, fmt.Sprintf("no job %q among %d", name, len(js))
	}
	testenv.Eventually(t, 30*time.Second, "the sample job makes progress", func() (bool, string) {
		j, why := jobNamed(SampleJobName)
		return j.Counts.Total == sampleJobSize && j.Counts.Applied > 0, why
	})
	// The sample spammer's messages reach the index through the emulator's
	// callbacks and are purged: all 25 recalled by a job.
	testenv.Eventually(t, 3*time.Minute, "the sample spammer purged", func() (bool, string) {
		j, why := jobNamed("purge " + SpammerName)
		return j.Finished && j.RecallMessages != nil && j.RecallMessages.Applied == spamMessages, why
	})

	// The HTTP API is served beside the dashboard, and what it queues runs.
	apiResp, err := http.Post(ep.APIURL+"recall", "application/json", strings.NewReader(`{"GroupId":"dev-group-00","MsgSeqList":[{"MsgSeq":3}]}`))
	if err != nil {
		t.Fatal(err)
	}
	apiBody, _ := io.ReadAll(apiResp.Body)
	apiResp.Body.Close()
	if apiResp.StatusCode != http.StatusAccepted || !strings.Contains(string(apiBody), `"task_ids":["`) {
		t.Fatalf("POST %srecall: %d %s", ep.APIURL, apiResp.StatusCode, apiBody)
	}
	var queued struct {
		TaskIDs []string `json:"task_ids"`
	}
	if err := json.Unmarshal(apiBody, &queued); err != nil || len(queued.TaskIDs) != 1 {
		t.Fatalf("POST recall answered %s", apiBody)
	}
	testenv.Eventually(t, 30*time.Second, "the recall sent through the API completed", func() (bool, string) {
		resp, err := http.Get(ep.APIURL + "tasks/" + queued.TaskIDs[0])
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `"state":"completed"`), string(b)
	})

	resp, err := http.Get(strings.TrimSuffix(ep.DashboardURL, "/") + "/api/queues")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var queues struct {
		Queues []struct {
			Queue string `json:"queue"`
		} `json:"queues"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &queues) != nil || len(queues.Queues) == 0 {
		t.Fatalf("dashboard /api/queues: %d %s", resp.StatusCode, body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not stop within 40s of cancel")
	}
}

// Run refuses a sample rate a ticker cannot take before it starts anything,
// naming the field.
func TestRunRefusesASampleRateItCannotTick(t *testing.T) {
	for _, rate := range []float64{math.NaN(), math.Inf(1), 1e-12, 1e6} {
		err := Run(context.Background(), Options{DashboardAddr: "127.0.0.1:0", SampleRate: rate, Logger: slog.New(slog.DiscardHandler)})
		if err == nil || !strings.HasPrefix(err.Error(), "devrun: SampleRate: must be negative (none) or from 0.001 to 1000 per second") {
			t.Errorf("SampleRate %v: got %v, want the bounds", rate, err)
		}
	}
}

// Over a simulated hour of sample work at the default 20 operations a
// second, only the operations meant to fail would fail: every recall and
// modify targets a message of its own that exists and no clear covers, so
// the dead-letter page keeps showing a few entries however long make run
// runs.
func TestSampleWorkFailsOnlyOnPurposeForAnHour(t *testing.T) {
	t.Parallel()
	emu, err := sim.New(sim.Config{SDKAppID: 1400000001, SecretKey: "dev-test-key"})
	if err != nil {
		t.Fatal(err)
	}
	defer emu.Close()
	if err := seedGroups(emu); err != nil {
		t.Fatal(err)
	}
	const ops = 20 * 3600
	rng := rand.New(rand.NewPCG(1, 2))
	add := emulatorMessages(emu)
	targeted := map[string]bool{}
	clearedGroups, workGroups := map[string]bool{}, map[string]bool{}
	meant := 0
	for n := uint64(1); n <= ops; n++ {
		op, err := sampleOp(n, rng.IntN(100), add)
		if err != nil {
			t.Fatal(err)
		}
		switch p := op.(type) {
		case tasks.Clear:
			clearedGroups[p.GroupId] = true
		case tasks.Recall:
			if p.GroupId == missingGroup {
				meant++
				continue
			}
			workGroups[p.GroupId] = true
			checkFresh(t, emu, targeted, p.GroupId, p.MsgSeqList[0].MsgSeq)
		case tasks.Modify:
			if p.GroupId == avGroup {
				meant++
				continue
			}
			workGroups[p.GroupId] = true
			checkFresh(t, emu, targeted, p.GroupId, p.MsgSeq)
		}
	}
	for g := range clearedGroups {
		if workGroups[g] {
			t.Errorf("group %s is both cleared and recalled or modified: a clear could cover a waiting task's message", g)
		}
	}
	if want := 2 + ops/failEvery + (ops-1)/failEvery; meant != want {
		t.Errorf("%d operations meant to fail in an hour, want %d", meant, want)
	}
}

// checkFresh fails the test unless group's message seq exists, is neither
// cleared nor recalled, and no other sample operation targeted it.
func checkFresh(t *testing.T, emu *sim.Server, targeted map[string]bool, group string, seq uint64) {
	t.Helper()
	key := fmt.Sprintf("%s/%d", group, seq)
	m, ok := emu.Message(group, "", seq)
	if !ok || m.Cleared || m.Recalled || targeted[key] {
		t.Fatalf("message %s: exists %v, cleared %v, recalled %v, targeted before %v", key, ok, m.Cleared, m.Recalled, targeted[key])
	}
	targeted[key] = true
}
