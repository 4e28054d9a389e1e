package enqueue_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/testenv"
	"github.com/timq/timq/tasks"
)

// These tests start loopback redis-server processes with a replica. They
// skip without redis-server on PATH, and fail then when CI=true.

// redisServer starts redis-server with args, killed when the test ends, and
// returns a client for it once it answers.
func redisServer(t *testing.T, args ...string) (addr string, c *redis.Client) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not on PATH; CI must install Redis")
		}
		t.Skip("redis-server is not on PATH")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	argv := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0", "--logfile", filepath.Join(dir, "redis.log")}, args...)
	cmd := exec.Command("redis-server", argv...)
	dieWithTest(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addr = fmt.Sprintf("127.0.0.1:%d", port)
	c = redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	testenv.WaitFor(t, 10*time.Second, addr+" answers", func() bool { return c.Ping(context.Background()).Err() == nil })
	return addr, c
}

// replicaOnline waits until primary reports one replica in sync.
func replicaOnline(t *testing.T, primary *redis.Client) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, "the replica is in sync", func() bool {
		info, err := primary.Info(context.Background(), "replication").Result()
		return err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online")
	})
}

func TestConfirmReplicasWithAReplica(t *testing.T) {
	t.Parallel()
	paddr, primary := redisServer(t)
	host, port, _ := strings.Cut(paddr, ":")
	_, replica := redisServer(t, "--replicaof", host, port, "--enable-debug-command", "local")
	replicaOnline(t, primary)
	ctx := context.Background()
	c := enqueue.New(asynq.RedisClientOpt{Addr: paddr}, enqueue.ConfirmReplicas(1, 10*time.Second))
	t.Cleanup(func() { _ = c.Close() })

	m := tasks.Modify{GroupId: group, MsgSeq: 1, MsgBody: tasks.TextBody("x")}
	id, err := c.Modify(ctx, m)
	if err != nil {
		t.Fatalf("Modify = %q, %v", id, err)
	}
	// Confirmed means on the replica already, without waiting.
	if n, err := replica.Exists(ctx, "asynq:{"+tasks.QueueModify+"}:t:"+id).Result(); err != nil || n != 1 {
		t.Errorf("task %s on the replica: %d, %v; want it there when Modify returns", id, n, err)
	}
	// De-duplication: a second identical modify is refused, not confirmed.
	if id2, err := c.Modify(ctx, m); !errors.Is(err, enqueue.ErrDuplicate) || !errors.Is(err, asynq.ErrDuplicateTask) || id2 != "" {
		t.Errorf("identical Modify = %q, %v; want ErrDuplicate", id2, err)
	}
	// With TaskID the same call again is this task (its own unique lock and
	// ID): confirmed, not a duplicate.
	m.MsgSeq = 2
	for range 2 {
		if id, err := c.Modify(ctx, m, enqueue.TaskID("fixed")); err != nil || id != "fixed" {
			t.Errorf("Modify with TaskID(fixed) = %q, %v; want fixed, nil both times", id, err)
		}
	}
	// ... but another task's lock is still a duplicate.
	if id, err := c.Modify(ctx, m, enqueue.TaskID("other")); !errors.Is(err, enqueue.ErrDuplicate) || id != "" {
		t.Errorf("identical Modify with another TaskID = %q, %v; want ErrDuplicate", id, err)
	}

	// A replica that does not answer for a while: the call keeps checking
	// and returns once the replica has caught up.
	slept := make(chan error, 1)
	go func() { slept <- replica.Do(context.Background(), "DEBUG", "SLEEP", "1.5").Err() }()
	// Start once the replica is asleep (a PING no longer answers within
	// 50 ms), not after a fixed head start a loaded machine may not give.
	probe := redis.NewClient(&redis.Options{Addr: replica.Options().Addr, ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer probe.Close()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if err := probe.Ping(context.Background()).Err(); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica still answers PING 5s after DEBUG SLEEP was sent")
		}
	}
	start := time.Now()
	ids, err := c.Recall(ctx, tasks.Recall{GroupId: group, MsgSeqList: seqs(1, 25)})
	if err != nil || len(ids) != 3 {
		t.Fatalf("Recall while the replica sleeps = %v, %v", ids, err)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("Recall returned after %v, before the sleeping replica could acknowledge", took)
	}
	if err := <-slept; err != nil {
		t.Fatalf("DEBUG SLEEP on the replica: %v", err)
	}
}

func TestConfirmReplicasSharesRoundsBetweenCalls(t *testing.T) {
	t.Parallel()
	paddr, primary := redisServer(t)
	host, port, _ := strings.Cut(paddr, ":")
	redisServer(t, "--replicaof", host, port)
	replicaOnline(t, primary)
	ctx := context.Background()
	c := enqueue.New(asynq.RedisClientOpt{Addr: paddr}, enqueue.ConfirmReplicas(1, 10*time.Second))
	t.Cleanup(func() { _ = c.Close() })

	const calls = 400
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	sem := make(chan struct{}, 32)
	for i := range calls {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := c.Modify(ctx, tasks.Modify{GroupId: group, MsgSeq: uint64(i + 1), MsgBody: tasks.TextBody("x")}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rounds, err := primary.Get(ctx, enqueue.FenceKey(tasks.QueueModify)).Int()
	if err != nil {
		t.Fatal(err)
	}
	if rounds >= calls {
		t.Errorf("%d fences for %d concurrent calls; want them shared", rounds, calls)
	}
	t.Logf("%d calls from 32 goroutines confirmed with %d fence+WAIT rounds", calls, rounds)
}

func TestConfirmReplicasOnCluster(t *testing.T) {
	t.Parallel()
	// One shard holding every slot, with a replica.
	clusterArgs := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}
	paddr, primary := redisServer(t, clusterArgs...)
	_, replica := redisServer(t, clusterArgs...)
	ctx := context.Background()
	if err := primary.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatal(err)
	}
	host, port, _ := strings.Cut(paddr, ":")
	if err := replica.ClusterMeet(ctx, host, port).Err(); err != nil {
		t.Fatal(err)
	}
	primaryID, err := primary.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "the replica follows the primary", func() bool {
		return replica.ClusterReplicate(ctx, primaryID).Err() == nil
	})
	replicaOnline(t, primary)
	testenv.WaitFor(t, 20*time.Second, "cluster_state:ok", func() bool {
		info, err := primary.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	})

	c := enqueue.New(asynq.RedisClusterClientOpt{Addrs: []string{paddr}}, enqueue.ConfirmReplicas(1, 10*time.Second))
	t.Cleanup(func() { _ = c.Close() })
	for _, q := range []string{tasks.QueueModify, "custom"} {
		id, err := c.Modify(ctx, tasks.Modify{GroupId: group, MsgSeq: 1, MsgBody: tasks.TextBody("x")}, enqueue.Queue(q))
		if err != nil {
			t.Fatalf("Modify on Cluster in %s = %q, %v", q, id, err)
		}
		conn := replica.Conn() // READONLY: read the replica's own copy
		err = conn.ReadOnly(ctx).Err()
		var exists int64
		if err == nil {
			exists, err = conn.Exists(ctx, "asynq:{"+q+"}:t:"+id).Result()
		}
		conn.Close()
		if err != nil || exists != 1 {
			t.Errorf("task %s on the replica: %d, %v; want it there when Modify returns", id, exists, err)
		}
	}
}

// loseOnce is a RedisConnOpt whose client, before the first pipeline that
// checks a task key, removes that task from the primary as a failover
// would: enqueued on the old primary, gone on the new one, where the fence
// then goes. A fence alone would be acknowledged although the task is lost.
type loseOnce struct {
	addr string
	once sync.Once
	lost chan string // the ID removed
}

func (o *loseOnce) MakeRedisClient() any {
	c := redis.NewClient(&redis.Options{Addr: o.addr})
	c.AddHook(o)
	return c
}

func (o *loseOnce) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (o *loseOnce) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (o *loseOnce) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			key, ok := cmd.Args()[len(cmd.Args())-1].(string)
			if cmd.Name() != "exists" || !ok || !strings.Contains(key, "}:t:") {
				continue
			}
			o.once.Do(func() {
				queue := key[strings.Index(key, "{")+1 : strings.Index(key, "}")]
				id := key[strings.LastIndex(key, ":")+1:]
				c := redis.NewClient(&redis.Options{Addr: o.addr})
				defer c.Close()
				if lock := c.HGet(ctx, key, "unique_key").Val(); lock != "" {
					_ = c.Del(ctx, lock).Err() // written with the task, lost with it
				}
				_ = c.Del(ctx, key).Err()
				_ = c.LRem(ctx, "asynq:{"+queue+"}:pending", 0, id).Err()
				o.lost <- id
			})
		}
		return next(ctx, cmds)
	}
}

func TestConfirmReplicasEnqueuesALostTaskAgain(t *testing.T) {
	t.Parallel()
	paddr, primary := redisServer(t)
	host, port, _ := strings.Cut(paddr, ":")
	_, replica := redisServer(t, "--replicaof", host, port)
	replicaOnline(t, primary)
	ctx := context.Background()
	opt := &loseOnce{addr: paddr, lost: make(chan string, 1)}
	c := enqueue.New(opt, enqueue.ConfirmReplicas(1, 10*time.Second))
	t.Cleanup(func() { _ = c.Close() })

	id, err := c.Modify(ctx, tasks.Modify{GroupId: group, MsgSeq: 1, MsgBody: tasks.TextBody("x")}, enqueue.TaskID("lost-1"))
	if err != nil || id != "lost-1" {
		t.Fatalf("Modify = %q, %v", id, err)
	}
	select {
	case lost := <-opt.lost:
		if lost != "lost-1" {
			t.Fatalf("the hook removed %q, want lost-1", lost)
		}
	default:
		t.Fatal("the hook never removed the task: the test tests nothing")
	}
	// Enqueued again, once, and on the replica when Modify returns.
	key := "asynq:{" + tasks.QueueModify + "}:t:lost-1"
	for name, c := range map[string]*redis.Client{"primary": primary, "replica": replica} {
		if n, err := c.Exists(ctx, key).Result(); err != nil || n != 1 {
			t.Errorf("task lost-1 on the %s: %d, %v; want it there (a fence alone confirms a lost task)", name, n, err)
		}
	}
	if ids, err := primary.LRange(ctx, "asynq:{"+tasks.QueueModify+"}:pending", 0, -1).Result(); err != nil || len(ids) != 1 || ids[0] != "lost-1" {
		t.Errorf("pending list %v, %v; want [lost-1] once", ids, err)
	}
}

// A job confirmed on a replica is there, operations and all, when Close
// returns.
func TestConfirmReplicasConfirmsAJob(t *testing.T) {
	t.Parallel()
	paddr, primary := redisServer(t)
	host, port, _ := strings.Cut(paddr, ":")
	_, replica := redisServer(t, "--replicaof", host, port)
	replicaOnline(t, primary)
	ctx := context.Background()
	c := enqueue.New(asynq.RedisClientOpt{Addr: paddr}, enqueue.ConfirmReplicas(1, 10*time.Second))
	t.Cleanup(func() { _ = c.Close() })
	w, err := c.NewJob()
	if err != nil {
		t.Fatal(err)
	}
	const n = 2500 // more than one flush of the writer
	for s := uint64(1); s <= n; s++ {
		if err := w.Add(ctx, tasks.Modify{GroupId: group, MsgSeq: s, MsgBody: tasks.TextBody("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Add(ctx, tasks.Recall{GroupId: group, MsgSeqList: seqs(1, 3)}); err != nil {
		t.Fatal(err)
	}
	j, err := w.Close(ctx)
	if err != nil || j.Counts.Total != n+1 {
		t.Fatalf("Close = %+v, %v", j, err)
	}
	key := "timq:job:{" + j.ID + "}"
	if got := replica.LLen(ctx, key+":ops:modify").Val(); got != n {
		t.Errorf("the replica holds %d of the job's %d modifies when Close returns", got, n)
	}
	if got := replica.LLen(ctx, key+":ops:recall").Val(); got != 1 {
		t.Errorf("the replica holds %d of the job's 1 recall", got)
	}
	if replica.HGet(ctx, key, "total").Val() != strconv.Itoa(n+1) || !replica.SIsMember(ctx, "timq:jobs:active", j.ID).Val() {
		t.Errorf("the replica lacks the job's hash or its place among the active jobs")
	}
}
