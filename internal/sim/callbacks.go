package sim

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/timq/timq/internal/chatapi"
)

// Callbacks makes the emulator post Tencent's Group.CallbackAfterSendMsg
// webhook for every message it stores (send_group_msg and seeded ones), as
// Tencent does to an app's callback URL.
type Callbacks struct {
	// URL is the app's callback URL; the query Tencent adds is appended.
	URL string
	// Token, when set, signs each callback: RequestTime and Sign =
	// hex(sha256(Token + RequestTime)), Tencent's callback authentication.
	Token string
	// Duplicate is the share of callbacks sent twice (0 to 1), as Tencent
	// may when retry-on-timeout is on.
	Duplicate float64
	// Timeout is how long a callback waits for the answer: Tencent waits
	// 2 s. Defaults to 2 s.
	Timeout time.Duration
}

// CallbackStats counts the callbacks sent.
type CallbackStats struct {
	Sent   int64 `json:"sent"`   // posted, repeats included
	OK     int64 `json:"ok"`     // answered 200 with ActionStatus OK
	Failed int64 `json:"failed"` // any other answer, or none in time
}

// afterSendEvent is one stored message to call back about.
type afterSendEvent struct {
	GroupID, TopicID, From string
	Type                   GroupType
	Seq                    uint64
	Random                 uint32
	Time                   int64
	Body                   []chatapi.MsgElement
	CCD                    string
}

// callbackSender posts callbacks about in the order messages were stored,
// a few at a time, from a queue that never blocks the emulator.
type callbackSender struct {
	cfg    Callbacks
	appID  uint64
	client *http.Client
	now    func() time.Time
	dup    func() float64

	mu      sync.Mutex
	queue   []afterSendEvent
	wake    chan struct{}
	stop    chan struct{}
	stopped sync.WaitGroup

	sent, ok, failed atomic.Int64
}

func newCallbackSender(cfg Callbacks, appID uint64, now func() time.Time, dup func() float64) *callbackSender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	c := &callbackSender{cfg: cfg, appID: appID, client: &http.Client{Timeout: cfg.Timeout}, now: now, dup: dup,
		wake: make(chan struct{}, 1), stop: make(chan struct{})}
	c.stopped.Add(1)
	go c.run()
	return c
}

// add queues e; called with the Server's lock held, so it never blocks.
func (c *callbackSender) add(e afterSendEvent) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.queue = append(c.queue, e)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *callbackSender) run() {
	defer c.stopped.Done()
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		c.mu.Unlock()
		c.postAll(batch)
		select {
		case <-c.stop:
			c.mu.Lock()
			rest := c.queue
			c.queue = nil
			c.mu.Unlock()
			c.postAll(rest)
			return
		case <-c.wake:
		}
	}
}

// callbackConcurrency is how many callbacks are in flight at once, as
// Tencent's servers post them concurrently.
const callbackConcurrency = 8

// postAll posts the events, callbackConcurrency at a time; a drawn share
// of them twice.
func (c *callbackSender) postAll(events []afterSendEvent) {
	sem := make(chan struct{}, callbackConcurrency)
	var wg sync.WaitGroup
	for _, e := range events {
		twice := c.dup() < c.cfg.Duplicate
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c.post(e)
			if twice {
				c.post(e)
			}
		}()
	}
	wg.Wait()
}

// post sends one callback.
func (c *callbackSender) post(e afterSendEvent) {
	body, _ := json.Marshal(map[string]any{
		"CallbackCommand": "Group.CallbackAfterSendMsg", "GroupId": e.GroupID, "Type": string(e.Type),
		"From_Account": e.From, "Operator_Account": "", "Random": e.Random, "MsgSeq": e.Seq, "MsgTime": e.Time,
		"OnlineOnlyFlag": 0, "MsgBody": e.Body, "CloudCustomData": e.CCD, "EventTime": c.now().UnixMilli(),
		"TopicId": e.TopicID,
	})
	q := url.Values{"SdkAppid": {strconv.FormatUint(c.appID, 10)}, "CallbackCommand": {"Group.CallbackAfterSendMsg"},
		"contenttype": {"json"}, "ClientIP": {"127.0.0.1"}, "OptPlatform": {"RESTAPI"}}
	if c.cfg.Token != "" {
		rt := strconv.FormatInt(c.now().Unix(), 10)
		q.Set("RequestTime", rt)
		q.Set("Sign", chatapi.CallbackSign(c.cfg.Token, rt))
	}
	target := c.cfg.URL
	if bytes.ContainsRune([]byte(target), '?') {
		target += "&" + q.Encode()
	} else {
		target += "?" + q.Encode()
	}
	c.sent.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		c.failed.Add(1)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		c.failed.Add(1)
		return
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	var ans struct{ ActionStatus string }
	if resp.StatusCode == http.StatusOK && json.Unmarshal(b, &ans) == nil && ans.ActionStatus == "OK" {
		c.ok.Add(1)
		return
	}
	c.failed.Add(1)
}

// close stops the sender after the callbacks already queued are sent.
func (c *callbackSender) close() {
	if c == nil {
		return
	}
	close(c.stop)
	c.stopped.Wait()
}

// CallbackStats returns the callbacks sent so far; zero without Callbacks.
func (s *Server) CallbackStats() CallbackStats {
	if s.cb == nil {
		return CallbackStats{}
	}
	return CallbackStats{Sent: s.cb.sent.Load(), OK: s.cb.ok.Load(), Failed: s.cb.failed.Load()}
}
