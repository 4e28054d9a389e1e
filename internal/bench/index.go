package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/timq/timq/internal/msgindex"
)

// The message-index phase: callbacks ingested per second by `timq api`
// from indexSenders concurrent senders for indexWindow, Redis bytes per
// indexed message over indexMessages messages, and the time to find one
// sender's purgeMessages messages over purgeGroups groups among them.
const (
	indexSenders  = 32
	indexWindow   = 5 * time.Second
	indexMessages = 1_000_000
	indexPeople   = 1000 // senders of the indexed messages
	purgeMessages = 10_000
	purgeGroups   = 100
)

// Targets of the index phase.
const (
	targetCallbackRate  = 5000
	targetCallbackP99   = 20 * time.Millisecond
	targetBytesPerMsg   = 100
	targetPurgeFindTime = time.Second
)

// IndexResult is the index phase's figures.
type IndexResult struct {
	CallbackRate   float64
	CallbackErrors int64
	CallbackP99    time.Duration
	Messages       int
	BytesPerMsg    float64 // -1: not measured
	FindMessages   int
	FindTime       time.Duration
}

const benchCallbackToken = "bench-callback-token"

func (r *runner) runIndex(ctx context.Context) error {
	res := &IndexResult{Messages: indexMessages, BytesPerMsg: -1}
	r.res.Index = res
	if err := r.reset(ctx, nil); err != nil {
		return err
	}
	base, client, stop, err := r.startAPI(ctx, "api-callbacks", indexSenders,
		"TIMQ_SDKAPPID="+strconv.FormatUint(r.appID, 10), "TIMQ_CALLBACK_TOKEN="+benchCallbackToken)
	if err != nil {
		return err
	}
	defer stop()

	r.progress("index: %d senders posting after-send callbacks for %v", indexSenders, indexWindow)
	var lat []time.Duration
	var latMu sync.Mutex
	cctx, cancel := context.WithTimeout(ctx, indexWindow)
	var next, good, bad atomic.Int64
	var wg sync.WaitGroup
	for range indexSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cctx.Err() == nil {
				i := next.Add(1)
				start := time.Now()
				rt := strconv.FormatInt(start.Unix(), 10)
				sum := sha256.Sum256([]byte(benchCallbackToken + rt))
				url := fmt.Sprintf("%s/v1/callbacks/tencent?SdkAppid=%d&CallbackCommand=Group.CallbackAfterSendMsg&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI&RequestTime=%s&Sign=%s",
					base, r.appID, rt, hex.EncodeToString(sum[:]))
				body := fmt.Sprintf(`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#b%d","Type":"Public","From_Account":"user%d","MsgSeq":%d,"MsgTime":%d,"Random":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello"}}],"EventTime":%d}`,
					i%purgeGroups, i%indexPeople, i, start.Unix(), start.UnixMilli())
				resp, err := client.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					if cctx.Err() == nil {
						bad.Add(1)
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad.Add(1)
					continue
				}
				good.Add(1)
				if i%10 == 0 {
					latMu.Lock()
					lat = append(lat, time.Since(start))
					latMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	res.CallbackRate, res.CallbackErrors = float64(good.Load())/indexWindow.Seconds(), bad.Load()
	res.CallbackP99 = latencyStat(lat, 0).P99

	if err := r.reset(ctx, nil); err != nil {
		return err
	}
	r.progress("index: %d messages of %d senders, and %d of one sender over %d groups", indexMessages-purgeMessages, indexPeople, purgeMessages, purgeGroups)
	ix := msgindex.New(r.rdb.Client(), 0)
	before := r.usedMemory(ctx)
	now := time.Now()
	var failed atomic.Int64
	var fill sync.WaitGroup
	const fillers = 16
	for f := range fillers {
		fill.Add(1)
		go func() {
			defer fill.Done()
			for i := f; i < indexMessages; i += fillers {
				// Each sender's messages spread over every group and the
				// whole day: few share a bucket, the costly case.
				m := msgindex.Message{GroupID: fmt.Sprintf("@TGS#g%d", (i/indexPeople)%purgeGroups), Sender: fmt.Sprintf("user%d", i%indexPeople),
					Seq: uint64(i + 1), Time: now.Add(-time.Duration(i%86400) * time.Second)}
				if i < purgeMessages {
					m.Sender, m.GroupID = "spammer", fmt.Sprintf("@TGS#g%d", i%purgeGroups)
				}
				if err := ix.Add(ctx, m); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	fill.Wait()
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("index: %d of %d messages not indexed", n, indexMessages)
	}
	if after := r.usedMemory(ctx); before >= 0 && after >= 0 {
		res.BytesPerMsg = float64(after-before) / indexMessages
	}
	start := time.Now()
	found, err := ix.Find(ctx, msgindex.Query{Sender: "spammer"})
	if err != nil {
		return err
	}
	res.FindTime, res.FindMessages = time.Since(start), len(found)
	return r.reset(ctx, nil)
}

// indexTable renders the index phase.
func (x *IndexResult) indexTable() table {
	t := table{head: []string{"measure", "what", "figure", "target", "met"}}
	add := func(cells ...string) { t.rows = append(t.rows, cells) }
	add("callbacks/s", fmt.Sprintf("signed after-send callbacks into timq api, %d concurrent senders, %v", indexSenders, indexWindow),
		fmt.Sprintf("%.0f/s (%d errors), p99 %s", x.CallbackRate, x.CallbackErrors, x.CallbackP99.Round(10*time.Microsecond)),
		fmt.Sprintf(">= %d/s, p99 < %v", targetCallbackRate, targetCallbackP99),
		metCell(x.CallbackRate > 0, x.CallbackRate >= targetCallbackRate && x.CallbackP99 < targetCallbackP99))
	add("Redis bytes per message", fmt.Sprintf("used_memory over %s indexed messages of %d senders in %d groups", thousands(int64(x.Messages)), indexPeople+1, purgeGroups),
		fmt.Sprintf("%.1f B", x.BytesPerMsg), fmt.Sprintf("<= %d B", targetBytesPerMsg), metCell(x.BytesPerMsg >= 0, x.BytesPerMsg <= targetBytesPerMsg))
	add("find a sender's messages", fmt.Sprintf("one sender's %s messages over %d groups among them", thousands(purgeMessages), purgeGroups),
		fmt.Sprintf("%s found in %s", thousands(int64(x.FindMessages)), x.FindTime.Round(time.Millisecond)), fmt.Sprintf("< %v", targetPurgeFindTime),
		metCell(x.FindMessages > 0, x.FindMessages == purgeMessages && x.FindTime < targetPurgeFindTime))
	return t
}
