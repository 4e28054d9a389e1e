package cli

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/msgindex"
	"github.com/timq/timq/internal/purge"
	"github.com/timq/timq/internal/ratelimit"
	"github.com/timq/timq/worker"
)

const purgeUsage = `--sender USER [--group G]... [--since 2h | --since TIME] [--until TIME] [--topic T] [--dry-run] [--wait]

Finds USER's messages in the message index (fed by Tencent's after-send
callbacks through timq api) and recalls them as a job: 10 messages per call,
with the job's progress, failures, pause and cancel (timq jobs). Only USER's
messages in the window are recalled. --dry-run prints the count per group
and touches nothing. TIME is RFC 3339 (2026-01-02T15:04:05Z); --since also
takes a duration back from now. Redis comes from TIMQ_REDIS_URL.

For groups whose messages were never indexed, --scan-history N pages
group_msg_get_simple over the last N messages of each --group (20 a call,
within that endpoint's 200 calls/s shared by every process of the app); it
needs the API settings timq worker reads (TIMQ_SDKAPPID, TIMQ_SECRET_KEY,
TIMQ_REGION or TIMQ_API_BASE).`

// runPurge recalls a sender's indexed messages as a job.
func runPurge(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "purge", purgeUsage)
	var groups stringList
	sender := fs.String("sender", "", "the sender (From_Account) whose messages to recall")
	fs.Var(&groups, "group", "only this `GROUP` (repeatable)")
	since := fs.String("since", "", "only messages sent since this `TIME` or duration ago (2h)")
	until := fs.String("until", "", "only messages sent until this `TIME`")
	topic := fs.String("topic", "", "only this topic")
	reason := fs.String("reason", "", "the recall reason sent to Tencent")
	dryRun := fs.Bool("dry-run", false, "print the count per group; recall nothing")
	wait := fs.Bool("wait", false, "stay attached with a progress bar until the job ends")
	scan := fs.Int("scan-history", 0, "find the messages by paging group_msg_get_simple over the last `N` messages of each --group instead of the index (for groups never indexed); needs the API settings of timq worker")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected argument %q", fs.Arg(0))
	}
	if *sender == "" {
		return UsageError("--sender is required")
	}
	now := time.Now()
	q := msgindex.Query{Sender: *sender, Groups: groups, TopicID: *topic}
	var err error
	if q.Since, err = parseWhen("--since", *since, now, true); err != nil {
		return err
	}
	if q.Until, err = parseWhen("--until", *until, now, false); err != nil {
		return err
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && q.Until.Before(q.Since) {
		return UsageError("--until is before --since")
	}
	rc, err := config.LoadRedis(env.Getenv)
	if err != nil {
		return settingError(err)
	}
	rdb := rc.Client()
	defer rdb.Close()
	var plan purge.Plan
	if *scan != 0 {
		if *scan < 1 || *scan > 1_000_000 {
			return UsageError("--scan-history: want 1 to 1000000 messages per group, got %d", *scan)
		}
		if len(groups) == 0 {
			return UsageError("--scan-history needs --group: the groups whose history to scan")
		}
		if plan, err = scanHistory(ctx, env, rdb, q, *scan); err != nil {
			return err
		}
	} else if plan, err = purge.Find(ctx, msgindex.New(rdb, 0), q); err != nil {
		return namingRedis(env, err)
	}
	if *dryRun || len(plan.Messages) == 0 {
		names := make([]string, 0, len(plan.PerGroup))
		for g := range plan.PerGroup {
			names = append(names, g)
		}
		sort.Strings(names)
		for _, g := range names {
			fmt.Fprintf(env.Stdout, "%s\t%d\n", g, plan.PerGroup[g])
		}
		fmt.Fprintf(env.Stdout, "%d messages of %s in %d groups%s\n", len(plan.Messages), *sender, len(plan.PerGroup), map[bool]string{true: " (dry run: nothing recalled)", false: ""}[*dryRun])
		return nil
	}
	c, _, err := newEnqueueClient(env, rc.Conn)
	if err != nil {
		return err
	}
	defer c.Close()
	j, err := purge.Start(ctx, c, plan, *reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%d messages of %s in %d groups: job %s (timq jobs show %s)\n", len(plan.Messages), *sender, len(plan.PerGroup), j.ID, j.ID)
	if *wait {
		store, err := c.Jobs()
		if err != nil {
			return err
		}
		if j, err = watchJob(ctx, env, store, j.ID); err != nil {
			return err
		}
		printJob(env.Stdout, j)
	}
	return nil
}

// parseWhen reads a --since or --until value: RFC 3339, or (since only) a
// duration back from now.
func parseWhen(flag, v string, now time.Time, durationOK bool) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if durationOK {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			return now.Add(-d), nil
		}
		return time.Time{}, UsageError("%s: want a duration such as 2h or an RFC 3339 time, got %q", flag, v)
	}
	return time.Time{}, UsageError("%s: want an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", flag, v)
}

// scanHistory pages the groups' history through group_msg_get_simple,
// paced by that endpoint's budget shared in Redis with every other process
// of the app.
func scanHistory(ctx context.Context, env *Env, rdb redis.UniversalClient, q msgindex.Query, last int) (purge.Plan, error) {
	a, err := config.LoadAPI(env.Getenv)
	if err != nil {
		return purge.Plan{}, settingError(err)
	}
	rate, err := config.Float(env.Getenv, config.EnvRate, worker.DefaultRate, worker.MinRate, worker.MaxRate)
	if err != nil {
		return purge.Plan{}, settingError(err)
	}
	client, err := chatapi.New(chatapi.Config{SDKAppID: a.SDKAppID, SecretKey: a.SecretKey.Reveal(), Admin: a.Admin, Region: a.Region, BaseURL: a.BaseURL})
	if err != nil {
		return purge.Plan{}, err
	}
	lim := ratelimit.NewShared(rdb, fmt.Sprintf("%d:%s", a.SDKAppID, chatapi.EndpointGetSimple.Short()), rate, ratelimit.WithoutRamp())
	return purge.Scan(ctx, client, lim, q, last)
}
