package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/internal/dlq"
)

const dlqUsage = `Usage:
  timq dlq ls [--json] [--code N] [--limit N] [--offset N]
  timq dlq show ID
  timq dlq requeue (ID... | --all | --code N)
  timq dlq purge (ID... | --all | --code N)

The dead-letter store keeps every operation that failed for good until it is
requeued (enqueued again as a new task, then removed) or purged. Requeue
honours TIMQ_ENQUEUE_REPLICAS (see timq enqueue --help): an entry is removed
only once its task is confirmed on that many replicas.`

// runDLQ lists, shows, requeues or purges entries of the dead-letter store
// in the Redis named by TIMQ_REDIS_URL / TIMQ_REDIS_CLUSTER_ADDRS.
func runDLQ(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return UsageError("missing subcommand: ls, show, requeue or purge (timq dlq --help)")
	}
	sub, rest := args[0], args[1:]
	var run func(context.Context, *Env, []string) error
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprintln(env.Stdout, dlqUsage)
		return nil
	case "ls":
		run = runDLQList
	case "show":
		run = runDLQShow
	case "requeue":
		run = runDLQRequeue
	case "purge":
		run = runDLQPurge
	default:
		return UsageError("unknown subcommand %q: want ls, show, requeue or purge", sub)
	}
	return namingRedis(env, run(ctx, env, rest), dlq.ErrNotFound, dlq.ErrInvalidPayload)
}

// namingRedis adds the Redis that a command tried (its URL without a
// password) to err, so that "i/o timeout" says where. Usage errors, errors
// that already name it and those matching one of the answers in exempt
// (the store answered; Redis is not the problem) are returned as they are.
func namingRedis(env *Env, err error, exempt ...error) error {
	if err == nil || isUsage(err) || strings.Contains(err.Error(), "(Redis ") {
		return err
	}
	for _, e := range exempt {
		if errors.Is(err, e) {
			return err
		}
	}
	r, lerr := config.LoadRedis(getenvOr(env))
	if lerr != nil {
		return err
	}
	return fmt.Errorf("%w (Redis %s)", err, r.Display)
}

// dlqConn is an open dead-letter store and the Redis it is in.
type dlqConn struct {
	redis config.Redis
	store *dlq.Store
	close func()
}

func openDLQ(env *Env) (*dlqConn, error) {
	r, err := config.LoadRedis(getenvOr(env))
	if err != nil {
		return nil, err
	}
	rdb := r.Client()
	return &dlqConn{redis: r, store: dlq.New(rdb), close: func() { _ = rdb.Close() }}, nil
}

func runDLQList(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "dlq ls", "[--json] [--code N] [--limit N] [--offset N]")
	asJSON := fs.Bool("json", false, `print a JSON object instead of a table: {"total":N,"offset":N,"limit":N,"truncated":BOOL,"entries":[...]}; total counts every matching entry in the store`)
	code := fs.Int("code", 0, "only entries with this ErrorCode (0: all)")
	limit := fs.Int("limit", 100, "at most this many entries, oldest first (0: all)")
	offset := fs.Int("offset", 0, "skip this many entries first")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return UsageError("unexpected argument %q (timq dlq show ID shows one entry)", fs.Arg(0))
	case *code < 0:
		return UsageError("--code must be 0 or more, got %d", *code)
	case *limit < 0:
		return UsageError("--limit must be 0 or more, got %d", *limit)
	case *offset < 0:
		return UsageError("--offset must be 0 or more, got %d", *offset)
	}
	c, err := openDLQ(env)
	if err != nil {
		return err
	}
	defer c.close()
	entries, err := c.store.List(ctx, dlq.ListOptions{Offset: *offset, Limit: *limit, Code: *code})
	if err != nil {
		return err
	}
	total, err := dlqTotal(ctx, c.store, *code)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(env.Stdout, dlqListing{
			Total: total, Offset: *offset, Limit: *limit, Code: *code,
			Truncated: int64(*offset+len(entries)) < total, Entries: entries,
		})
	}
	if len(entries) == 0 {
		if total == 0 {
			fmt.Fprintf(env.Stdout, "no dead letters%s\n", codeNote(*code))
		} else {
			fmt.Fprintf(env.Stdout, "no dead letters from #%d on (%d in the store%s)\n", *offset+1, total, codeNote(*code))
		}
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tGROUP\tCODE\tATTEMPTS\tFAILED_AT\tINFO")
	for _, e := range entries {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n",
			cell(e.ID, 0), cell(e.Type, 0), cell(e.GroupId, 0), e.Code, e.Attempts,
			e.FailedAt.UTC().Format(time.RFC3339), cell(e.Info, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%d of %d dead letters%s, from #%d\n", len(entries), total, codeNote(*code), *offset+1)
	if rest := total - int64(*offset+len(entries)); rest > 0 {
		fmt.Fprintf(env.Stdout, "%d more not shown: --offset %d for the next page, --limit 0 for all\n", rest, *offset+len(entries))
	}
	return nil
}

// dlqListing is what timq dlq ls --json prints: a page of entries and how
// many the store holds, so that a script sees when the page is cut.
type dlqListing struct {
	// Total is how many entries match (all, or those with Code).
	Total  int64 `json:"total"`
	Offset int   `json:"offset"`
	// Limit is the page size asked for; 0 means all.
	Limit int `json:"limit"`
	Code  int `json:"code,omitempty"`
	// Truncated is true when entries after this page match too.
	Truncated bool        `json:"truncated"`
	Entries   []dlq.Entry `json:"entries"`
}

func codeNote(code int) string {
	if code == 0 {
		return ""
	}
	return " with code " + strconv.Itoa(code)
}

func dlqTotal(ctx context.Context, s *dlq.Store, code int) (int64, error) {
	if code == 0 {
		return s.Count(ctx)
	}
	by, err := s.CountByCode(ctx)
	return by[code], err
}

// cell makes text safe for one table cell: control characters (a newline
// in an ErrorInfo, a terminal escape) become spaces, and with max > 0 it is
// cut to max runes ending in "...". Empty text shows as "-".
func cell(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if s == "" {
		return "-"
	}
	if r := []rune(s); max > 0 && len(r) > max {
		return string(r[:max-3]) + "..."
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

func runDLQShow(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "dlq show", "ID")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return UsageError("want exactly one ID, got %d arguments", fs.NArg())
	}
	c, err := openDLQ(env)
	if err != nil {
		return err
	}
	defer c.close()
	e, err := c.store.Get(ctx, fs.Arg(0))
	if errors.Is(err, dlq.ErrNotFound) {
		return fmt.Errorf("no dead letter with id %q", fs.Arg(0))
	}
	if err != nil {
		return err
	}
	return writeJSON(env.Stdout, e)
}

// dlqSelection is the entries requeue or purge acts on: explicit ids, all
// entries, or those with one code. Exactly one is given.
type dlqSelection struct {
	ids  []string
	all  bool
	code int
}

func parseSelection(env *Env, name string, args []string) (dlqSelection, error) {
	fs := newFlagSet(env, "dlq "+name, "(ID... | --all | --code N)")
	all := fs.Bool("all", false, "every entry in the store")
	code := fs.Int("code", 0, "every entry with this ErrorCode (1 or more)")
	if err := parseFlags(fs, args); err != nil {
		return dlqSelection{}, err
	}
	sel := dlqSelection{ids: fs.Args(), all: *all, code: *code}
	for _, id := range sel.ids {
		if strings.HasPrefix(id, "-") {
			return sel, UsageError("flag %s after an ID: put flags first, or use IDs alone", id)
		}
	}
	codeSet := flagGiven(fs, "code")
	if codeSet && sel.code < 1 {
		return sel, UsageError("--code must be 1 or more (entries with no code: use IDs or --all), got %d", sel.code)
	}
	n := 0
	for _, given := range []bool{len(sel.ids) > 0, sel.all, codeSet} {
		if given {
			n++
		}
	}
	if n != 1 {
		return sel, UsageError("say what to %s: IDs, --all or --code N (exactly one)", name)
	}
	return sel, nil
}

// resolve turns the selection into to entry ids (the store's ids at this moment
// for --all and --code).
func (sel dlqSelection) resolve(ctx context.Context, s *dlq.Store) ([]string, error) {
	switch {
	case sel.all:
		return s.IDs(ctx, 0)
	case sel.code > 0:
		return s.IDs(ctx, sel.code)
	}
	return sel.ids, nil
}

func runDLQRequeue(ctx context.Context, env *Env, args []string) error {
	sel, err := parseSelection(env, "requeue", args)
	if err != nil {
		return err
	}
	c, err := openDLQ(env)
	if err != nil {
		return err
	}
	defer c.close()
	ids, err := sel.resolve(ctx, c.store)
	if err != nil {
		return err
	}
	client, replicas, err := newEnqueueClient(env, c.redis.Conn)
	if err != nil {
		return err
	}
	defer client.Close()
	res, err := c.store.Requeue(ctx, dlq.Through(client), ids...)
	fmt.Fprintf(env.Stdout, "requeued %d of %d\n", len(res.Requeued), len(ids))
	for _, r := range res.Requeued {
		fmt.Fprintf(env.Stdout, "%s -> %s\n", r.ID, r.TaskID)
	}
	for _, f := range res.Failed {
		fmt.Fprintf(env.Stderr, "%s: %v\n", f.ID, withReplicas(f.Err, replicas))
	}
	if err != nil {
		if len(res.Failed) == 0 { // stopped early, e.g. interrupted
			return err
		}
		return fmt.Errorf("%d of %d not requeued; they stay in the store", len(res.Failed), len(ids))
	}
	return nil
}

func runDLQPurge(ctx context.Context, env *Env, args []string) error {
	sel, err := parseSelection(env, "purge", args)
	if err != nil {
		return err
	}
	c, err := openDLQ(env)
	if err != nil {
		return err
	}
	defer c.close()
	if len(sel.ids) == 0 {
		ids, err := sel.resolve(ctx, c.store)
		if err != nil {
			return err
		}
		n, err := c.store.Delete(ctx, ids...)
		fmt.Fprintf(env.Stdout, "purged %d\n", n)
		return err
	}
	purged := 0
	var unknown []string
	for _, id := range sel.ids {
		n, err := c.store.Delete(ctx, id)
		if err != nil {
			fmt.Fprintf(env.Stdout, "purged %d\n", purged)
			return err
		}
		if n == 0 {
			unknown = append(unknown, id)
		}
		purged += n
	}
	fmt.Fprintf(env.Stdout, "purged %d\n", purged)
	for _, id := range unknown {
		fmt.Fprintf(env.Stderr, "unknown id %s\n", id)
	}
	if len(unknown) > 0 {
		return fmt.Errorf("%d of %d ids not in the store", len(unknown), len(sel.ids))
	}
	return nil
}
