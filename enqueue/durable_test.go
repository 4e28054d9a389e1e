package enqueue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// The tests here run against testenv.Redis: one Redis with no replica, so
// WAIT 1 answers 0. durable_replica_test.go starts real replicas.

func TestConfirmReplicasZeroIsOff(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	c := enqueue.New(rdb.ConnOpt(), enqueue.ConfirmReplicas(0, time.Second))
	t.Cleanup(func() { _ = c.Close() })
	id, err := c.Modify(context.Background(), tasks.Modify{GroupId: group, MsgSeq: 1, MsgBody: tasks.TextBody("x")})
	if err != nil || id == "" {
		t.Fatalf("Modify with ConfirmReplicas(0) = %q, %v; want queued as without it", id, err)
	}
	if n, err := rdb.Client(t).Exists(context.Background(), enqueue.FenceKey(tasks.QueueModify)).Result(); err != nil || n != 0 {
		t.Errorf("ConfirmReplicas(0) wrote the fence key (%d, %v); want no extra command", n, err)
	}
}

func TestConfirmReplicasWithoutReplicaFailsNamingTheSetting(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	c := enqueue.New(rdb.ConnOpt(), enqueue.ConfirmReplicas(1, 300*time.Millisecond))
	t.Cleanup(func() { _ = c.Close() })
	insp := asynq.NewInspector(rdb.ConnOpt())
	t.Cleanup(func() { _ = insp.Close() })

	start := time.Now()
	id, err := c.Modify(context.Background(), tasks.Modify{GroupId: group, MsgSeq: 1, MsgBody: tasks.TextBody("x")}, enqueue.TaskID("m-1"))
	took := time.Since(start)
	if !errors.Is(err, enqueue.ErrNotConfirmed) {
		t.Fatalf("Modify with ConfirmReplicas(1) and no replica = %q, %v; want ErrNotConfirmed", id, err)
	}
	for _, want := range []string{"enqueue modify: task m-1", "may not be durable", "ConfirmReplicas: 1 replica(s); gave up after ", "WAIT 1: 0 replicas acknowledged"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if took < 300*time.Millisecond || took > 3*time.Second {
		t.Errorf("gave up after %v, want about the 300ms asked", took)
	}
	// The ID comes back: the task is on the primary, just not confirmed.
	if id != "m-1" {
		t.Errorf("returned ID %q, want m-1 (it may be queued)", id)
	}
	if info, err := insp.GetTaskInfo(tasks.QueueModify, "m-1"); err != nil || info.State != asynq.TaskStatePending {
		t.Errorf("task m-1 on the primary: %v, %v; want pending", info, err)
	}
}

func TestConfirmReplicasStopsWithTheContext(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	c := enqueue.New(rdb.ConnOpt(), enqueue.ConfirmReplicas(1, time.Minute))
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	ids, err := c.Recall(ctx, tasks.Recall{GroupId: group, MsgSeqList: seqs(1, 12)})
	if !errors.Is(err, enqueue.ErrNotConfirmed) || time.Since(start) > 3*time.Second {
		t.Fatalf("Recall with a 200ms context = %v, %v after %v; want ErrNotConfirmed at the deadline", ids, err, time.Since(start))
	}
	if len(ids) != 2 {
		t.Errorf("returned %d IDs, want the 2 tasks that may be queued", len(ids))
	}
}

func TestTaskID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	m := tasks.Modify{GroupId: group, MsgSeq: 3, MsgBody: tasks.TextBody("x")}
	id, err := b.client.Modify(ctx, m, enqueue.TaskID("my-id"), enqueue.NoDedup())
	if err != nil || id != "my-id" {
		t.Fatalf("Modify with TaskID = %q, %v", id, err)
	}
	b.task(t, tasks.QueueModify, "my-id")
	// Again with the same ID: not queued twice, and not an error.
	id, err = b.client.Modify(ctx, m, enqueue.TaskID("my-id"), enqueue.NoDedup())
	if err != nil || id != "my-id" {
		t.Fatalf("Modify again with the same TaskID = %q, %v; want my-id, nil", id, err)
	}
	if info, err := b.insp.GetQueueInfo(tasks.QueueModify); err != nil || info.Size != 1 {
		t.Errorf("queue holds %v tasks (%v), want 1", info.Size, err)
	}
	// A split recall numbers its parts.
	ids, err := b.client.Recall(ctx, tasks.Recall{GroupId: group, MsgSeqList: seqs(1, 15)}, enqueue.TaskID("r"))
	if err != nil || strings.Join(ids, ",") != "r-1,r-2" {
		t.Fatalf("Recall of 15 with TaskID(r) = %v, %v; want [r-1 r-2]", ids, err)
	}
	if _, err := b.client.Clear(ctx, tasks.Clear{GroupId: group}, enqueue.TaskID(" ")); err == nil || !strings.Contains(err.Error(), "option TaskID: ") {
		t.Errorf("blank TaskID: %v, want an option error", err)
	}
}

// A job that cannot be confirmed on the replicas is refused before it is
// visible: nothing is queued and nothing stays behind.
func TestConfirmReplicasRefusesAJobItCannotConfirm(t *testing.T) {
	t.Parallel()
	rdb := testenv.Redis(t)
	c := enqueue.New(rdb.ConnOpt(), enqueue.ConfirmReplicas(1, 300*time.Millisecond))
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	w, err := c.NewJob(enqueue.JobName("durable"))
	if err != nil {
		t.Fatal(err)
	}
	for s := uint64(1); s <= 5; s++ {
		if err := w.Add(ctx, tasks.Modify{GroupId: group, MsgSeq: s, MsgBody: tasks.TextBody("x")}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = w.Close(ctx)
	if !errors.Is(err, enqueue.ErrNotConfirmed) || !strings.Contains(err.Error(), "nothing was queued") || !strings.Contains(err.Error(), "WAIT 1: 0 replicas acknowledged") {
		t.Fatalf("Close with ConfirmReplicas(1) and no replica = %v; want ErrNotConfirmed saying nothing was queued", err)
	}
	store, _ := c.Jobs()
	if js, err := store.List(ctx, 0); err != nil || len(js) != 0 {
		t.Fatalf("jobs = %+v, %v; want none", js, err)
	}
	if keys := rdb.Client(t).Keys(ctx, "timq:job:{"+w.ID()+"}:ops:*").Val(); len(keys) != 0 {
		t.Errorf("the refused job's operations stay: %v", keys)
	}
}
