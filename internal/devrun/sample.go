package devrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/tasks"
)

const (
	sampleGroups   = 20
	sampleMessages = 5000
	avGroup        = "dev-live-stream" // AVChatRoom: modify is refused (dead letter)
	missingGroup   = "dev-dismissed"   // never created: every call is 10010 (dead letter)
)

func sampleGroup(i int) string { return fmt.Sprintf("dev-group-%02d", i) }

func seedGroups(emu *sim.Server) error {
	for i := range sampleGroups {
		if err := emu.CreateGroup(sampleGroup(i), sim.GroupPublic); err != nil {
			return err
		}
		if _, _, err := emu.AddMessages(sampleGroup(i), "", sampleMessages); err != nil {
			return err
		}
	}
	if err := emu.CreateGroup(avGroup, sim.GroupAVChatRoom); err != nil {
		return err
	}
	_, _, err := emu.AddMessages(avGroup, "", 100)
	return err
}

// produceSamples queues a mix of operations at about rate per second until
// ctx ends: mostly modifies and recalls, some clears, and about 2% meant to
// be dead-lettered (a dismissed group, a modify on an AVChatRoom).
func produceSamples(ctx context.Context, p *enqueue.Client, rate float64, log *slog.Logger) {
	go func() {
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		seq := uint64(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			seq++
			op := sampleOp(seq)
			if _, err := p.Enqueue(ctx, op); err != nil && !errors.Is(err, enqueue.ErrDuplicate) && ctx.Err() == nil {
				log.Warn("dev: cannot queue sample work", "error", err)
			}
		}
	}()
}

func sampleOp(n uint64) tasks.Payload {
	group := sampleGroup(rand.IntN(sampleGroups))
	msg := 1 + n%sampleMessages
	// The first two operations fail for good, so a newcomer sees dead
	// letters within a second; after that about 2% do.
	r := rand.IntN(100)
	if n <= 2 {
		r = int(n) - 1
	}
	switch {
	case r < 1:
		return tasks.Recall{GroupId: missingGroup, MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: 1}}}
	case r < 2:
		return tasks.Modify{GroupId: avGroup, MsgSeq: 1 + n%100, MsgBody: tasks.TextBody("edited")}
	case r < 5:
		s := msg / 2
		return tasks.Clear{GroupId: group, MsgSeq: &s}
	case r < 50:
		return tasks.Recall{GroupId: group, MsgSeqList: []chatapi.MsgSeqItem{{MsgSeq: msg}}}
	default:
		return tasks.Modify{GroupId: group, MsgSeq: msg, MsgBody: tasks.TextBody(fmt.Sprintf("edited by timq dev #%d", n))}
	}
}
