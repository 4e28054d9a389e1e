package worker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/internal/testenv"
)

// noticeReceiver records the notices POSTed to it and fails the first
// failFirst of them with a 500.
type noticeReceiver struct {
	mu        sync.Mutex
	failFirst int
	got       []receivedNotice
}

type receivedNotice struct {
	header http.Header
	body   []byte
	at     time.Time
}

func (n *noticeReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	n.mu.Lock()
	n.got = append(n.got, receivedNotice{header: r.Header.Clone(), body: body, at: time.Now()})
	fail := len(n.got) <= n.failFirst
	n.mu.Unlock()
	if fail {
		http.Error(w, "not now", http.StatusInternalServerError)
	}
}

func (n *noticeReceiver) received() []receivedNotice {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]receivedNotice(nil), n.got...)
}

const testNotifySecret = "notice-secret-for-tests-0123456789"

func TestJobNoticeIsSignedRetriedAndSentOnce(t *testing.T) {
	t.Parallel()
	r := newJobRig(t)
	rec := &noticeReceiver{failFirst: 2}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	r.cfg.NotifySecret = testNotifySecret
	r.cfg.NotifyRetryBase = 20 * time.Millisecond
	r.group("noticed", sim.GroupPublic, 3)
	w, err := r.enq.NewJob(enqueue.JobName("noticed"), enqueue.JobNotify(srv.URL+"/hook?token=receiver-token-xyz"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range modifies("noticed", 1, 3, "n") {
		if err := w.Add(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	created, err := w.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if created.Notice == nil || created.Notice.State != jobs.NoticePending {
		t.Fatalf("new job's notice = %+v, want pending", created.Notice)
	}
	id := w.ID()
	r.startWorker()
	r.waitJob(id, 30*time.Second)

	var j enqueue.Job
	testenv.Eventually(t, 30*time.Second, "the notice sent", func() (bool, string) {
		j = r.get(id)
		return j.Notice != nil && j.Notice.State == jobs.NoticeSent, spew(j.Notice)
	})
	// The notice task is completed: nothing sends it again.
	info, err := r.insp.GetTaskInfo(jobs.NoticeQueue, "notice:"+id)
	if err != nil || info.State != asynq.TaskStateCompleted {
		t.Fatalf("notice task = %+v, %v; want completed", info, err)
	}
	got := rec.received()
	if len(got) != 3 || j.Notice.Attempts != 3 {
		t.Fatalf("%d POSTs, notice %+v; want 3 (two answered 500, then 200)", len(got), j.Notice)
	}
	for i, n := range got {
		if err := enqueue.VerifyNotice(testNotifySecret, n.header.Get(enqueue.NoticeSignatureHeader), n.body, n.at, time.Minute); err != nil {
			t.Errorf("POST %d: %v", i+1, err)
		}
		if err := enqueue.VerifyNotice("another-secret-0123456789", n.header.Get(enqueue.NoticeSignatureHeader), n.body, n.at, time.Minute); err == nil {
			t.Errorf("POST %d verifies with the wrong secret", i+1)
		}
		if h := n.header.Get(enqueue.NoticeJobIDHeader); h != id {
			t.Errorf("POST %d: %s = %q, want %s", i+1, enqueue.NoticeJobIDHeader, h, id)
		}
		if h, want := n.header.Get(enqueue.NoticeAttemptHeader), string(rune('1'+i)); h != want {
			t.Errorf("POST %d: %s = %q, want %s", i+1, enqueue.NoticeAttemptHeader, h, want)
		}
	}
	var body enqueue.JobNoticeBody
	if err := json.Unmarshal(got[2].body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != "job.ended" || body.Job.ID != id || body.Job.State != enqueue.JobDone || body.Job.Counts.Applied != 3 || body.Job.Counts.Total != 3 {
		t.Errorf("notice body = %+v, want job.ended of %s, done with 3 applied", body, id)
	}
	// The receiver's URL may carry its token: it shows nowhere.
	for _, where := range []string{r.logs.String(), spew(j)} {
		if strings.Contains(where, "receiver-token-xyz") || strings.Contains(where, testNotifySecret) {
			t.Errorf("a token or the secret leaked: %s", where)
		}
	}
}

// A worker without a notice secret sends nothing unsigned: the notice
// waits in its retries, and the job has ended all the same.
func TestJobNoticeNeedsASecret(t *testing.T) {
	t.Parallel()
	r := newJobRig(t)
	rec := &noticeReceiver{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	r.cfg.NotifyRetryBase = time.Hour
	r.group("unsigned", sim.GroupPublic, 1)
	w, err := r.enq.NewJob(enqueue.JobNotify(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(context.Background(), modifies("unsigned", 1, 1, "u")[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r.startWorker()
	j := r.waitJob(w.ID(), 30*time.Second)
	if j.State != enqueue.JobDone {
		t.Fatalf("job %+v, want done", j)
	}
	testenv.Eventually(t, 30*time.Second, "the notice attempted", func() (bool, string) {
		j = r.get(w.ID())
		return j.Notice.Attempts == 1, spew(j.Notice)
	})
	if j.Notice.State != jobs.NoticePending || !strings.Contains(j.Notice.Error, "secret") {
		t.Errorf("notice = %+v, want pending with an error naming the secret", j.Notice)
	}
	if n := len(rec.received()); n != 0 {
		t.Errorf("%d notices sent without a secret, want 0", n)
	}
}

func spew(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
