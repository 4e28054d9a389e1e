package purge

import (
	"context"
	"fmt"
	"time"

	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/ratelimit"
)

// ScanPage is the most messages one group_msg_get_simple call answers.
const ScanPage = 20

// Scan finds q's messages in the groups' history instead of the index:
// for each group of q, it pages group_msg_get_simple back from the newest
// message over at most last messages (ReqMsgSeq = the smallest seq
// answered minus 1), waiting for a token of lim before each call (the
// endpoint's budget, shared like the others'), and keeps the sender's
// messages in q's window that are not recalled or deleted. It is for
// groups whose messages were never indexed; q must name its groups.
func Scan(ctx context.Context, api *chatapi.Client, lim ratelimit.Limiter, q msgindex.Query, last int) (Plan, error) {
	if len(q.Groups) == 0 {
		return Plan{}, fmt.Errorf("purge: scanning history needs the groups to scan")
	}
	p := Plan{Sender: q.Sender, PerGroup: map[string]int{}}
	for _, g := range q.Groups {
		var next uint64 // 0: from the newest
		for seen := 0; seen < last; {
			if err := lim.Wait(ctx); err != nil {
				return p, err
			}
			resp, err := api.GroupMsgGetSimple(ctx, &chatapi.GroupMsgGetSimpleRequest{GroupId: g, TopicId: q.TopicID,
				ReqMsgNumber: min(ScanPage, last-seen), ReqMsgSeq: next})
			if chatapi.Classify(err) == chatapi.ClassThrottle {
				lim.Backoff(time.Second)
				continue
			}
			if err != nil {
				return p, fmt.Errorf("purge: scan %s: %w", g, err)
			}
			smallest := uint64(0)
			for _, m := range resp.RspMsgList {
				seen++
				if smallest == 0 || m.MsgSeq < smallest {
					smallest = m.MsgSeq
				}
				t := time.Unix(m.MsgTimeStamp, 0)
				if m.From_Account != q.Sender || m.IsPlaceMsg != chatapi.PlaceNormal ||
					(!q.Since.IsZero() && t.Before(q.Since.Truncate(time.Second))) || (!q.Until.IsZero() && t.After(q.Until)) {
					continue
				}
				p.Messages = append(p.Messages, msgindex.Message{GroupID: g, TopicID: q.TopicID, Sender: q.Sender, Seq: m.MsgSeq, Time: t})
				p.PerGroup[g]++
			}
			if resp.IsFinished == 1 || len(resp.RspMsgList) == 0 || smallest <= 1 {
				break
			}
			next = smallest - 1
		}
	}
	return p, nil
}
