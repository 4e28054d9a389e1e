package bench

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/jobs"
	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/purge"
	"github.com/timq/timq/internal/sim"
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
	targetPurgeRate     = 1900 // messages recalled per second
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
	PurgeRecalled  int64         // messages the purge job recalled
	PurgeWall      time.Duration // from the job's creation to its end
	// PurgeRate is messages recalled per second over the busy span of the
	// emulator's recall calls (see busySpan), as in the recall scenarios:
	// the sustained rate, without the partial seconds of the start (the
	// feeder's and the worker's first polls) and of the drain.
	PurgeRate        float64
	PurgeBusySeconds int
	PurgeErr         string
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
	good, bad := hammer(ctx, indexSenders, indexWindow, func(ctx context.Context, i int64) error {
		start := time.Now()
		rt := strconv.FormatInt(start.Unix(), 10)
		url := fmt.Sprintf("%s/v1/callbacks/tencent?SdkAppid=%d&CallbackCommand=Group.CallbackAfterSendMsg&contenttype=json&ClientIP=127.0.0.1&OptPlatform=RESTAPI&RequestTime=%s&Sign=%s",
			base, r.appID, rt, chatapi.CallbackSign(benchCallbackToken, rt))
		body := fmt.Sprintf(`{"CallbackCommand":"Group.CallbackAfterSendMsg","GroupId":"@TGS#b%d","Type":"Public","From_Account":"user%d","MsgSeq":%d,"MsgTime":%d,"Random":1,"MsgBody":[{"MsgType":"TIMTextElem","MsgContent":{"Text":"hello"}}],"EventTime":%d}`,
			i%purgeGroups, i%indexPeople, i, start.Unix(), start.UnixMilli())
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if err := send(client, req, http.StatusOK); err != nil {
			return err
		}
		if i%10 == 0 {
			latMu.Lock()
			lat = append(lat, time.Since(start))
			latMu.Unlock()
		}
		return nil
	})
	res.CallbackRate, res.CallbackErrors = float64(good)/indexWindow.Seconds(), bad
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
	if err := r.purgeRate(ctx, res); err != nil {
		return err
	}
	return r.reset(ctx, nil)
}

// purgeRate seeds the emulator with purgeMessages messages over
// purgeGroups groups, indexes them as the spammer's, and times a purge job
// of them with one worker: messages recalled per second, from the job's
// creation to its end.
func (r *runner) purgeRate(ctx context.Context, res *IndexResult) error {
	per := purgeMessages / purgeGroups
	var seed []sim.SeedGroup
	for g := range purgeGroups {
		seed = append(seed, sim.SeedGroup{GroupID: fmt.Sprintf("@TGS#purge%d", g), Type: sim.GroupPublic, Messages: per})
	}
	if err := r.reset(ctx, seed); err != nil {
		return err
	}
	ix := msgindex.New(r.rdb.Client(), 0)
	now := time.Now()
	for g := range purgeGroups {
		for s := 1; s <= per; s++ {
			if err := ix.Add(ctx, msgindex.Message{GroupID: fmt.Sprintf("@TGS#purge%d", g), Sender: "spammer", Seq: uint64(s), Time: now}); err != nil {
				return err
			}
		}
	}
	ws, err := r.startWorkers(ctx, "purge", 1, true)
	defer stopWorkers(ws)
	if err != nil {
		return err
	}
	time.Sleep(time.Second) // let the worker start
	r.progress("index: purging one sender's %d messages over %d groups", purgeMessages, purgeGroups)
	plan, err := purge.Find(ctx, ix, msgindex.Query{Sender: "spammer"})
	if err != nil {
		return err
	}
	producer := enqueue.New(asynq.RedisClientOpt{Addr: r.rdb.Addr, DB: r.rdb.DB})
	defer producer.Close()
	start := time.Now()
	j, err := purge.Start(ctx, producer, plan, "bench")
	if err != nil {
		return err
	}
	store := jobs.NewStore(r.rdb.Client(), 0)
	ok, err := poll(ctx, 2*time.Minute, func() (bool, error) {
		got, err := store.Get(ctx, j.ID)
		if err != nil {
			return false, err
		}
		if got.Finished {
			res.PurgeRecalled = got.RecallMessages.Applied
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if !ok {
		res.PurgeErr = "the purge job did not end within 2 minutes"
		return nil
	}
	res.PurgeWall = time.Since(start)
	st, err := r.sim.Stats(ctx)
	if err != nil {
		return err
	}
	sp := busySpan(st.Endpoints[chatapi.EndpointRecall].PerSecond)
	res.PurgeRate, res.PurgeBusySeconds = rate(st.RecalledPerSecond, sp), sp.Len()
	return nil
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
	purgeWhat := fmt.Sprintf("a purge job of one sender's %s messages over %d groups, one worker, over its busy seconds", thousands(purgeMessages), purgeGroups)
	if x.PurgeErr != "" {
		add("purge recall rate", purgeWhat, "failed: "+x.PurgeErr, fmt.Sprintf(">= %d msgs/s", targetPurgeRate), "NO")
	} else {
		add("purge recall rate", purgeWhat, fmt.Sprintf("%.0f msgs/s over %d s; all %s recalled %.1f s after creation (%.0f/s)",
			x.PurgeRate, x.PurgeBusySeconds, thousands(x.PurgeRecalled), x.PurgeWall.Seconds(), float64(x.PurgeRecalled)/max(x.PurgeWall.Seconds(), 1e-9)),
			fmt.Sprintf(">= %d msgs/s", targetPurgeRate), metCell(x.PurgeBusySeconds > 0, x.PurgeRate >= targetPurgeRate && x.PurgeRecalled == purgeMessages))
	}
	return t
}
