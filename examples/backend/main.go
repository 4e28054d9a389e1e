// Command backend is a program in a module of its own that uses timq the
// way an application backend does: it enqueues a clear, a recall of 12
// messages and a modify with a text body through package enqueue, then runs
// a worker through package worker until they are done.
//
// It reads its settings from the environment: REDIS_ADDR (default
// 127.0.0.1:6379), TIMQ_API_BASE_URL (the API, or timq's emulator),
// TIMQ_SDKAPPID, TIMQ_SECRET_KEY and GROUP_ID. It exits 0 once every task
// has run, 1 on any error.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/tasks"
	"github.com/timq/timq/worker"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "backend:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	redisAddr := getenv("REDIS_ADDR", "127.0.0.1:6379")
	appID, err := strconv.ParseUint(os.Getenv("TIMQ_SDKAPPID"), 10, 64)
	if err != nil {
		return fmt.Errorf("TIMQ_SDKAPPID: %w", err)
	}
	group := getenv("GROUP_ID", "@TGS#2J4SZEAEL")
	redisDB, _ := strconv.Atoi(getenv("REDIS_DB", "0"))
	conn := asynq.RedisClientOpt{Addr: redisAddr, DB: redisDB}

	// README:enqueue start
	client := enqueue.New(conn)
	defer client.Close()

	// Clear the group's history up to seq 3.
	upTo := uint64(3)
	if _, err := client.Clear(ctx, tasks.Clear{GroupId: group, MsgSeq: &upTo}); err != nil {
		return err
	}
	// Recall 12 messages: timq splits them into calls of 10 and 2.
	ids, err := client.Recall(ctx, tasks.Recall{GroupId: group, Reason: "spam",
		MsgSeqList: tasks.Seqs(10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21)})
	if err != nil {
		return err
	}
	// Replace message 25's body with a text.
	if _, err := client.Modify(ctx, tasks.Modify{GroupId: group, MsgSeq: 25,
		MsgBody: tasks.TextBody("[removed by a moderator]")}); err != nil {
		return err
	}
	// README:enqueue end
	fmt.Println("recall tasks:", len(ids))

	// README:worker start
	w, err := worker.New(worker.Config{
		Redis: conn,
		API: worker.API{
			SDKAppID:  appID,
			SecretKey: os.Getenv("TIMQ_SECRET_KEY"),
			BaseURL:   os.Getenv("TIMQ_API_BASE_URL"), // or Region: "sgp"
		},
		Logger: slog.New(slog.NewJSONHandler(os.Stderr, nil)),
	})
	if err != nil {
		return err
	}
	if err := w.Start(); err != nil {
		return err
	}
	defer w.Shutdown()
	// README:worker end

	return waitDone(ctx, conn)
}

// waitDone waits until no timq task is waiting, running or due for retry.
func waitDone(ctx context.Context, conn asynq.RedisConnOpt) error {
	insp := asynq.NewInspector(conn)
	defer insp.Close()
	for {
		left := 0
		for _, q := range tasks.Queues() {
			info, err := insp.GetQueueInfo(q)
			if err != nil {
				continue // a queue no task reached yet
			}
			left += info.Pending + info.Active + info.Scheduled + info.Retry
		}
		if left == 0 {
			fmt.Println("all tasks done")
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d tasks still not done: %w", left, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
