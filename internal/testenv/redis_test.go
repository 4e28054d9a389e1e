package testenv

import (
	"context"
	"testing"
)

func TestRedisIsPrivateAndEmpty(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := Redis(t), Redis(t)
	if a.Real && a.DB == b.DB {
		t.Fatalf("two tests got the same database %d", a.DB)
	}
	ca, cb := a.Client(t), b.Client(t)
	if err := ca.Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := cb.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("key written in one test's database is visible in another's: n=%d err=%v", n, err)
	}
	if n, _ := ca.DBSize(ctx).Result(); n != 1 {
		t.Fatalf("database not empty at start: %d keys", n)
	}
}
