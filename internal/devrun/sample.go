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
	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/purge"
	"github.com/timq/timq/internal/sim"
	"github.com/timq/timq/tasks"
)

const (
	sampleGroups = 16 // recalled and modified: every operation gets a fresh message
	clearGroups  = 4  // cleared only, so that a clear never covers a message another task waits for
	seedMessages = 100
	avGroup      = "dev-live-stream" // AVChatRoom: modify is refused (dead letter)
	missingGroup = "dev-dismissed"   // never created: every call is 10010 (dead letter)
	// failEvery is how many operations pass between two meant to fail,
	// after the first two: one every ten minutes at the default 20/s, so
	// the dead-letter page shows a few however long it runs.
	failEvery = 12000
)

func sampleGroup(i int) string { return fmt.Sprintf("dev-group-%02d", i) }
func clearGroup(i int) string  { return fmt.Sprintf("dev-clear-%02d", i) }

func seedGroups(emu *sim.Server) error {
	for _, g := range sampleGroupIDs() {
		if err := emu.CreateGroup(g, sim.GroupPublic); err != nil {
			return err
		}
		if _, _, err := emu.AddMessages(g, "", seedMessages); err != nil {
			return err
		}
	}
	if err := emu.CreateGroup(avGroup, sim.GroupAVChatRoom); err != nil {
		return err
	}
	if err := emu.CreateGroup(spamGroup, sim.GroupPublic); err != nil {
		return err
	}
	_, _, err := emu.AddMessages(avGroup, "", 100)
	return err
}

func sampleGroupIDs() []string {
	var ids []string
	for i := range sampleGroups {
		ids = append(ids, sampleGroup(i))
	}
	for i := range clearGroups {
		ids = append(ids, clearGroup(i))
	}
	return ids
}

// newMessage adds one message to a group in the emulator and returns its
// seq (sim.Server.AddMessages, in production code a user's send).
type newMessage func(group string) (uint64, error)

// emulatorMessages returns the newMessage of emu.
func emulatorMessages(emu *sim.Server) newMessage {
	return func(group string) (uint64, error) {
		first, _, err := emu.AddMessages(group, "", 1)
		return first, err
	}
}

// produceSamples queues a mix of operations at about rate per second until
// ctx ends: mostly modifies and recalls, some clears, and now and then one
// meant to be dead-lettered (a dismissed group, a modify on an AVChatRoom).
func produceSamples(ctx context.Context, p *enqueue.Client, add newMessage, rate float64, log *slog.Logger) {
	go func() {
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		n := uint64(0)
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			n++
			op, err := sampleOp(n, rand.IntN(100), add)
			if err != nil {
				log.Warn("dev: cannot make sample work", "error", err)
				continue
			}
			if _, err := p.Enqueue(ctx, op); err != nil && !errors.Is(err, enqueue.ErrDuplicate) && ctx.Err() == nil {
				log.Warn("dev: cannot queue sample work", "error", err)
			}
		}
	}()
}

// sampleOp returns the nth sample operation; r in [0, 100) picks its kind.
// Recalls and modifies each target a message of their own, sent just
// before, and clears only groups nobody recalls or modifies in, so that the
// only operations that fail are those meant to: the first two (a newcomer
// sees dead letters within a second) and then one in failEvery.
func sampleOp(n uint64, r int, add newMessage) (tasks.Payload, error) {
	switch {
	case n == 1 || n%failEvery == 0:
		return tasks.Recall{GroupId: missingGroup, MsgSeqList: tasks.Seqs(1)}, nil
	case n == 2 || n%failEvery == 1:
		return tasks.Modify{GroupId: avGroup, MsgSeq: 1 + n%100, MsgBody: tasks.TextBody("edited")}, nil
	case r < 5:
		g := clearGroup(int(n % clearGroups))
		seq, err := add(g)
		if err != nil {
			return nil, err
		}
		return tasks.Clear{GroupId: g, MsgSeq: &seq}, nil
	}
	g := sampleGroup(int(n % sampleGroups))
	seq, err := add(g)
	if err != nil {
		return nil, err
	}
	if r < 50 {
		return tasks.Recall{GroupId: g, MsgSeqList: tasks.Seqs(seq)}, nil
	}
	return tasks.Modify{GroupId: g, MsgSeq: seq, MsgBody: tasks.TextBody(fmt.Sprintf("edited by timq dev #%d", n))}, nil
}

// sampleJobGroup holds the messages the sample job modifies.
const (
	sampleJobGroup = "dev-job"
	sampleJobSize  = 6000 // half a minute of work at 200 calls/s
	// SampleJobName names the sample job in timq jobs ls.
	SampleJobName = "sample cleanup"
)

// startSampleJob stores a job that modifies every message of the sample
// job group, so a newcomer sees a job's progress while the interactive
// sample work passes it.
func startSampleJob(ctx context.Context, emu *sim.Server, producer *enqueue.Client) (string, error) {
	if err := emu.CreateGroup(sampleJobGroup, sim.GroupPublic); err != nil {
		return "", err
	}
	if _, _, err := emu.AddMessages(sampleJobGroup, "", sampleJobSize); err != nil {
		return "", err
	}
	jw, err := producer.NewJob(enqueue.JobName(SampleJobName))
	if err != nil {
		return "", err
	}
	for s := uint64(1); s <= sampleJobSize; s++ {
		if err := jw.Add(ctx, tasks.Modify{GroupId: sampleJobGroup, MsgSeq: s, MsgBody: tasks.TextBody("[cleaned by the sample job]")}); err != nil {
			jw.Abort(ctx)
			return "", err
		}
	}
	j, err := jw.Close(ctx)
	return j.ID, err
}

// The sample spammer: spamMessages messages from SpammerName in spamGroup,
// among a few of another sender's, all indexed through the emulator's
// callbacks; then a purge recalls the spammer's as a job.
const (
	SpammerName  = "dev-spammer"
	spamGroup    = "dev-spam"
	spamMessages = 25
)

// purgeSampleSpammer sends the spammer's messages, waits until the index
// holds them, and purges them. Failures are logged: the playground goes on.
func purgeSampleSpammer(ctx context.Context, emuURL string, appID uint64, key string, index *msgindex.Index, producer *enqueue.Client, log *slog.Logger) {
	if err := sendSpam(ctx, emuURL, appID, key); err != nil {
		log.Warn("sample spammer", "error", err)
		return
	}
	q := msgindex.Query{Sender: SpammerName}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		p, err := purge.Find(ctx, index, q)
		if err == nil && len(p.Messages) == spamMessages {
			j, err := purge.Start(ctx, producer, p, "spam")
			if err != nil {
				log.Warn("sample spammer", "error", err)
				return
			}
			log.Info("sample spammer purged from the message index", "sender", SpammerName, "messages", len(p.Messages), "job_id", j.ID)
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			log.Warn("sample spammer: its messages did not reach the index", "error", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func sendSpam(ctx context.Context, emuURL string, appID uint64, key string) error {
	c, err := chatapi.New(chatapi.Config{SDKAppID: appID, SecretKey: key, Admin: sim.DefaultAdmin, BaseURL: emuURL})
	if err != nil {
		return err
	}
	for i := range spamMessages + 5 {
		from := SpammerName
		if i%6 == 5 {
			from = "dev-alice"
		}
		for {
			_, err := c.SendGroupMsg(ctx, &chatapi.SendGroupMsgRequest{GroupId: spamGroup, From_Account: from, Random: uint32(i), MsgBody: tasks.TextBody("cheap watches")})
			if chatapi.Classify(err) == chatapi.ClassThrottle {
				time.Sleep(200 * time.Millisecond) // the emulator's send limit, as Tencent's
				continue
			}
			if err != nil {
				return err
			}
			break
		}
	}
	return nil
}
