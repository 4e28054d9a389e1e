package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
)

// env returns a getenv reading vars.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// loadKeyFile runs LoadSigning with TIMQ_SECRET_KEY_FILE set to name.
func loadKeyFile(name string) (Signing, error) {
	return LoadSigning(env(map[string]string{EnvSDKAppID: "1400000001", EnvSecretKeyFile: name}))
}

const testKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestLoadSigningReadsARegularKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "key")
	if err := os.WriteFile(file, []byte("  "+testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link") // as a Kubernetes secret volume mounts it
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	full := filepath.Join(dir, "full")
	if err := os.WriteFile(full, []byte(strings.Repeat("k", MaxSecretKeyFileBytes)), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{file: testKey, link: testKey, full: strings.Repeat("k", MaxSecretKeyFileBytes)} {
		s, err := loadKeyFile(name)
		if err != nil || s.SecretKey.Reveal() != want || s.SDKAppID != 1400000001 || s.Admin != DefaultAdmin {
			t.Errorf("%s: got %d %q %q, %v; want the key", name, s.SDKAppID, s.SecretKey.Reveal(), s.Admin, err)
		}
	}
}

// TestLoadSigningRefusesABadKeyFile: an oversized file, a device, a
// directory, a missing or empty file are one-line errors naming
// TIMQ_SECRET_KEY_FILE and the file, never its content. (The FIFO is in
// keyfile_unix_test.go.)
func TestLoadSigningRefusesABadKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	content := strings.Repeat(testKey, MaxSecretKeyFileBytes/len(testKey)) + "X"
	if err := os.WriteFile(big, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge")
	if err := os.WriteFile(huge, []byte(strings.Repeat(testKey, 1<<14)), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n\t"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := map[string]string{
		big:                        "TIMQ_SECRET_KEY_FILE: the key file " + big + " is longer than 4096 bytes",
		huge:                       "TIMQ_SECRET_KEY_FILE: the key file " + huge + " is longer than 4096 bytes",
		dir:                        "TIMQ_SECRET_KEY_FILE: the key file " + dir + " is not a regular file (a directory)",
		empty:                      "TIMQ_SECRET_KEY_FILE: the key file " + empty + " is empty",
		filepath.Join(dir, "none"): "TIMQ_SECRET_KEY_FILE: cannot read the key file: no such file or directory",
	}
	if _, err := os.Stat("/dev/zero"); err == nil {
		cases["/dev/zero"] = "TIMQ_SECRET_KEY_FILE: the key file /dev/zero is not a regular file (a character device)"
	}
	for name, want := range cases {
		s, err := loadKeyFile(name)
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %q, %v; want the error %q", name, s.SecretKey.Reveal(), err, want)
			continue
		}
		if strings.Contains(err.Error(), testKey[:16]) {
			t.Errorf("%s: the error holds the file's content: %v", name, err)
		}
	}
}

func TestLoadSigningRefusesBothKeyAndKeyFile(t *testing.T) {
	t.Parallel()
	_, err := LoadSigning(env(map[string]string{EnvSDKAppID: "1400000001", EnvSecretKey: testKey, EnvSecretKeyFile: "/dev/zero"}))
	if want := "TIMQ_SECRET_KEY: set only one of TIMQ_SECRET_KEY and TIMQ_SECRET_KEY_FILE"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
}

// TestLoadRedisRefusesANegativeDatabase: go-redis selects a database only
// above 0, so /-1 would silently be database 0. The error names
// TIMQ_REDIS_URL and shows the URL without its password.
func TestLoadRedisRefusesANegativeDatabase(t *testing.T) {
	t.Parallel()
	const (
		path     = "TIMQ_REDIS_URL: the database number (the first path segment) must be a whole number >= 0, got "
		query    = "TIMQ_REDIS_URL: the database number (the db query parameter) must be a whole number >= 0, got "
		sentinel = "TIMQ_REDIS_URL: a redis-sentinel:// URL uses database 0 only (asynq reads no database from it): drop the path, got "
	)
	for _, tc := range []struct{ raw, want string }{
		{"redis://127.0.0.1:6379/-1", path + "redis://127.0.0.1:6379/-1"},
		{"redis://:hunter2@127.0.0.1:6379/-1", path + "redis://[REDACTED]@127.0.0.1:6379/-1"},
		{"rediss://u:hunter2@redis.example:6380/-20", path + "rediss://[REDACTED]@redis.example:6380/-20"},
		{"redis-socket://:hunter2@/tmp/redis.sock?db=-1", query + "redis-socket://[REDACTED]@/tmp/redis.sock?db=-1"},
		// asynq reads no database from a Sentinel URL: one other than 0
		// is refused, not silently database 0.
		{"redis-sentinel://:hunter2@h1:26379,h2:26379/-1?master=m", sentinel + "redis-sentinel://[REDACTED]@h1:26379,h2:26379/-1?master=m"},
		{"redis-sentinel://:hunter2@h1:26379/x?master=m", sentinel + "redis-sentinel://[REDACTED]@h1:26379/x?master=m"},
		{"redis-sentinel://:hunter2@h1:26379/2?master=m", sentinel + "redis-sentinel://[REDACTED]@h1:26379/2?master=m"},
		{"redis://:hunter2@127.0.0.1:6379/x", "TIMQ_REDIS_URL: could not parse redis uri: database number should be the first segment of the path (want redis://[:PASSWORD@]HOST:PORT[/DB], rediss://..., redis-socket://PATH or redis-sentinel://HOST:PORT,...?master=NAME)"},
	} {
		r, err := LoadRedis(env(map[string]string{EnvRedisURL: tc.raw}))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: got %#v, %v; want the error %q", tc.raw, r.Conn, err, tc.want)
		}
	}
}

func TestLoadRedisReadsTheDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		raw     string
		want    asynq.RedisConnOpt
		display string
	}{
		{"", asynq.RedisClientOpt{Addr: "127.0.0.1:6379"}, DefaultRedisURL},
		{"redis://h:6379", asynq.RedisClientOpt{Addr: "h:6379"}, "redis://h:6379"},
		{"redis://:hunter2@h:6379/3", asynq.RedisClientOpt{Addr: "h:6379", Password: "hunter2", DB: 3}, "redis://[REDACTED]@h:6379/3"},
		{"redis-socket:///tmp/redis.sock?db=2", asynq.RedisClientOpt{Network: "unix", Addr: "/tmp/redis.sock", DB: 2}, "redis-socket:///tmp/redis.sock?db=2"},
		{"redis-sentinel://h1:26379,h2:26379?master=m", asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"h1:26379", "h2:26379"}}, "redis-sentinel://h1:26379,h2:26379?master=m"},
		{"redis-sentinel://:hunter2@h1:26379/0?master=m", asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"h1:26379"}, SentinelPassword: "hunter2"}, "redis-sentinel://[REDACTED]@h1:26379/0?master=m"},
		{"redis-sentinel://h1:26379/?master=m", asynq.RedisFailoverClientOpt{MasterName: "m", SentinelAddrs: []string{"h1:26379"}}, "redis-sentinel://h1:26379/?master=m"},
	} {
		r, err := LoadRedis(env(map[string]string{EnvRedisURL: tc.raw}))
		if err != nil || fmt.Sprintf("%#v", r.Conn) != fmt.Sprintf("%#v", tc.want) || r.Display != tc.display {
			t.Errorf("%q: got %#v %q, %v; want %#v %q", tc.raw, r.Conn, r.Display, err, tc.want, tc.display)
		}
	}
}

// TestLoadRedisKeepsThePasswordOutOfParseErrors covers URLs net/url cannot
// parse, whose errors quote the URL.
func TestLoadRedisKeepsThePasswordOutOfParseErrors(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://:hunter2@h:port/0",
		":hunter2@h:6379",
		"redis://:hun\"ter2@h:6379/0\x7f",
		"redis://:hunter2@h\x00:6379/0",
		"mysql://:hunter2@h:6379",
	} {
		_, err := LoadRedis(env(map[string]string{EnvRedisURL: raw}))
		if err == nil || !strings.HasPrefix(err.Error(), "TIMQ_REDIS_URL: ") || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), `hun\"ter2`) {
			t.Errorf("%q: got %v; want an error naming TIMQ_REDIS_URL without the password", raw, err)
		}
	}
}

// TestLoadAPIKeepsUserInfoOutOfErrors: TIMQ_API_BASE with a user name and
// password is refused, and no error shows the password.
func TestLoadAPIKeepsUserInfoOutOfErrors(t *testing.T) {
	t.Parallel()
	const (
		userinfo = `TIMQ_API_BASE: must not hold a user name or password (requests are signed with a UserSig), got `
		notHTTP  = `TIMQ_API_BASE: must be an http:// or https:// URL, got `
	)
	for _, tc := range []struct{ raw, want string }{
		{"http://user:hunter2@127.0.0.1:9000", userinfo + `"http://[REDACTED]@127.0.0.1:9000"`},
		{"https://hunter2@api.example", userinfo + `"https://[REDACTED]@api.example"`},
		{"ftp://user:hunter2@127.0.0.1:9000", notHTTP + `"ftp://[REDACTED]@127.0.0.1:9000"`},
		{"http://user:hunter2@127.0.0.1:port", notHTTP + `"http://[REDACTED]@127.0.0.1:port"`},
		{"user:hunter2@127.0.0.1:9000", notHTTP + `"[REDACTED]@127.0.0.1:9000"`},
		{"http://", notHTTP + `"http://"`},
		{"127.0.0.1:9000", notHTTP + `"127.0.0.1:9000"`},
	} {
		a, err := LoadAPI(env(map[string]string{EnvSDKAppID: "1400000001", EnvSecretKey: testKey, EnvAPIBase: tc.raw}))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: got %q, %v; want the error %q", tc.raw, a.BaseURL, err, tc.want)
		}
	}
}

func TestLoadAPIAndDisplay(t *testing.T) {
	t.Parallel()
	a, err := LoadAPI(env(map[string]string{EnvSDKAppID: "1400000001", EnvSecretKey: testKey, EnvAPIBase: " http://127.0.0.1:9000 "}))
	if err != nil || a.BaseURL != "http://127.0.0.1:9000" || a.Region != "" || a.Display() != "http://127.0.0.1:9000" {
		t.Errorf("got %q %q %q, %v; want the base URL", a.BaseURL, a.Region, a.Display(), err)
	}
	a, err = LoadAPI(env(map[string]string{EnvSDKAppID: "1400000001", EnvSecretKey: testKey, EnvRegion: "sgp"}))
	if err != nil || a.Region != "sgp" || a.BaseURL != "" || a.Display() != "region sgp" {
		t.Errorf("got %q %q %q, %v; want region sgp", a.BaseURL, a.Region, a.Display(), err)
	}
	if got, want := (API{BaseURL: "http://user:hunter2@127.0.0.1:9000"}).Display(), "http://[REDACTED]@127.0.0.1:9000"; got != want {
		t.Errorf("Display() = %q, want %q", got, want)
	}
}
