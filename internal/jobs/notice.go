package jobs

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// A job created with a notice URL gets one POST of its summary when it
// ends (a completion notice). The feeder that sees the job end enqueues a
// notice task; a worker's notice server sends it and asynq retries it with
// backoff while the receiver fails. The job itself never waits for the
// notice: it has ended before the notice is queued, and a receiver that
// never answers only leaves the notice archived in asynq, marked failed in
// the job.
//
// The POST is signed like Stripe's webhooks: the header
//
//	Timq-Signature: t=UNIX_SECONDS,v1=HEX
//
// where HEX is the lowercase hex HMAC-SHA256, keyed with the workers'
// notice secret, of "UNIX_SECONDS." followed by the body. A receiver
// recomputes it, compares in constant time, and refuses a t far from its
// clock (a replay). The same notice can arrive twice (a receiver that
// answered after the sender's timeout): the Timq-Job-Id header is its
// idempotency key.

// Notice task constants: the task type and the queue the workers' notice
// server serves.
const (
	NoticeType  = "timq:job-notice"
	NoticeQueue = "timq-job-notice"
)

// Headers of a notice.
const (
	SignatureHeader = "Timq-Signature"
	JobIDHeader     = "Timq-Job-Id"
	AttemptHeader   = "Timq-Delivery-Attempt"
)

// NoticeMaxRetry is how many times a failed notice is sent again; with the
// worker's default backoff (10 s doubling to an hour) that is about 10
// hours of retries.
const NoticeMaxRetry = 15

// noticeTimeout bounds one delivery: the receiver's answer included.
const noticeTimeout = 10 * time.Second

// noticeKeep is how long a sent notice task stays in asynq, so that a
// feeder that enqueues it twice (a crash between enqueue and bookkeeping)
// is refused by its task ID.
const noticeKeep = 24 * time.Hour

// Notice states, in Job.Notice.
const (
	NoticePending = "pending" // not yet delivered; retried with backoff
	NoticeSent    = "sent"    // the receiver answered 2xx
	NoticeFailed  = "failed"  // every attempt failed; the task is archived
)

// Notice is the state of a job's completion notice.
type Notice struct {
	State    string     `json:"state"`
	Attempts int        `json:"attempts"`
	Error    string     `json:"error,omitempty"` // the last failure: a status or a transport error, without the URL
	Sent     *time.Time `json:"sent,omitempty"`
}

// CheckNotifyURL returns an error unless u can take a job's notice: an
// absolute http or https URL without user information (a password in a URL
// would be stored in Redis).
func CheckNotifyURL(u string) error {
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return fmt.Errorf("notify URL: %v", errors.Unwrap(err))
	case p.Scheme != "http" && p.Scheme != "https":
		return errors.New("notify URL: want an http or https URL")
	case p.Host == "":
		return errors.New("notify URL: no host")
	case p.User != nil:
		return errors.New("notify URL: user information is refused (it would be stored in Redis); authenticate the notice by its signature")
	case len(u) > 2048:
		return errors.New("notify URL: longer than 2048 characters")
	}
	return nil
}

// noticeTask returns the notice task of job id.
func noticeTask(id string) *asynq.Task {
	payload, _ := json.Marshal(struct {
		Job string `json:"job"`
	}{id})
	return asynq.NewTask(NoticeType, payload, asynq.Queue(NoticeQueue), asynq.TaskID("notice:"+id),
		asynq.MaxRetry(NoticeMaxRetry), asynq.Timeout(noticeTimeout+5*time.Second), asynq.Retention(noticeKeep))
}

// NoticeBody is what a notice POSTs.
type NoticeBody struct {
	Type string `json:"type"` // "job.ended"
	Job  Job    `json:"job"`
}

// Notifier sends job notices.
type Notifier struct {
	store  *Store
	secret []byte
	client *http.Client
	now    func() time.Time
}

// NewNotifier returns a Notifier that signs with secret and sends with
// client (nil: a client of its own that follows no redirect).
func NewNotifier(store *Store, secret string, client *http.Client) *Notifier {
	if client == nil {
		client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return &Notifier{store: store, secret: []byte(secret), client: client, now: time.Now}
}

// ErrNoSecret is returned by Deliver when the Notifier has no secret:
// notices are never sent unsigned.
var ErrNoSecret = errors.New("no notice secret is set: job notices are not sent unsigned")

// Handle is the asynq handler of notice tasks. A notice of a job that is
// gone (its retention passed) is dropped.
func (n *Notifier) Handle(ctx context.Context, t *asynq.Task) error {
	var p struct {
		Job string `json:"job"`
	}
	if err := json.Unmarshal(t.Payload(), &p); err != nil || CheckID(p.Job) != nil {
		return fmt.Errorf("notice payload: not a job ID: %w", asynq.SkipRetry)
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, _ := asynq.GetMaxRetry(ctx)
	err := n.Deliver(ctx, p.Job, retried+1)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil && retried >= maxRetry {
		n.store.setNotice(context.WithoutCancel(ctx), p.Job, NoticeFailed, retried+1, err.Error(), time.Time{})
	}
	return err
}

// Deliver POSTs job id's summary to its notice URL, as attempt number
// attempt, and records the outcome in the job.
func (n *Notifier) Deliver(ctx context.Context, id string, attempt int) error {
	target, err := n.store.rdb.HGet(ctx, jobKey(id), "notify").Result()
	if err != nil || target == "" {
		return fmt.Errorf("%w: %s has no notice", ErrNotFound, id)
	}
	j, err := n.store.Get(ctx, id)
	if err != nil {
		return err
	}
	j.Notice = nil // the body is the job's outcome, not its notice's
	err = n.post(ctx, target, j, attempt)
	state, msg, sent := NoticePending, "", time.Time{}
	if err != nil {
		msg = err.Error()
	} else {
		state, sent = NoticeSent, n.now()
	}
	n.store.setNotice(context.WithoutCancel(ctx), id, state, attempt, msg, sent)
	return err
}

func (n *Notifier) post(ctx context.Context, target string, j Job, attempt int) error {
	if len(n.secret) == 0 {
		return ErrNoSecret
	}
	body, err := json.Marshal(NoticeBody{Type: "job.ended", Job: j})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, noticeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return errors.New("notice: the notify URL is not usable")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "timq")
	req.Header.Set(JobIDHeader, j.ID)
	req.Header.Set(AttemptHeader, strconv.Itoa(attempt))
	req.Header.Set(SignatureHeader, Sign(n.secret, n.now(), body))
	resp, err := n.client.Do(req)
	if err != nil {
		// url.Error names the URL, which may carry a receiver's token in
		// its query: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("notice: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("notice: the receiver answered %s", resp.Status)
	}
	return nil
}

// Sign returns the Timq-Signature header of body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// setNotice records a notice's state in its job (best effort: the
// notice's own outcome stands in asynq).
func (s *Store) setNotice(ctx context.Context, id, state string, attempts int, msg string, sent time.Time) {
	if len(msg) > 200 {
		msg = msg[:200]
	}
	fields := []any{"notice", state, "notice_attempts", attempts, "notice_error", msg}
	if !sent.IsZero() {
		fields = append(fields, "notice_sent_ms", sent.UnixMilli())
	}
	_ = setNoticeScript.Run(ctx, s.rdb, []string{jobKey(id)}, fields...).Err()
}

// setNoticeScript writes the fields only while the job's hash exists, so
// that a notice never recreates an expired job.
var setNoticeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`)

// Verify checks a notice's Timq-Signature header against body and secret,
// and that its time is within tolerance of now.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || sig == "" {
		return errors.New("notice: the " + SignatureHeader + " header is not t=UNIX,v1=HEX")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("notice: signed %v from now, more than the %v allowed", d.Round(time.Second), tolerance)
	}
	want := Sign(secret, time.Unix(sec, 0), body)
	if !hmac.Equal([]byte(want), []byte("t="+ts+",v1="+sig)) {
		return errors.New("notice: the signature does not match")
	}
	return nil
}
