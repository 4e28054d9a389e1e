package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/timq/timq/enqueue"
	"github.com/timq/timq/internal/chatapi"
	"github.com/timq/timq/internal/config"
	"github.com/timq/timq/tasks"
)

const enqueueUsage = `OPERATION [flags]

Operations:
  clear  --group G [--seq N]                 clear the group's history (up to seq N)
  recall --group G --seq 1,2,3 [--topic T] [--reason R]
                                             recall messages (any number; split into tasks of 10)
  modify --group G --seq N (--text T | --body JSON) [--cloud-custom-data S] [--topic T]
                                             replace a message's body and/or custom data

Prints the ID of each task queued, one a line. An identical clear or modify
that is still waiting is not queued again: the command then prints
"duplicate: an identical task is already queued" on stderr and exits 0
(pass --no-dedup to queue it anyway). Redis comes from TIMQ_REDIS_URL.

` + replicasHelp

// enqueueFlags are the flags of `timq enqueue OP`; which ones an operation
// registers depends on it.
type enqueueFlags struct {
	group, seq, topic, reason string
	text, body, customData    string
	queue                     string
	delay                     time.Duration
	maxRetry                  int
	noDedup                   bool
	retention                 time.Duration
}

// runEnqueue queues one clear, recall or modify. Invalid input is a usage
// error (exit 2) naming the flag and the field; a duplicate is reported on
// stderr and is not a failure (exit 0).
// enqueueOpHelp is the line of each operation's --help above its flags.
var enqueueOpHelp = map[string]string{
	"clear":  "Queues a clear of the group's history (up to --seq, or all of it).",
	"recall": "Queues a recall of the messages in --seq (any number; split into tasks of 10).",
	"modify": "Queues a modify of message --seq: its body (--text or --body) and/or --cloud-custom-data.",
}

func runEnqueue(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return UsageError("missing operation: clear, recall or modify (timq enqueue --help)")
	}
	op := args[0]
	if op == "-h" || op == "-help" || op == "--help" || op == "help" {
		// The overview alone: each operation's --help lists its flags.
		fmt.Fprintf(env.Stderr, "Usage: timq enqueue %s\nRun timq enqueue OPERATION --help for an operation's flags.\n", enqueueUsage)
		return flag.ErrHelp
	}
	if op != "clear" && op != "recall" && op != "modify" {
		return UsageError("unknown operation %q: want clear, recall or modify", op)
	}
	fs := newFlagSet(env, "enqueue "+op, "[flags]\n\n"+enqueueOpHelp[op])
	var f enqueueFlags
	fs.StringVar(&f.group, "group", "", "the group's `GroupId` (required)")
	switch op {
	case "clear":
		fs.StringVar(&f.seq, "seq", "", "clear messages with seq <= `N` (default: all history)")
	case "recall":
		fs.StringVar(&f.seq, "seq", "", "comma-separated message `seqs` to recall, e.g. 1,2,3 (required)")
		fs.StringVar(&f.topic, "topic", "", "the community topic's `TopicId`")
		fs.StringVar(&f.reason, "reason", "", "the recall `reason` shown to members")
	case "modify":
		fs.StringVar(&f.seq, "seq", "", "the message's `seq` (required)")
		fs.StringVar(&f.text, "text", "", "replace the body with one text element holding `TEXT`")
		fs.StringVar(&f.body, "body", "", "replace the body with this MsgBody `JSON` array")
		fs.StringVar(&f.customData, "cloud-custom-data", "", "replace the message's CloudCustomData with `S`")
		fs.StringVar(&f.topic, "topic", "", "the community topic's `TopicId`")
	}
	fs.StringVar(&f.queue, "queue", "", "queue `name` (default timq-"+op+"); a worker takes tasks from another queue only when started with --queues "+op+":NAME=PRIORITY")
	fs.DurationVar(&f.delay, "delay", 0, "run no sooner than this `duration` from now")
	fs.IntVar(&f.maxRetry, "max-retry", tasks.DefaultMaxRetry, "retries before the task is dead-lettered")
	fs.BoolVar(&f.noDedup, "no-dedup", false, "queue even when an identical clear or modify is waiting")
	fs.DurationVar(&f.retention, "retention", tasks.DefaultRetention, retentionUsage)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return UsageError("unexpected argument %q (flags come after the operation)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })

	p, err := f.payload(op, set)
	if err != nil {
		return err
	}
	if _, err := enqueue.Split(p); err != nil {
		return fieldUsageError(err, set)
	}
	opts, err := f.options(set)
	if err != nil {
		return err
	}

	rc, err := config.LoadRedis(env.Getenv)
	if err != nil {
		return err
	}
	c, replicas, err := newEnqueueClient(env, rc.Conn)
	if err != nil {
		return err
	}
	defer c.Close()
	ids, err := c.Enqueue(ctx, p, opts...)
	for _, id := range ids {
		fmt.Fprintln(env.Stdout, id)
	}
	if errors.Is(err, enqueue.ErrDuplicate) {
		fmt.Fprintln(env.Stderr, "duplicate: an identical task is already queued")
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w (Redis %s)", withReplicas(err, replicas), rc.Display)
	}
	return nil
}

// replicasHelp documents TIMQ_ENQUEUE_REPLICAS in the --help of the
// commands that enqueue.
const replicasHelp = `TIMQ_ENQUEUE_REPLICAS=N (default 0: off) counts a task as queued only once
N replicas of its Redis primary hold it, so that a Sentinel or Cluster
failover cannot lose it (Redis replicates asynchronously; the check uses
WAIT). It costs two more Redis round trips per task (shared by tasks queued
at the same moment). When N replicas have not confirmed a task within 30s
the command fails (exit 1): the task may be queued, or lost.`

// newEnqueueClient returns the client timq enqueue, bulk and dlq requeue
// queue through: it confirms every task on TIMQ_ENQUEUE_REPLICAS replicas
// when that is above 0 (see enqueue.ConfirmReplicas), within 30s or ctx's
// deadline. It also returns that number.
func newEnqueueClient(env *Env, conn asynq.RedisConnOpt) (*enqueue.Client, int, error) {
	n, err := config.Int(env.Getenv, config.EnvEnqueueReplicas, 0, 0, 100)
	if err != nil {
		return nil, 0, err
	}
	return enqueue.New(conn, enqueue.ConfirmReplicas(n, enqueue.DefaultConfirmTimeout)), n, nil
}

// withReplicas names TIMQ_ENQUEUE_REPLICAS in the error of a task not
// confirmed on the replicas.
func withReplicas(err error, n int) error {
	if errors.Is(err, enqueue.ErrNotConfirmed) {
		return fmt.Errorf("%w (%s=%d)", err, config.EnvEnqueueReplicas, n)
	}
	return err
}

// payload builds the operation's payload from the flags, checking only what
// the flags themselves can get wrong; Split validates the rest.
func (f *enqueueFlags) payload(op string, set map[string]bool) (tasks.Payload, error) {
	switch op {
	case "clear":
		p := tasks.Clear{GroupId: f.group}
		if set["seq"] {
			n, err := parseSeq(f.seq)
			if err != nil {
				return nil, err
			}
			p.MsgSeq = &n
		}
		return p, nil
	case "recall":
		p := tasks.Recall{GroupId: f.group, TopicId: f.topic, Reason: f.reason}
		if strings.TrimSpace(f.seq) == "" {
			return nil, UsageError("--seq: the message seqs to recall are required, e.g. --seq 1,2,3")
		}
		for _, s := range strings.Split(f.seq, ",") {
			n, err := parseSeq(s)
			if err != nil {
				return nil, err
			}
			p.MsgSeqList = append(p.MsgSeqList, chatapi.MsgSeqItem{MsgSeq: n})
		}
		return p, nil
	default:
		p := tasks.Modify{GroupId: f.group, TopicId: f.topic}
		if set["seq"] {
			n, err := parseSeq(f.seq)
			if err != nil {
				return nil, err
			}
			p.MsgSeq = n
		}
		switch {
		case set["text"] && set["body"]:
			return nil, UsageError("--text, --body: give only one of them")
		case set["text"]:
			p.MsgBody = tasks.TextBody(f.text)
		case set["body"]:
			body, err := parseBody(f.body)
			if err != nil {
				return nil, err
			}
			p.MsgBody = body
		}
		if set["cloud-custom-data"] {
			p.CloudCustomData = &f.customData
		}
		return p, nil
	}
}

func parseSeq(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, UsageError("--seq: %q is not a message seq (a whole number from 1)", s)
	}
	return n, nil
}

// parseBody checks and decodes a MsgBody given as JSON.
func parseBody(s string) ([]chatapi.MsgElement, error) {
	if err := tasks.ValidateMsgBodyJSON(json.RawMessage(s)); err != nil {
		return nil, UsageError("--body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	dec.DisallowUnknownFields()
	var body []chatapi.MsgElement
	if err := dec.Decode(&body); err != nil {
		return nil, UsageError("--body: MsgBody: %v", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, UsageError("--body: MsgBody: has data after the JSON array")
	}
	return body, nil
}

func (f *enqueueFlags) options(set map[string]bool) ([]enqueue.Option, error) {
	if f.maxRetry < 0 || f.maxRetry > tasks.MaxRetryLimit {
		return nil, UsageError("--max-retry: must be from 0 to %d, got %d", tasks.MaxRetryLimit, f.maxRetry)
	}
	if f.delay < 0 {
		return nil, UsageError("--delay: must not be negative, got %v", f.delay)
	}
	opts := []enqueue.Option{enqueue.MaxRetry(f.maxRetry)}
	if set["queue"] {
		if err := tasks.CheckName(f.queue); err != nil {
			return nil, UsageError("--queue: the queue name %v", err)
		}
		opts = append(opts, enqueue.Queue(f.queue))
	}
	if f.delay > 0 {
		opts = append(opts, enqueue.Delay(f.delay))
	}
	if f.noDedup {
		opts = append(opts, enqueue.NoDedup())
	}
	r, err := retentionOption(set["retention"], f.retention)
	if err != nil {
		return nil, err
	}
	if r != nil {
		opts = append(opts, enqueue.Retention(*r))
	}
	return opts, nil
}

// retentionUsage describes the --retention flag of enqueue and bulk.
const retentionUsage = "keep each completed task in Redis for this `duration` (0: delete it on completion); about 0.7 KB each, and a task ID de-duplicates only while kept"

// retentionOption checks a --retention flag: nil when it was not given.
func retentionOption(given bool, d time.Duration) (*time.Duration, error) {
	switch {
	case !given:
		return nil, nil
	case d < 0 || (d > 0 && d < time.Second):
		return nil, UsageError("--retention: must be 0 or at least 1s, got %v", d)
	}
	return &d, nil
}

// fieldUsageError turns a validation error into a usage error that names
// the flag the bad field came from, e.g.
// "--seq: MsgSeqList[2].MsgSeq: must be at least 1".
func fieldUsageError(err error, set map[string]bool) error {
	var ve *tasks.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	flagName := ""
	switch f := ve.Field; {
	case f == "GroupId":
		flagName = "--group"
	case f == "MsgSeq", strings.HasPrefix(f, "MsgSeqList"):
		flagName = "--seq"
	case f == "TopicId":
		flagName = "--topic"
	case f == "Reason":
		flagName = "--reason"
	case f == "CloudCustomData":
		flagName = "--cloud-custom-data"
	case strings.HasPrefix(f, "MsgBody"):
		switch {
		case set["text"]:
			flagName = "--text"
		case set["body"]:
			flagName = "--body"
		default:
			flagName = "--text, --body or --cloud-custom-data"
		}
	}
	if flagName == "" {
		return UsageError("%v", ve)
	}
	return UsageError("%s: %v", flagName, ve)
}
