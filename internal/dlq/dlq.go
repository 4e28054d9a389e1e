// Package dlq is timq's durable dead-letter store.
//
// asynq's archive is a dead-letter queue too, and asynqmon shows it, but
// asynq trims it silently (10,000 tasks per queue, 90 days). The worker
// therefore also records every dead-lettered operation here, and an entry
// stays until an operator requeues or purges it: the store has no cap and no
// expiry.
//
// # Key layout
//
// All keys of a store share the Redis Cluster hash tag "{PREFIX}" (default
// PREFIX "timq:dlq"), so they live in one slot and every write can be one
// atomic Lua script, on a single server and on a cluster alike:
//
//	{timq:dlq}:entries      HASH  id -> Entry as JSON
//	{timq:dlq}:codes        HASH  id -> code (which code index holds the id)
//	{timq:dlq}:index        ZSET  id scored by failed_at in Unix milliseconds
//	{timq:dlq}:code:N       ZSET  the same, for entries with code N (0: no code)
//	{timq:dlq}:codeset      SET   the codes N that have a non-empty code:N
//	{timq:dlq}:lock:ID      STRING held while ID is being requeued
//
// The sorted sets give oldest-first paging with ZRANGE, so listing never
// loads more entries than a page; the codes hash lets a write find and fix
// the code index of an id without decoding JSON in Lua.
package dlq

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"
)

// Reasons an operation is dead-lettered (Entry.Reason).
const (
	// ReasonPermanent: the API refused the operation with a code that
	// retrying cannot fix (10010 group missing, 10004 bad parameter, ...).
	ReasonPermanent = "permanent"
	// ReasonRetriesExhausted: a retryable failure kept happening until the
	// task ran out of retries.
	ReasonRetriesExhausted = "retries_exhausted"
	// ReasonInvalidPayload: the task's payload could not be parsed or
	// validated, so it was never sent.
	ReasonInvalidPayload = "invalid_payload"
	// ReasonArchived: asynq archived the task without the worker writing a
	// dead letter for it: the worker running its last attempt died (asynq
	// then archives it with "task lease expired"), or someone archived it
	// by hand from the dashboard. The worker's archive reconciler finds
	// these and writes them here.
	ReasonArchived = "archived"
)

// DefaultPrefix is the key prefix of a store made without WithPrefix.
const DefaultPrefix = "timq:dlq"

// MaxInfoBytes bounds Entry.Info; Add cuts longer text (at a UTF-8
// boundary) and ends it with "...".
const MaxInfoBytes = 1024

// ErrNotFound is returned (wrapped, with the id) for an id the store does not hold.
var ErrNotFound = errors.New("dead letter not found")

// Entry is one dead-lettered operation.
type Entry struct {
	// ID identifies the entry: the asynq task ID, or "TASKID/SEQ" (see
	// RecallEntryID) for one message of a recall.
	ID string `json:"id"`
	// Type is the task type, e.g. "timq:recall".
	Type string `json:"type"`
	// Queue is the queue the task ran in; a requeue goes back to it.
	Queue string `json:"queue"`
	// TaskID is the asynq task ID of the failed task.
	TaskID string `json:"task_id"`
	// Payload is the payload a requeue enqueues: the task's own payload, or
	// for one message of a recall a recall payload of that message alone.
	// A payload that is not valid JSON is stored as a JSON string, with
	// Invalid set: its text when it is valid UTF-8, otherwise its bytes in
	// standard base64 with PayloadEncoding "base64". Payload is therefore
	// always valid UTF-8 JSON, whatever a producer wrote.
	Payload json.RawMessage `json:"payload"`
	// Invalid is true when Payload holds the original bytes as a JSON string
	// because they were not valid UTF-8 JSON. Such an entry cannot be
	// requeued.
	Invalid bool `json:"invalid_payload,omitempty"`
	// PayloadEncoding is "base64" when the Payload string holds the original
	// bytes in standard base64 (they were not valid UTF-8), empty otherwise.
	PayloadEncoding string `json:"payload_encoding,omitempty"`
	// Code is the last ErrorCode of the API, 0 for none (e.g. a timeout).
	Code int `json:"code"`
	// Info is the last ErrorInfo or a reason in words. The caller must pass
	// text free of secrets; the store keeps it as given (up to MaxInfoBytes).
	Info string `json:"info"`
	// Reason is ReasonPermanent, ReasonRetriesExhausted, ReasonInvalidPayload
	// or ReasonArchived.
	Reason string `json:"reason"`
	// Attempts is how many times the operation was tried.
	Attempts int `json:"attempts"`
	// FailedAt is when the operation was dead-lettered, stored in UTC.
	FailedAt time.Time `json:"failed_at"`
	// GroupId is the group the operation was for, for display only.
	GroupId string `json:"group_id,omitempty"`
}

// RecallEntryID returns the entry ID for message seq of recall task taskID.
func RecallEntryID(taskID string, seq uint64) string {
	return taskID + "/" + strconv.FormatUint(seq, 10)
}

// Store is a dead-letter store in Redis. It is safe for concurrent use, and
// several processes may share one store.
type Store struct {
	rdb    redis.UniversalClient
	prefix string // "{PREFIX}:"
	now    func() time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithPrefix sets the key prefix (without braces: the store wraps it in a
// Redis Cluster hash tag). Defaults to DefaultPrefix.
func WithPrefix(p string) Option {
	return func(s *Store) {
		if p != "" {
			s.prefix = "{" + p + "}:"
		}
	}
}

// WithClock sets the clock Add uses for an entry without FailedAt.
// Defaults to time.Now.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// New returns a store that keeps its entries in rdb. It does not take
// ownership of rdb: closing rdb is the caller's business.
func New(rdb redis.UniversalClient, opts ...Option) *Store {
	s := &Store{rdb: rdb, prefix: "{" + DefaultPrefix + "}:", now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Store) keyEntries() string { return s.prefix + "entries" }
func (s *Store) keyCodes() string   { return s.prefix + "codes" }
func (s *Store) keyIndex() string   { return s.prefix + "index" }
func (s *Store) keyCodeSet() string { return s.prefix + "codeset" }
func (s *Store) keyCodePfx() string { return s.prefix + "code:" }
func (s *Store) keyCode(code int) string {
	return s.keyCodePfx() + strconv.Itoa(code)
}
func (s *Store) keyLock(id string) string { return s.prefix + "lock:" + id }

// addScript stores one entry, moving it between code indexes if an earlier
// entry with the same id had another code. It returns 1 for a new id and 0
// for an overwrite.
//
// KEYS: entries, codes, index, codeset, code:NEW. ARGV: id, json, score,
// code, code-key prefix. The old code key is built from the prefix: it
// shares the hash tag, so it is in the same slot.
var addScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[2], ARGV[1])
if old and old ~= ARGV[4] then
  local ok = ARGV[5] .. old
  redis.call('ZREM', ok, ARGV[1])
  if redis.call('ZCARD', ok) == 0 then redis.call('SREM', KEYS[4], old) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[4])
if old then return 0 end
return 1
`)

// deleteScript removes ids from every key and returns how many existed.
// KEYS: entries, codes, index, codeset. ARGV: code-key prefix, ids...
var deleteScript = redis.NewScript(`
local n = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local code = redis.call('HGET', KEYS[2], id)
  if code then
    local ck = ARGV[1] .. code
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('ZREM', ck, id)
    if redis.call('ZCARD', ck) == 0 then redis.call('SREM', KEYS[4], code) end
    n = n + 1
  end
end
return n
`)

// normalize validates e and returns it as stored: UTC FailedAt (now when
// zero), an invalid payload wrapped in a JSON string, Info capped.
func (s *Store) normalize(e Entry) (Entry, []byte, error) {
	if e.ID == "" {
		return e, nil, errors.New("dlq: entry has no id")
	}
	if e.Type == "" {
		return e, nil, fmt.Errorf("dlq: entry %q has no type", e.ID)
	}
	if e.FailedAt.IsZero() {
		e.FailedAt = s.now()
	}
	e.FailedAt = e.FailedAt.UTC()
	e = safePayload(e)
	e.Info = capInfo(e.Info)
	b, err := json.Marshal(e)
	if err != nil {
		return e, nil, fmt.Errorf("dlq: encode entry %q: %w", e.ID, err)
	}
	return e, b, nil
}

// safePayload makes e.Payload valid UTF-8 JSON without losing a byte: a
// payload that is not JSON becomes a JSON string of its text, and one that
// is not UTF-8 (which encoding/json would pass through as it is, or turn
// into U+FFFD) a JSON string of its bytes in base64.
func safePayload(e Entry) Entry {
	raw := []byte(e.Payload)
	if json.Valid(raw) && utf8.Valid(raw) {
		return e
	}
	e.Invalid = true
	if utf8.Valid(raw) {
		e.PayloadEncoding = ""
		e.Payload, _ = json.Marshal(string(raw)) // a string always marshals
		return e
	}
	e.PayloadEncoding = "base64"
	e.Payload, _ = json.Marshal(base64.StdEncoding.EncodeToString(raw))
	return e
}

func capInfo(s string) string {
	if len(s) <= MaxInfoBytes {
		return s
	}
	cut := MaxInfoBytes - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func (s *Store) addArgs(e Entry, b []byte) ([]string, []any) {
	keys := []string{s.keyEntries(), s.keyCodes(), s.keyIndex(), s.keyCodeSet(), s.keyCode(e.Code)}
	args := []any{e.ID, b, e.FailedAt.UnixMilli(), e.Code, s.keyCodePfx()}
	return keys, args
}

// Add stores e atomically. Adding an id the store already holds replaces
// that entry (the worker may dead-letter the same task twice after a crash);
// it never makes a second one.
//
// Add needs a non-empty ID and Type. A zero FailedAt becomes the current
// time; FailedAt is stored in UTC. A Payload that is not valid JSON (empty
// included) or not valid UTF-8 is stored as a JSON string with Invalid set:
// its text, or its bytes in base64 when they are not UTF-8 (PayloadEncoding
// says which). Info longer than MaxInfoBytes
// is cut.
func (s *Store) Add(ctx context.Context, e Entry) error {
	e, b, err := s.normalize(e)
	if err != nil {
		return err
	}
	keys, args := s.addArgs(e, b)
	if err := addScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("dlq: add %q: %w", e.ID, err)
	}
	return nil
}

// AddMany stores entries as Add does, in pipelined batches: each entry is
// written atomically, the batch as a whole is not. Nothing is written when
// any entry is invalid.
func (s *Store) AddMany(ctx context.Context, entries []Entry) error {
	type item struct {
		keys []string
		args []any
	}
	items := make([]item, 0, len(entries))
	for _, e := range entries {
		e, b, err := s.normalize(e)
		if err != nil {
			return err
		}
		k, a := s.addArgs(e, b)
		items = append(items, item{k, a})
	}
	if len(items) == 0 {
		return nil
	}
	if err := addScript.Load(ctx, s.rdb).Err(); err != nil {
		return fmt.Errorf("dlq: load script: %w", err)
	}
	const batch = 1000
	for start := 0; start < len(items); start += batch {
		part := items[start:min(start+batch, len(items))]
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(part))
		for i, it := range part {
			cmds[i] = addScript.EvalSha(ctx, pipe, it.keys, it.args...)
		}
		_, _ = pipe.Exec(ctx) // errors are read per command below
		for i, c := range cmds {
			err := c.Err()
			if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
				err = addScript.Run(ctx, s.rdb, part[i].keys, part[i].args...).Err()
			}
			if err != nil {
				return fmt.Errorf("dlq: add %q: %w", part[i].args[0], err)
			}
		}
	}
	return nil
}

// Get returns the entry with the given id, or an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Entry, error) {
	b, err := s.rdb.HGet(ctx, s.keyEntries(), id).Bytes()
	if errors.Is(err, redis.Nil) {
		return Entry{}, fmt.Errorf("dlq: %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("dlq: get %q: %w", id, err)
	}
	return decode(id, b)
}

func decode(id string, b []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return Entry{}, fmt.Errorf("dlq: entry %q is corrupt: %w", id, err)
	}
	// An entry written before payloads were made safe may hold raw bytes.
	return safePayload(e), nil
}

// ListOptions selects a page of entries.
type ListOptions struct {
	// Offset skips that many entries (oldest first). Must be >= 0.
	Offset int
	// Limit is the most entries returned; 0 (or less) returns every entry
	// from Offset on, fetched internally a page at a time.
	Limit int
	// Code keeps only entries with this code; 0 keeps all.
	Code int
}

// pageSize is how many ids one ZRANGE or HMGET reads.
const pageSize = 1000

func (s *Store) indexKey(code int) string {
	if code == 0 {
		return s.keyIndex()
	}
	return s.keyCode(code)
}

// List returns entries oldest first (by FailedAt, then id). It reads one
// page of at most 1000 entries per round trip, so a bounded Limit never
// loads more than it returns.
func (s *Store) List(ctx context.Context, opt ListOptions) ([]Entry, error) {
	if opt.Offset < 0 {
		return nil, fmt.Errorf("dlq: list offset %d is negative", opt.Offset)
	}
	key := s.indexKey(opt.Code)
	var out []Entry
	start := opt.Offset
	for {
		n := pageSize
		if opt.Limit > 0 {
			n = min(n, opt.Limit-len(out))
			if n <= 0 {
				break
			}
		}
		ids, err := s.rdb.ZRange(ctx, key, int64(start), int64(start+n-1)).Result()
		if err != nil {
			return nil, fmt.Errorf("dlq: list: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		vals, err := s.rdb.HMGet(ctx, s.keyEntries(), ids...).Result()
		if err != nil {
			return nil, fmt.Errorf("dlq: list: %w", err)
		}
		for i, v := range vals {
			str, ok := v.(string)
			if !ok {
				continue // deleted between the two reads
			}
			e, err := decode(ids[i], []byte(str))
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		start += len(ids)
		if len(ids) < n {
			break
		}
	}
	if out == nil {
		out = []Entry{}
	}
	return out, nil
}

// IDs returns the ids of all entries with the given code (0: all), oldest
// first, read a page at a time.
func (s *Store) IDs(ctx context.Context, code int) ([]string, error) {
	key := s.indexKey(code)
	var out []string
	for start := int64(0); ; start += pageSize {
		ids, err := s.rdb.ZRange(ctx, key, start, start+pageSize-1).Result()
		if err != nil {
			return nil, fmt.Errorf("dlq: ids: %w", err)
		}
		out = append(out, ids...)
		if len(ids) < pageSize {
			return out, nil
		}
	}
}

// Count returns how many entries the store holds.
func (s *Store) Count(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.keyIndex()).Result()
	if err != nil {
		return 0, fmt.Errorf("dlq: count: %w", err)
	}
	return n, nil
}

// CountByCode returns how many entries the store holds per code (0: no
// code). Codes without entries are absent.
func (s *Store) CountByCode(ctx context.Context) (map[int]int64, error) {
	codes, err := s.rdb.SMembers(ctx, s.keyCodeSet()).Result()
	if err != nil {
		return nil, fmt.Errorf("dlq: count by code: %w", err)
	}
	out := make(map[int]int64, len(codes))
	if len(codes) == 0 {
		return out, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(codes))
	for i, c := range codes {
		cmds[i] = pipe.ZCard(ctx, s.keyCodePfx()+c)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("dlq: count by code: %w", err)
	}
	for i, c := range codes {
		code, err := strconv.Atoi(c)
		if err != nil {
			return nil, fmt.Errorf("dlq: count by code: bad code %q in %s", c, s.keyCodeSet())
		}
		if n := cmds[i].Val(); n > 0 {
			out[code] = n
		}
	}
	return out, nil
}

// Delete removes the entries with the given ids and returns how many of
// them existed; unknown ids are ignored. Each entry is removed from every
// key at once; ids are removed in atomic batches of 1000.
func (s *Store) Delete(ctx context.Context, ids ...string) (int, error) {
	keys := []string{s.keyEntries(), s.keyCodes(), s.keyIndex(), s.keyCodeSet()}
	total := 0
	for start := 0; start < len(ids); start += pageSize {
		part := ids[start:min(start+pageSize, len(ids))]
		args := make([]any, 0, len(part)+1)
		args = append(args, s.keyCodePfx())
		for _, id := range part {
			args = append(args, id)
		}
		n, err := deleteScript.Run(ctx, s.rdb, keys, args...).Int()
		total += n
		if err != nil {
			return total, fmt.Errorf("dlq: delete: %w", err)
		}
	}
	return total, nil
}

// String describes the store for logs.
func (s *Store) String() string {
	return "dlq " + strings.TrimSuffix(s.prefix, ":")
}
