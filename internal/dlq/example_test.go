package dlq_test

import (
	"context"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/internal/dlq"
)

func Example() {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	store := dlq.New(rdb)
	_ = store.Add(ctx, dlq.Entry{
		ID:       dlq.RecallEntryID("5b1c", 42),
		Type:     "timq:recall",
		Queue:    "timq-recall",
		TaskID:   "5b1c",
		Payload:  []byte(`{"GroupId":"@TGS#2J4SZEAEL","MsgSeqList":[{"MsgSeq":42}]}`),
		Code:     10031,
		Info:     "past recall time limit",
		Reason:   dlq.ReasonPermanent,
		Attempts: 1,
		FailedAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
	})
	entries, _ := store.List(ctx, dlq.ListOptions{Code: 10031, Limit: 10})
	for _, e := range entries {
		fmt.Println(e.ID, e.Code, e.Info)
	}
	n, _ := store.Delete(ctx, "5b1c/42")
	fmt.Println("deleted", n)
	// Output:
	// 5b1c/42 10031 past recall time limit
	// deleted 1
}
