package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// defaultRedisAddr is the real Redis used when REDIS_ADDR is not set.
const defaultRedisAddr = "127.0.0.1:6379"

// leaseTTL bounds how long a crashed bench holds a database of a shared
// Redis. The lease keys are the ones internal/testenv uses, so the bench and
// tests running at the same time never share a database.
const leaseTTL = 15 * time.Minute

// redisDB is the Redis database the bench runs in.
type redisDB struct {
	Addr string // HOST:PORT of the server
	DB   int
	Kind string // how it was found, for the report

	ctl     *redis.Client // database DB, for flushing and drain checks
	release func()
}

// Client returns the bench's own connection to the database.
func (r *redisDB) Client() *redis.Client { return r.ctl }

// Flush empties the database.
func (r *redisDB) Flush(ctx context.Context) error { return r.ctl.FlushDB(ctx).Err() }

// Close flushes the database and gives back what startRedis took: the
// lease, the redis-server process or the miniredis.
func (r *redisDB) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = r.ctl.FlushDB(ctx).Err()
	_ = r.ctl.Close()
	if r.release != nil {
		r.release()
	}
}

// startRedis finds a Redis: the real server at addr (REDIS_ADDR, default
// 127.0.0.1:6379) when it answers, leasing a free database 1-15 and flushing
// it; else a redis-server started on a free loopback port when the binary
// is installed (logging to logDir); else an in-process miniredis.
func startRedis(ctx context.Context, addr, logDir string, procs *procSet) (*redisDB, error) {
	if addr == "" {
		addr = defaultRedisAddr
	}
	if answers(ctx, addr) {
		return leaseDB(ctx, addr)
	}
	if bin, err := exec.LookPath("redis-server"); err == nil {
		return startRedisServer(ctx, bin, logDir, procs)
	}
	m, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("start miniredis: %w", err)
	}
	return &redisDB{Addr: m.Addr(), Kind: "miniredis (in-process; no Redis answered at " + addr + " and no redis-server binary)",
		ctl: redis.NewClient(&redis.Options{Addr: m.Addr()}), release: m.Close}, nil
}

func answers(ctx context.Context, addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 300 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.Ping(ctx).Err() == nil
}

func leaseDB(ctx context.Context, addr string) (*redisDB, error) {
	ctl0 := redis.NewClient(&redis.Options{Addr: addr, DB: 0})
	defer ctl0.Close()
	version := "?"
	if info, err := ctl0.Info(ctx, "server").Result(); err == nil {
		version = infoField(info, "redis_version")
	}
	b := make([]byte, 8)
	rand.Read(b)
	token := hex.EncodeToString(b)
	deadline := time.Now().Add(time.Minute)
	for {
		for db := 1; db <= 15; db++ {
			key := fmt.Sprintf("timq-test:lease:db:%d", db)
			ok, err := ctl0.SetNX(ctx, key, token, leaseTTL).Result()
			if err != nil {
				return nil, fmt.Errorf("lease a database of the Redis at %s: %w", addr, err)
			}
			if !ok {
				continue
			}
			release := func() {
				c := redis.NewClient(&redis.Options{Addr: addr})
				defer c.Close()
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if v, _ := c.Get(cctx, key).Result(); v == token {
					c.Del(cctx, key)
				}
			}
			r := &redisDB{Addr: addr, DB: db, release: release,
				Kind: fmt.Sprintf("real Redis %s at %s, database %d (shared server: other programs' load affects it)", version, addr, db),
				ctl:  redis.NewClient(&redis.Options{Addr: addr, DB: db})}
			if err := r.Flush(ctx); err != nil {
				r.Close()
				return nil, fmt.Errorf("flush database %d of the Redis at %s: %w", db, addr, err)
			}
			return r, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("every database 1-15 of the Redis at %s is leased (keys timq-test:lease:db:N in database 0)", addr)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func startRedisServer(ctx context.Context, bin, logDir string, procs *procSet) (*redisDB, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	_, err = procs.start(ctx, "redis-server", bin, []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--protected-mode", "yes"}, nil, logDir)
	if err != nil {
		return nil, err
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := c.Ping(ctx).Err(); err == nil {
			break
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			c.Close()
			return nil, fmt.Errorf("redis-server on %s does not answer: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	version := "?"
	if info, err := c.Info(ctx, "server").Result(); err == nil {
		version = infoField(info, "redis_version")
	}
	return &redisDB{Addr: addr, Kind: fmt.Sprintf("redis-server %s started on %s (no Redis answered at the default address)", version, addr), ctl: c}, nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// infoField returns one "name:value" field of an INFO answer.
func infoField(info, name string) string {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+":"); ok {
			return v
		}
	}
	return ""
}

// queueDepth is the number of tasks of the given asynq queues that are not
// done: pending, active, scheduled or waiting to retry. It reads asynq
// v0.26's keys directly (asynq:{QUEUE}:pending ...), 4 commands per queue in
// one pipeline; the bench's own connection, so not counted as the workers'.
func queueDepth(ctx context.Context, c *redis.Client, queues []string) (int64, error) {
	pipe := c.Pipeline()
	var cmds []*redis.IntCmd
	for _, q := range queues {
		p := "asynq:{" + q + "}:"
		cmds = append(cmds, pipe.LLen(ctx, p+"pending"), pipe.LLen(ctx, p+"active"),
			pipe.ZCard(ctx, p+"scheduled"), pipe.ZCard(ctx, p+"retry"))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	var n int64
	for _, c := range cmds {
		n += c.Val()
	}
	return n, nil
}
