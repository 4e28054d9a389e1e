// Package testenv gives tests the services they run against: a Redis
// database of their own (the real server at REDIS_ADDR when it answers, an
// embedded miniredis otherwise), a running emulator, the timq binary and
// child processes (proc.go), and one way to wait for a condition
// (Eventually). Only tests import it.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// DefaultRedisAddr is the real Redis tests use when REDIS_ADDR is not set.
const DefaultRedisAddr = "127.0.0.1:6379"

// leaseTTL bounds how long a crashed test process holds a database.
const leaseTTL = 15 * time.Minute

// RedisDB is one Redis database that belongs to a single test: empty when
// the test starts and emptied when it ends.
type RedisDB struct {
	Addr string
	DB   int
	// Real is true for a real Redis server, false for miniredis.
	Real bool
	// Mini is the embedded server when Real is false.
	Mini *miniredis.Miniredis
}

// ConnOpt returns the connection option asynq takes.
func (r *RedisDB) ConnOpt() asynq.RedisClientOpt {
	return asynq.RedisClientOpt{Addr: r.Addr, DB: r.DB}
}

// URL returns the database as a redis:// URL (for TIMQ_REDIS_URL).
func (r *RedisDB) URL() string { return fmt.Sprintf("redis://%s/%d", r.Addr, r.DB) }

// Client returns a go-redis client for the database, closed when the test ends.
func (r *RedisDB) Client(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DB: r.DB})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Redis returns a Redis database for this test alone.
//
// With a real server at REDIS_ADDR (default 127.0.0.1:6379) it leases one of
// databases 1-15 (a key in database 0 marks the lease, so parallel test
// processes never share one), flushes it, and flushes and frees it at the
// end. When no server answers, it starts a miniredis for the test. Set
// TIMQ_TEST_REDIS=mini to force miniredis, =real to fail without a server.
func Redis(t testing.TB) *RedisDB {
	t.Helper()
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = DefaultRedisAddr
	}
	mode := os.Getenv("TIMQ_TEST_REDIS")
	if mode != "mini" && realRedisAnswers(addr) {
		return leaseDB(t, addr)
	}
	if mode == "real" {
		t.Fatalf("testenv: TIMQ_TEST_REDIS=real but no Redis answers at %s", addr)
	}
	m := miniredis.RunT(t)
	return &RedisDB{Addr: m.Addr(), Mini: m}
}

// RealRedisAvailable reports whether the real server answers (some tests,
// such as persistence and cluster tests, need a real redis-server binary or
// server and say so).
func RealRedisAvailable() bool {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = DefaultRedisAddr
	}
	return os.Getenv("TIMQ_TEST_REDIS") != "mini" && realRedisAnswers(addr)
}

func realRedisAnswers(addr string) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 300 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Ping(ctx).Err() == nil
}

func leaseDB(t testing.TB, addr string) *RedisDB {
	t.Helper()
	ctx := context.Background()
	ctl := redis.NewClient(&redis.Options{Addr: addr, DB: 0})
	defer ctl.Close()
	token := randomToken()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		for db := 1; db <= 15; db++ {
			key := fmt.Sprintf("timq-test:lease:db:%d", db)
			ok, err := ctl.SetNX(ctx, key, token, leaseTTL).Result()
			if err != nil {
				t.Fatalf("testenv: lease a Redis database at %s: %v", addr, err)
			}
			if !ok {
				continue
			}
			c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
			if err := c.FlushDB(ctx).Err(); err != nil {
				c.Close()
				t.Fatalf("testenv: flush Redis database %d: %v", db, err)
			}
			c.Close()
			t.Cleanup(func() { releaseDB(addr, db, key, token) })
			return &RedisDB{Addr: addr, DB: db, Real: true}
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: all 15 Redis databases at %s stayed leased for 3 minutes", addr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func releaseDB(addr string, db int, key, token string) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	_ = c.FlushDB(ctx).Err()
	c.Close()
	ctl := redis.NewClient(&redis.Options{Addr: addr, DB: 0})
	defer ctl.Close()
	// Free the lease only if it is still ours.
	_ = ctl.Eval(ctx, `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`, []string{key}, token).Err()
}

func randomToken() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
