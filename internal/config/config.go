// Package config reads timq's settings from TIMQ_* environment variables.
//
// Every function takes a getenv function instead of reading the process
// environment, so tests and embedded uses pass their own. Every error names
// the setting it is about, in one line: "TIMQ_RATE: must be a number > 0, got \"x\"".
package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/timq/timq/internal/chatapi"
)

// Secret holds a secret (the SDKAppID's key). It prints, logs and marshals
// as "[REDACTED]"; Reveal returns the value for the one place that signs.
type Secret string

const redacted = "[REDACTED]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) Reveal() string             { return string(s) }
func (s Secret) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }
func (s Secret) IsZero() bool               { return s == "" }

// Environment variable names.
const (
	EnvRedisURL          = "TIMQ_REDIS_URL"
	EnvRedisClusterAddrs = "TIMQ_REDIS_CLUSTER_ADDRS"
	EnvSDKAppID          = "TIMQ_SDKAPPID"
	EnvSecretKey         = "TIMQ_SECRET_KEY"
	EnvSecretKeyFile     = "TIMQ_SECRET_KEY_FILE"
	EnvAdmin             = "TIMQ_ADMIN"
	EnvRegion            = "TIMQ_REGION"
	EnvAPIBase           = "TIMQ_API_BASE"
	EnvRate              = "TIMQ_RATE"
	EnvConcurrency       = "TIMQ_CONCURRENCY"
	EnvMaxRetry          = "TIMQ_MAX_RETRY"
	EnvHTTPAddr          = "TIMQ_HTTP_ADDR"
	EnvQueues            = "TIMQ_QUEUES"
	// EnvEnqueueReplicas is how many replicas of the Redis primary must
	// hold each task before timq enqueue, bulk and dlq requeue count it as
	// queued (enqueue.ConfirmReplicas). Default 0: off.
	EnvEnqueueReplicas = "TIMQ_ENQUEUE_REPLICAS"
	// EnvNotifySecret keys the signature of job completion notices.
	EnvNotifySecret = "TIMQ_NOTIFY_SECRET"
	// EnvCallbackToken is the app's callback authentication token, which
	// signs Tencent's webhooks.
	EnvCallbackToken = "TIMQ_CALLBACK_TOKEN"
)

// MinNotifySecret is the shortest TIMQ_NOTIFY_SECRET accepted: an HMAC key
// shorter than this is guessable.
const MinNotifySecret = 16

// LoadNotifySecret reads TIMQ_NOTIFY_SECRET, which may be unset (then the
// worker sends no job notice). Errors never show the value.
func LoadNotifySecret(getenv func(string) string) (Secret, error) {
	v := strings.TrimSpace(getenv(EnvNotifySecret))
	if v != "" && len(v) < MinNotifySecret {
		return "", fmt.Errorf("%s: must be at least %d characters, got %d", EnvNotifySecret, MinNotifySecret, len(v))
	}
	return Secret(v), nil
}

// DefaultRedisURL is used when TIMQ_REDIS_URL is not set.
const DefaultRedisURL = "redis://127.0.0.1:6379/0"

// DefaultAdmin is the admin identifier used when TIMQ_ADMIN is not set.
const DefaultAdmin = "administrator"

// Signing is what is needed to make and check a UserSig.
type Signing struct {
	SDKAppID  uint64
	SecretKey Secret
	Admin     string
}

// API is everything needed to call the REST API: signing plus where to call.
// Exactly one of Region and BaseURL is set.
type API struct {
	Signing
	Region  string // cn, sgp, kr, jpn, ger, usa, idn, ind
	BaseURL string // full base URL, e.g. http://127.0.0.1:9000 for the emulator
}

// LoadSigning reads TIMQ_SDKAPPID, TIMQ_SECRET_KEY or TIMQ_SECRET_KEY_FILE
// (not both), and TIMQ_ADMIN (default "administrator"). The key is never
// read from a flag, because flags show in ps. TIMQ_SECRET_KEY_FILE must name
// a regular file (or a symbolic link to one) of at most MaxSecretKeyFileBytes
// bytes; its content, trimmed of surrounding white space, is the key.
func LoadSigning(getenv func(string) string) (Signing, error) {
	var s Signing
	raw := strings.TrimSpace(getenv(EnvSDKAppID))
	if raw == "" {
		return s, fmt.Errorf("%s: must be set (the app's SDKAppID)", EnvSDKAppID)
	}
	id, err := strconv.ParseUint(raw, 10, 32)
	if err != nil || id == 0 {
		return s, fmt.Errorf("%s: must be a positive integer, got %q", EnvSDKAppID, raw)
	}
	s.SDKAppID = id
	key, keyFile := getenv(EnvSecretKey), getenv(EnvSecretKeyFile)
	switch {
	case key != "" && keyFile != "":
		return s, fmt.Errorf("%s: set only one of %s and %s", EnvSecretKey, EnvSecretKey, EnvSecretKeyFile)
	case keyFile != "":
		var err error
		if key, err = readKeyFile(keyFile); err != nil {
			return s, err
		}
	case key == "":
		return s, fmt.Errorf("%s: must be set (or %s)", EnvSecretKey, EnvSecretKeyFile)
	}
	s.SecretKey = Secret(key)
	s.Admin = strings.TrimSpace(getenv(EnvAdmin))
	if s.Admin == "" {
		s.Admin = DefaultAdmin
	}
	return s, nil
}

// MaxSecretKeyFileBytes is the largest TIMQ_SECRET_KEY_FILE LoadSigning
// reads. A Tencent Cloud Chat secret key is 64 hexadecimal characters.
const MaxSecretKeyFileBytes = 4096

// readKeyFile returns the trimmed content of the TIMQ_SECRET_KEY_FILE at
// name. It refuses anything but a regular file before reading, so a FIFO,
// a device such as /dev/zero or a directory cannot block or exhaust memory,
// and it reads at most MaxSecretKeyFileBytes+1 bytes. Errors name the
// variable and the file, never the file's content.
func readKeyFile(name string) (string, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return "", fmt.Errorf("%s: cannot read the key file: %v", EnvSecretKeyFile, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: the key file %s is not a regular file (%s)", EnvSecretKeyFile, name, fileKind(fi.Mode()))
	}
	// O_NONBLOCK: should name become a FIFO between Stat and here, open
	// must not wait for a writer; the Stat of the open file refuses it.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", fmt.Errorf("%s: cannot read the key file: %v", EnvSecretKeyFile, errors.Unwrap(err))
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return "", fmt.Errorf("%s: cannot read the key file: %v", EnvSecretKeyFile, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: the key file %s is not a regular file (%s)", EnvSecretKeyFile, name, fileKind(fi.Mode()))
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxSecretKeyFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s: cannot read the key file: %v", EnvSecretKeyFile, errors.Unwrap(err))
	}
	if len(b) > MaxSecretKeyFileBytes {
		return "", fmt.Errorf("%s: the key file %s is longer than %d bytes", EnvSecretKeyFile, name, MaxSecretKeyFileBytes)
	}
	key := strings.TrimSpace(string(b))
	if key == "" {
		return "", fmt.Errorf("%s: the key file %s is empty", EnvSecretKeyFile, name)
	}
	return key, nil
}

// fileKind names the type of a file that is not a regular file.
func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "mode " + m.Type().String()
	}
}

// LoadAPI reads the signing settings plus TIMQ_REGION or TIMQ_API_BASE
// (exactly one). TIMQ_API_BASE must be an http:// or https:// URL with a
// host and without user info; its errors show it with any user info
// replaced by [REDACTED].
func LoadAPI(getenv func(string) string) (API, error) {
	sig, err := LoadSigning(getenv)
	if err != nil {
		return API{}, err
	}
	a := API{Signing: sig, Region: strings.TrimSpace(getenv(EnvRegion)), BaseURL: strings.TrimSpace(getenv(EnvAPIBase))}
	switch {
	case a.Region != "" && a.BaseURL != "":
		return API{}, fmt.Errorf("%s: set only one of %s and %s", EnvAPIBase, EnvRegion, EnvAPIBase)
	case a.Region == "" && a.BaseURL == "":
		return API{}, fmt.Errorf("%s: must be set (cn, sgp, kr, jpn, ger, usa, idn, ind), or %s to a base URL", EnvRegion, EnvAPIBase)
	case a.Region != "":
		if _, err := chatapi.RegionBaseURL(a.Region); err != nil {
			return API{}, fmt.Errorf("%s: %v", EnvRegion, err)
		}
		return a, nil
	}
	u, err := url.Parse(a.BaseURL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return API{}, fmt.Errorf("%s: must be an http:// or https:// URL, got %q", EnvAPIBase, redactURL(a.BaseURL))
	case u.User != nil:
		return API{}, fmt.Errorf("%s: must not hold a user name or password (requests are signed with a UserSig), got %q", EnvAPIBase, redactURL(a.BaseURL))
	}
	return a, nil
}

// Display describes where a calls, for logs: "region cn", or the base URL
// with any user name and password replaced by [REDACTED] (LoadAPI refuses
// them, but an API built by hand may hold them).
func (a API) Display() string {
	if a.BaseURL != "" {
		return redactURL(a.BaseURL)
	}
	return "region " + a.Region
}

// Redis is where timq keeps its queues, dead letters and rate budget.
type Redis struct {
	// Conn is the connection option asynq uses.
	Conn asynq.RedisConnOpt
	// Display is the address without any password, for logs.
	Display string
}

// Client makes a go-redis client for timq's own keys (dead letters, budget),
// connected the same way as asynq.
func (r Redis) Client() redis.UniversalClient {
	return r.Conn.MakeRedisClient().(redis.UniversalClient)
}

// LoadRedis reads TIMQ_REDIS_CLUSTER_ADDRS (comma-separated host:port of a
// Redis Cluster) or else TIMQ_REDIS_URL, in any form asynq parses:
// redis://[:password@]host:port[/db], rediss://..., redis-socket://path,
// redis-sentinel://[:password@]host1:port1,host2:port2?master=NAME.
// Defaults to redis://127.0.0.1:6379/0.
func LoadRedis(getenv func(string) string) (Redis, error) {
	if addrs := strings.TrimSpace(getenv(EnvRedisClusterAddrs)); addrs != "" {
		var list []string
		for _, a := range strings.Split(addrs, ",") {
			if a = strings.TrimSpace(a); a != "" {
				if !strings.Contains(a, ":") {
					return Redis{}, fmt.Errorf("%s: %q is not host:port", EnvRedisClusterAddrs, a)
				}
				list = append(list, a)
			}
		}
		return Redis{Conn: asynq.RedisClusterClientOpt{Addrs: list}, Display: "cluster " + strings.Join(list, ",")}, nil
	}
	raw := strings.TrimSpace(getenv(EnvRedisURL))
	if raw == "" {
		raw = DefaultRedisURL
	}
	opt, err := asynq.ParseRedisURI(raw)
	if err != nil {
		return Redis{}, fmt.Errorf("%s: %v (want redis://[:PASSWORD@]HOST:PORT[/DB], rediss://..., redis-socket://PATH or redis-sentinel://HOST:PORT,...?master=NAME)",
			EnvRedisURL, strings.TrimPrefix(stripURL(err.Error(), raw), "asynq: "))
	}
	if opt, err = checkRedisDB(opt, raw); err != nil {
		return Redis{}, fmt.Errorf("%s: %v, got %s", EnvRedisURL, err, redactURL(raw))
	}
	return Redis{Conn: opt, Display: redactURL(raw)}, nil
}

// checkRedisDB refuses a negative database number, which asynq accepts and
// go-redis then treats as database 0 (it selects only a database above 0).
// (redis-socket:// takes the database from ?db=, with the same rule.)
// asynq reads no database from a redis-sentinel:// URL: it always uses
// database 0, so a path naming another ("redis-sentinel://h:26379/2?master=m")
// is refused rather than silently ignored; honouring it now would move
// running workers away from the tasks they left in database 0. raw has
// already parsed. Errors hold no part of raw, which may hold a password.
func checkRedisDB(opt asynq.RedisConnOpt, raw string) (asynq.RedisConnOpt, error) {
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		if o.DB < 0 && o.Network == "unix" {
			return nil, errors.New("the database number (the db query parameter) must be a whole number >= 0")
		}
		if o.DB < 0 {
			return nil, errors.New("the database number (the first path segment) must be a whole number >= 0")
		}
	case asynq.RedisFailoverClientOpt:
		u, err := url.Parse(raw)
		if err != nil { // not expected: asynq parsed it
			return nil, errors.New("cannot parse it")
		}
		if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
			return nil, errors.New("a redis-sentinel:// URL uses database 0 only (asynq reads no database from it): drop the path")
		}
	}
	return opt, nil
}

// redactURL drops any user name and password from a URL (Redis or http):
// everything between "://" (or the start, when there is no "://") and the
// last "@" becomes [REDACTED].
func redactURL(raw string) string {
	prefix, rest := "", raw
	if scheme, r, ok := strings.Cut(raw, "://"); ok {
		prefix, rest = scheme+"://", r
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = "[REDACTED]@" + rest[at+1:]
	}
	return prefix + rest
}

// stripURL keeps a password out of a parse error that quotes raw, as
// net/url's errors do, or holds it as is.
func stripURL(msg, raw string) string {
	msg = strings.ReplaceAll(msg, strconv.Quote(raw), strconv.Quote(redactURL(raw)))
	return strings.ReplaceAll(msg, raw, redactURL(raw))
}

// Float reads a number setting in [min, max], or def when it is unset.
func Float(getenv func(string) string, name string, def, min, max float64) (float64, error) {
	raw := strings.TrimSpace(getenv(name))
	if raw == "" {
		return def, nil
	}
	v, err := strconv.ParseFloat(raw, 64)
	// ParseFloat reads "NaN", which no comparison rejects.
	if err != nil || math.IsNaN(v) || v < min || v > max {
		return 0, fmt.Errorf("%s: must be a number from %g to %g, got %q", name, min, max, raw)
	}
	return v, nil
}

// Int reads a whole-number setting in [min, max], or def when it is unset.
func Int(getenv func(string) string, name string, def, min, max int) (int, error) {
	raw := strings.TrimSpace(getenv(name))
	if raw == "" {
		return def, nil
	}
	v, err := strconv.Atoi(raw)
	if err != nil || v < min || v > max {
		return 0, fmt.Errorf("%s: must be a whole number from %d to %d, got %q", name, min, max, raw)
	}
	return v, nil
}

// Duration reads a Go duration setting ("250ms", "2s") in [min, max], or def.
func Duration(getenv func(string) string, name string, def, min, max time.Duration) (time.Duration, error) {
	raw := strings.TrimSpace(getenv(name))
	if raw == "" {
		return def, nil
	}
	v, err := time.ParseDuration(raw)
	if err != nil || v < min || v > max {
		return 0, fmt.Errorf("%s: must be a duration from %v to %v, got %q", name, min, max, raw)
	}
	return v, nil
}

// LoadCallbackToken reads TIMQ_CALLBACK_TOKEN; unset is no token.
func LoadCallbackToken(getenv func(string) string) (Secret, error) {
	return Secret(strings.TrimSpace(getenv(EnvCallbackToken))), nil
}
