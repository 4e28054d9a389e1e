package enqueue_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/tasks"
)

func Example() {
	mr, err := miniredis.Run() // a real deployment points at its Redis
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	c := enqueue.New(asynq.RedisClientOpt{Addr: mr.Addr()})
	defer c.Close()
	ctx := context.Background()

	// A recall of 25 messages becomes three tasks of 10, 10 and 5.
	r := tasks.Recall{GroupId: "@TGS#2J4SZEAEL", Reason: "spam"}
	for seq := uint64(100); seq < 125; seq++ {
		r.MsgSeqList = append(r.MsgSeqList, tasks.MsgSeqItem{MsgSeq: seq})
	}
	ids, err := c.Recall(ctx, r)
	fmt.Println("recall tasks:", len(ids), err)

	// An identical clear is refused while the first one waits.
	_, err = c.Clear(ctx, tasks.Clear{GroupId: "@TGS#2J4SZEAEL"})
	fmt.Println("first clear:", err)
	_, err = c.Clear(ctx, tasks.Clear{GroupId: "@TGS#2J4SZEAEL"})
	fmt.Println("second clear is a duplicate:", errors.Is(err, enqueue.ErrDuplicate))

	// A bad request enqueues nothing and names the field.
	r.MsgSeqList[13].MsgSeq = 0
	_, err = c.Recall(ctx, r)
	var ve *tasks.ValidationError
	fmt.Println(err, errors.As(err, &ve))
	// Output:
	// recall tasks: 3 <nil>
	// first clear: <nil>
	// second clear is a duplicate: true
	// enqueue recall: MsgSeqList[13].MsgSeq: must be at least 1 true
}

// A producer that must not lose work to a Sentinel failover confirms each
// task on a replica, and retries with the same TaskID, which cannot queue
// the operation twice.
func ExampleConfirmReplicas() {
	conn, err := asynq.ParseRedisURI("redis-sentinel://10.0.0.1:26379,10.0.0.2:26379?master=timq")
	if err != nil {
		panic(err)
	}
	c := enqueue.New(conn, enqueue.ConfirmReplicas(1, 30*time.Second))
	defer c.Close()

	m := tasks.Modify{GroupId: "@TGS#2J4SZEAEL", MsgSeq: 7, MsgBody: tasks.TextBody("edited")}
	for attempt := 1; ; attempt++ {
		_, err := c.Modify(context.Background(), m, enqueue.TaskID("order-42-edit"))
		if errors.Is(err, enqueue.ErrNotConfirmed) && attempt < 3 {
			continue // maybe queued, maybe lost: asking again settles it
		}
		fmt.Println(err)
		return
	}
}
