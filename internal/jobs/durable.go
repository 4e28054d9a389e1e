package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotConfirmed is matched by the error of a Close that could not confirm
// the job on Spec.Replicas replicas in time.
var ErrNotConfirmed = errors.New("not confirmed on the replicas, so it may not be durable")

// DefaultConfirmTimeout is how long Close confirms a job on its replicas
// when Spec.ConfirmTimeout is not set.
const DefaultConfirmTimeout = 30 * time.Second

// confirmStep is the longest WAIT of one round: a round that times out is
// followed by a new check, which notices a failover.
const confirmStep = time.Second

// check is one key Close expects on the primary: a list of at least want
// elements, or (want 0) a member of a set or sorted set, or a hash field.
type check struct {
	key    string
	kind   string // "list", "hash", "zset", "set"
	member string // the member or field, for hash, zset and set
	want   int64  // for list
	fence  string // a key in the same slot the round writes before WAIT
}

// confirm checks each key on the primary that holds it and waits until n
// replicas have it: per key, one connection runs the check and a write of a
// fence key in the key's slot, then WAIT n. The replication stream is
// ordered, so a replica that acknowledges the fence has the key; the check
// is what makes this hold across a failover, since a write the old primary
// acknowledged and lost is found missing on the new one. A key found
// missing is an error at once; unacknowledged rounds are tried again until
// deadline, then the error matches ErrNotConfirmed.
func confirm(ctx context.Context, rdb redis.UniversalClient, n int, deadline time.Time, checks []check) error {
	for _, c := range checks {
		for {
			acked, err := confirmOne(ctx, rdb, n, min(confirmStep, max(time.Until(deadline), time.Millisecond)), c)
			if err != nil {
				return err
			}
			if acked >= int64(n) {
				break
			}
			if !time.Now().Before(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s: WAIT %d: %d replicas acknowledged: %w", c.key, n, acked, ErrNotConfirmed)
			}
		}
	}
	return nil
}

func confirmOne(ctx context.Context, rdb redis.UniversalClient, n int, wait time.Duration, c check) (int64, error) {
	var node *redis.Client
	switch r := rdb.(type) {
	case *redis.Client:
		node = r
	case *redis.ClusterClient:
		var err error
		if node, err = r.MasterForKey(ctx, c.key); err != nil {
			return 0, fmt.Errorf("find the primary of %s: %w", c.key, err)
		}
	default:
		return 0, fmt.Errorf("confirming on replicas: unsupported Redis client %T", rdb)
	}
	conn := node.Conn()
	defer conn.Close()
	var got *redis.IntCmd
	var member *redis.BoolCmd
	var score *redis.FloatCmd
	_, err := conn.Pipelined(ctx, func(p redis.Pipeliner) error {
		switch c.kind {
		case "list":
			got = p.LLen(ctx, c.key)
		case "hash":
			member = p.HExists(ctx, c.key, c.member)
		case "set":
			member = p.SIsMember(ctx, c.key, c.member)
		case "zset":
			score = p.ZScore(ctx, c.key, c.member)
		}
		p.Set(ctx, c.fence, 1, time.Minute)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("check %s: %w", c.key, err)
	}
	var present bool
	switch {
	case got != nil:
		present = got.Val() >= c.want
	case member != nil:
		present = member.Val()
	case score != nil:
		present = score.Err() == nil
	}
	if !present {
		return 0, fmt.Errorf("%s is not on the primary (a failover lost it): %w", c.key, ErrNotConfirmed)
	}
	acked, err := conn.Wait(ctx, n, wait).Result()
	if err != nil {
		return 0, fmt.Errorf("WAIT %d: %w", n, err)
	}
	return acked, nil
}
