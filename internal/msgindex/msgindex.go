// Package msgindex keeps an index of group messages by sender and time,
// fed by Tencent's after-send callbacks, so that an operator can find a
// sender's messages (to recall them) without knowing their seqs.
//
// # Layout
//
// Messages are kept in buckets, one per sender, group, topic and day:
//
//	timq:mi:{SENDER}:b:DAY:GROUP\x00TOPIC    string: packed (seq, second) pairs
//	timq:mi:{SENDER}:buckets                 sorted set: every bucket key suffix, by day
//
// A message is one APPEND of two uvarints (its seq, and its second within
// the day) to its bucket: about 6 to 10 bytes, against some 80 for a
// member of a sorted set, which is what keeps the index within its target
// of 100 bytes of Redis memory per message (a bucket's own key is shared by
// the sender's messages in that group and day). A bucket expires at the
// end of its day plus the retention; the bucket list is trimmed to the
// retention on every write. A sender's keys share the hash tag {SENDER},
// so the script that writes them runs on one Redis Cluster node.
//
// The same message recorded twice (a callback delivered again) is appended
// twice; reads drop the repeat, so the index answers each message once.
package msgindex

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/timq/timq/tasks"
)

// bucketSpan is the seconds one bucket covers: a day, so that a sender's
// messages in a group share a bucket's key across the day (an day left
// most buckets with one message when senders spread over many groups).
const bucketSpan = 86400

// DefaultRetention is how long a message stays indexed.
const DefaultRetention = 7 * 24 * time.Hour

// Message is one indexed message.
type Message struct {
	GroupID string
	TopicID string
	Sender  string
	Seq     uint64
	Time    time.Time // when it was sent (Tencent's MsgTime), to the second
}

// Index reads and writes the message index.
type Index struct {
	rdb       redis.UniversalClient
	retention time.Duration
	now       func() time.Time
}

// New returns an Index on rdb keeping messages for retention (<= 0:
// DefaultRetention).
func New(rdb redis.UniversalClient, retention time.Duration) *Index {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Index{rdb: rdb, retention: retention, now: time.Now}
}

// Check returns an error naming the field that makes m unindexable.
func (m Message) Check() error {
	switch {
	case m.GroupID == "" || len(m.GroupID) > 128 || strings.ContainsRune(m.GroupID, 0):
		return errors.New("GroupId: must be 1 to 128 bytes without NUL")
	case len(m.TopicID) > 128 || strings.ContainsRune(m.TopicID, 0):
		return errors.New("TopicId: must be at most 128 bytes without NUL")
	case m.Sender == "" || len(m.Sender) > 128 || strings.ContainsAny(m.Sender, "{}\x00"):
		return errors.New("From_Account: must be 1 to 128 bytes without braces or NUL")
	case m.Seq == 0:
		return errors.New("MsgSeq: must be at least 1")
	case m.Time.IsZero():
		return errors.New("MsgTime: must be set")
	}
	return nil
}

func senderPrefix(sender string) string { return "timq:mi:{" + sender + "}" }

func bucketSuffix(day int64, group, topic string) string {
	return strconv.FormatInt(day, 10) + ":" + group + "\x00" + topic
}

// Add records m. A message older than the retention is not recorded.
func (ix *Index) Add(ctx context.Context, m Message) error {
	if err := m.Check(); err != nil {
		return err
	}
	now := ix.now()
	if now.Sub(m.Time) > ix.retention {
		return nil
	}
	day := m.Time.Unix() / bucketSpan
	suffix := bucketSuffix(day, m.GroupID, m.TopicID)
	p := senderPrefix(m.Sender)
	var rec [2 * binary.MaxVarintLen64]byte
	n := binary.PutUvarint(rec[:], m.Seq)
	n += binary.PutUvarint(rec[n:], uint64(m.Time.Unix()%bucketSpan))
	// Relative expiries, from the Index's clock: Redis's own may differ.
	ttl := time.Unix((day+1)*bucketSpan, 0).Add(ix.retention).Sub(now)
	oldest := now.Add(-ix.retention).Unix()/bucketSpan - 1
	return addScript.Run(ctx, ix.rdb, []string{p + ":b:" + suffix, p + ":buckets"},
		rec[:n], int64(ttl/time.Second)+1, suffix, day, oldest, int64(ix.retention/time.Second)+bucketSpan).Err()
}

var addScript = redis.NewScript(`
redis.call('APPEND', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1`)

// Query selects a sender's messages.
type Query struct {
	Sender string
	// Groups, when set, keeps only these groups.
	Groups []string
	// TopicID, when set, keeps only this topic.
	TopicID string
	// Since and Until bound the send time (inclusive); zero means open.
	Since, Until time.Time
}

// Find returns the sender's indexed messages that q selects, by group,
// topic and seq, each once.
func (ix *Index) Find(ctx context.Context, q Query) ([]Message, error) {
	if q.Sender == "" {
		return nil, errors.New("msgindex: a query needs a sender")
	}
	p := senderPrefix(q.Sender)
	lo, hi := "-inf", "+inf"
	if !q.Since.IsZero() {
		lo = strconv.FormatInt(q.Since.Unix()/bucketSpan, 10)
	}
	if !q.Until.IsZero() {
		hi = strconv.FormatInt(q.Until.Unix()/bucketSpan, 10)
	}
	suffixes, err := ix.rdb.ZRangeByScore(ctx, p+":buckets", &redis.ZRangeBy{Min: lo, Max: hi}).Result()
	if err != nil {
		return nil, fmt.Errorf("msgindex: read the buckets of %s: %w", q.Sender, err)
	}
	type bucket struct {
		day          int64
		group, topic string
		key          string
		contents     *redis.StringCmd
	}
	var bs []*bucket
	for _, s := range suffixes {
		h, rest, ok := strings.Cut(s, ":")
		group, topic, ok2 := strings.Cut(rest, "\x00")
		day, err := strconv.ParseInt(h, 10, 64)
		if !ok || !ok2 || err != nil {
			continue
		}
		if len(q.Groups) > 0 && !slices.Contains(q.Groups, group) {
			continue
		}
		if q.TopicID != "" && topic != q.TopicID {
			continue
		}
		bs = append(bs, &bucket{day: day, group: group, topic: topic, key: p + ":b:" + s})
	}
	_, err = ix.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for _, b := range bs {
			b.contents = pl.Get(ctx, b.key)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("msgindex: read the messages of %s: %w", q.Sender, err)
	}
	type id struct {
		group, topic string
		seq          uint64
	}
	seen := map[id]bool{}
	var out []Message
	for _, b := range bs {
		raw := []byte(b.contents.Val())
		for len(raw) > 0 {
			seq, n := binary.Uvarint(raw)
			if n <= 0 {
				break
			}
			sec, m := binary.Uvarint(raw[n:])
			if m <= 0 {
				break
			}
			raw = raw[n+m:]
			t := time.Unix(b.day*bucketSpan+int64(sec), 0).UTC()
			if (!q.Since.IsZero() && t.Before(q.Since.Truncate(time.Second))) || (!q.Until.IsZero() && t.After(q.Until)) {
				continue
			}
			k := id{b.group, b.topic, seq}
			if seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, Message{GroupID: b.group, TopicID: b.topic, Sender: q.Sender, Seq: seq, Time: t})
		}
	}
	slices.SortFunc(out, cmpMessages)
	return out, nil
}

func cmpMessages(a, b Message) int {
	if c := strings.Compare(a.GroupID, b.GroupID); c != 0 {
		return c
	}
	if c := strings.Compare(a.TopicID, b.TopicID); c != 0 {
		return c
	}
	switch {
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return 0
}

// Recalls groups ms into recall payloads of up to perCall messages of one
// group and topic, in the order Find returns them, so that a job of them
// sends full calls.
func Recalls(ms []Message, perCall int) []tasks.Recall {
	var out []tasks.Recall
	for _, m := range ms {
		last := len(out) - 1
		if last < 0 || out[last].GroupId != m.GroupID || out[last].TopicId != m.TopicID || len(out[last].MsgSeqList) >= perCall {
			out = append(out, tasks.Recall{GroupId: m.GroupID, TopicId: m.TopicID})
			last++
		}
		out[last].MsgSeqList = append(out[last].MsgSeqList, tasks.MsgSeqItem{MsgSeq: m.Seq})
	}
	return out
}
